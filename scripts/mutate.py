"""Mutation testing of one module with cosmic-ray, against the tests that cover it (`make mutate MODULE=...
TESTS=...`; not in CI: each mutant runs the tests once). The session lives in .mutate/ (git-ignored) and resumes
where it stopped; at the end, the score and each surviving mutant's diff. How to read it: docs/testing.md.

    python scripts/mutate.py mtx/serve/access.py "tests/test_serve_fields.py -k enforces"
    python scripts/mutate.py --only force,sample_tokens mtx/decode/search.py "tests/test_search.py"

`--only NAMES`: only the mutants inside those top-level functions or classes (a part of a large module).
`--survivors`: run the session's surviving mutants again (after tests were added), the rest kept as they were.
"""

from __future__ import annotations

import argparse
import ast
import json
import subprocess
import sys
from pathlib import Path

from cosmic_ray.work_db import WorkResultStorage, use_db
from cosmic_ray.work_item import TestOutcome, WorkerOutcome, WorkResult

BIN = Path(sys.executable).parent


def main(module: str, tests: str, only: list[str] | None = None, survivors: bool = False) -> None:
    work = Path(".mutate")
    work.mkdir(exist_ok=True)
    name = module.replace("/", "_").removesuffix(".py")
    config, session = work / f"{name}.toml", work / f"{name}.sqlite"
    # the tiny model of tests/conftest.py is trained once, by the unmutated code, for all the mutants
    (work / "model").mkdir(exist_ok=True)
    cache = (work / "model").resolve()
    command = f"env MTX_TEST_MODEL_CACHE={cache} {sys.executable} -m pytest -x -q -p no:cacheprovider {tests}"
    config.write_text(  # JSON strings are TOML basic strings
        f"[cosmic-ray]\nmodule-path = {json.dumps(module)}\ntimeout = 60.0\nexcluded-modules = []\n"
        f'test-command = {json.dumps(command)}\n\n[cosmic-ray.distributor]\nname = "local"\n',
        encoding="utf-8",
    )
    if not session.exists():
        subprocess.run([BIN / "cosmic-ray", "init", config, session], check=True)
    elif survivors:
        print(f"{forget_survivors(session)} surviving mutants to run again")
    # the tests pass on the unmutated module, and fill the model cache with the models they train
    subprocess.run(command, shell=True, check=True)
    skipped = skip_annotations(module, session)
    if skipped:
        print(f"{skipped} mutants inside annotations skipped (never evaluated: equivalent)")
    if only:
        outside = skip_outside(module, session, only)
        print(f"{outside} mutants outside {', '.join(only)} skipped (--only)")
    subprocess.run([BIN / "cosmic-ray", "exec", config, session], check=True)
    subprocess.run([BIN / "cr-report", session, "--show-diff", "--surviving-only"], check=True)


def annotation_spans(source: str) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """The (start, end) positions of every annotation in `source`: arguments, returns and annotated names. With
    `from __future__ import annotations` they are strings to Python, so a mutant inside one changes nothing."""
    spans = []
    for node in ast.walk(ast.parse(source)):
        found = []
        if isinstance(node, ast.arg | ast.AnnAssign) and node.annotation is not None:
            found.append(node.annotation)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.returns is not None:
            found.append(node.returns)
        spans += [((a.lineno, a.col_offset), (a.end_lineno, a.end_col_offset)) for a in found]
    return spans


def definition_spans(source: str, names: list[str]) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """The (start, end) positions of the top-level functions and classes of `source` named in `names`."""
    found = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and node.name in names:
            found[node.name] = ((node.lineno, 0), (node.end_lineno, node.end_col_offset))
    missing = sorted(set(names) - set(found))
    if missing:
        sys.exit(f"--only: no top-level function or class {', '.join(missing)}")
    return list(found.values())


def skip_where(session: Path, spans: list, inside: bool) -> int:
    """Mark the session's pending mutants that lie inside (or, `inside` false, outside) `spans` as skipped."""
    skip = []
    with use_db(str(session)) as db:
        for item in db.pending_work_items:
            within = [any(a <= tuple(m.start_pos) and tuple(m.end_pos) <= b for a, b in spans) for m in item.mutations]
            if all(within) if inside else not any(within):
                skip.append(item.job_id)
        for job in skip:
            db.set_result(job, WorkResult(worker_outcome=WorkerOutcome.SKIPPED))
    return len(skip)


def forget_survivors(session: Path) -> int:
    """Drop the results of the session's surviving mutants, so that `cosmic-ray exec` runs them again (cosmic-ray
    has no public call for it: its own database session)."""
    with use_db(str(session)) as db, db._session_maker.begin() as q:
        rows = q.query(WorkResultStorage).filter(WorkResultStorage.test_outcome == TestOutcome.SURVIVED)
        return rows.delete()


def skip_annotations(module: str, session: Path) -> int:
    """Mark the session's pending mutants that lie inside an annotation as skipped; how many."""
    source = Path(module).read_text(encoding="utf-8")
    if "from __future__ import annotations" not in source:
        return 0
    return skip_where(session, annotation_spans(source), inside=True)


def skip_outside(module: str, session: Path, names: list[str]) -> int:
    """Mark the session's pending mutants outside the named definitions as skipped; how many."""
    return skip_where(session, definition_spans(Path(module).read_text(encoding="utf-8"), names), inside=False)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", type=lambda v: v.split(","), help="top-level functions or classes, comma-separated")
    parser.add_argument("--survivors", action="store_true", help="run the session's surviving mutants again")
    parser.add_argument("module")
    parser.add_argument("tests", nargs=argparse.REMAINDER, help="pytest's arguments (one string)")
    a = parser.parse_args()
    main(a.module, " ".join(a.tests) or "tests", a.only, a.survivors)

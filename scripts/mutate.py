"""Mutation testing of one module with cosmic-ray, against the tests that cover it (`make mutate MODULE=...
TESTS=...`; not in CI: each mutant runs the tests once). The session lives in .mutate/ (git-ignored) and resumes
where it stopped; at the end, the score and each surviving mutant's diff. How to read it: docs/testing.md.

    python scripts/mutate.py mtx/serve/access.py "tests/test_serve_fields.py -k enforces"
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def main(module: str, tests: str) -> None:
    work = Path(".mutate")
    work.mkdir(exist_ok=True)
    name = module.replace("/", "_").removesuffix(".py")
    config, session = work / f"{name}.toml", work / f"{name}.sqlite"
    command = f"{sys.executable} -m pytest -x -q -p no:cacheprovider {tests}"
    config.write_text(  # JSON strings are TOML basic strings
        f"[cosmic-ray]\nmodule-path = {json.dumps(module)}\ntimeout = 300.0\nexcluded-modules = []\n"
        f'test-command = {json.dumps(command)}\n\n[cosmic-ray.distributor]\nname = "local"\n',
        encoding="utf-8",
    )
    if not session.exists():
        subprocess.run([BIN / "cosmic-ray", "init", config, session], check=True)
    subprocess.run([BIN / "cosmic-ray", "exec", config, session], check=True)
    subprocess.run([BIN / "cr-report", session, "--show-diff", "--surviving-only"], check=True)


if __name__ == "__main__":
    main(sys.argv[1], " ".join(sys.argv[2:]) or "tests")

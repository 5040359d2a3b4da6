"""What `mtx translate` prints: a line a translation (its text, its n-best list with scores, or a JSON object),
for sentences from the command line, a file or stdin; and the cross-attention picture of one."""

from __future__ import annotations

import itertools
import json
import logging
import sys
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path

from mtx.console import ProgressBar
from mtx.data import pairs as P
from mtx.data.glossary import read_glossary
from mtx.data.text import ends_with_newline, lines
from mtx.decode.attention import attention_of, draw
from mtx.decode.ct2 import NO_TERMS
from mtx.decode.load import load
from mtx.decode.translator import BatchTranslator, Translation
from mtx.documents.formats import BINARY, EXTENSIONS, TextDocument, alignments, make_document
from mtx.documents.markup import PageError
from mtx.documents.office import OfficeError
from mtx.documents.subtitles import SubtitleError
from mtx.errors import MtxError, UsageError
from mtx.files import atomic_write

log = logging.getLogger(__name__)


def translate_lines(
    model: Path | list[Path],
    engine: str,
    device: str,
    decoding: dict,
    text: list[str] | None,
    source: Path | None,
    to: str | None,
    pair: str | None,
    as_json: bool,
    drawing: tuple[Path | None, int, bool],
    start: tuple[str | None, Path | None] = (None, None),
    terms: tuple[Path | None, Path | None] = (None, None),
    binary_out: bool = False,
) -> Iterator[str | bytes]:
    """The output lines of `mtx translate`: `text`, else the lines of `source` (stdin for None), translated into
    `to` (or by `pair`) with the `decoding` options; `drawing` (png, layer, per head): the attention picture of
    the one sentence of `text`; `start` (a target prefix for every line, a file of one a line): what each
    translation starts with; `terms` (a glossary, a file of a JSON list of target terms a line): what the
    translations must hold. A file of a document format (EXTENSIONS) is translated whole, in one item (bytes
    for a BINARY one, which needs `binary_out`: an output file)."""
    attention, layer, per_head = drawing
    if attention is not None and (not text or len(text) != 1):
        raise UsageError("--attention draws one sentence: give exactly one TEXT argument")
    if attention is not None and isinstance(model, list) and len(model) > 1:
        raise UsageError("--attention draws one model's attention: give one --model")
    if attention is not None and engine != "mtx":
        raise UsageError("--attention draws mtx's own attention: leave out --engine ct2")
    if any(x is not None for x in terms) and engine != "mtx":
        raise UsageError(NO_TERMS)
    glossary = read_glossary(terms[0]) if terms[0] is not None else None
    translator, cfg = load(model, engine, device, **decoding)
    trained = P.pairs_of(cfg.data)
    src_lang, tgt_lang = P.choose(trained, to, pair, log.warning)
    prefix = P.prefix_ids(translator.tokenizer, trained, tgt_lang)
    if attention is not None:
        d = translator.device
        src, tgt, weights = attention_of(translator.model, translator.tokenizer, cfg.decode, text[0], d, prefix)
        draw(src, tgt, weights, attention, layer, per_head)
        log.info(f"attention: {attention}")
    # A bar for a file whose translations go elsewhere than the terminal.
    fmt = EXTENSIONS.get(source.suffix.lower(), "text") if source is not None and not text else "text"
    to_file = source is not None and not text and not sys.stdout.isatty() and fmt == "text"
    total = sum(1 for _ in lines(source)) if to_file else 0
    if start[0] is not None and start[1] is not None:
        raise UsageError("--prefix and --prefix-file: give one of them")
    heads = start[0] if start[1] is None else _aligned(start[1], text, source, "prefixes")
    wanted = None if terms[1] is None else _term_lists(terms[1], _aligned(terms[1], text, source, "lines"))
    if fmt in BINARY and as_json:
        raise UsageError(f"--input {source}: a {fmt} file is translated into a file, not JSON: leave out --json")
    if fmt in BINARY and not binary_out:
        raise UsageError(f"--input {source}: a {fmt} file is translated into a file: add --output FILE.{fmt}")
    if fmt != "text":
        if cfg.decode.nbest > 1 or start != (None, None) or terms[1] is not None:
            raise UsageError(f"--input {source}: translated as a whole {fmt} file; --nbest, --prefix and "
                             "--constraints are for text lines")  # fmt: skip
        tr = translate_document(translator, source, fmt, src_lang or "en", prefix, glossary)
        if as_json:
            yield json.dumps({"translation": tr.text, "confidence": round(tr.confidence, 4),
                              "pair": f"{src_lang or '?'}-{tgt_lang}"}, ensure_ascii=False)  # fmt: skip
        else:
            yield tr.text
        return
    # Line for line: each line's sentences translated and joined again, its spaces and CR kept; a line is one
    # unit where what is asked is a line's (n-best lists, prefixes, constraints).
    split = cfg.decode.nbest == 1 and heads is None and wanted is None
    inputs = iter(text) if text else lines(source, keep_cr=split)
    with ProgressBar(total, "translating") as bar:
        options = {"target_prefix": heads, "glossary": glossary, "constraints": wanted}
        if split:
            results = by_line(translator, inputs, src_lang or "en", bar.advance, prefix=prefix, **options)
        else:
            results = translator.stream(inputs, prefix=prefix, on_progress=bar.advance, **options)
        for tr in results:
            if as_json:
                rec = {"translation": tr.text.rstrip("\r"), "confidence": round(tr.confidence, 4)}
                rec |= {"nbest": [{"text": t.rstrip("\r"), "score": round(s, 4)} for t, s in tr.nbest]}
                yield json.dumps(rec | {"pair": f"{src_lang or '?'}-{tgt_lang}"}, ensure_ascii=False)
            else:
                yield "\t".join(f"{t}\t{s:.4f}" for t, s in tr.nbest) if cfg.decode.nbest > 1 else tr.text


def translate_document(translator: BatchTranslator, path: Path, fmt: str, lang: str, prefix: list[int],
                       glossary=None) -> Translation:  # fmt: skip
    """A whole file of format `fmt` (documents/formats.py) translated: the text (without the file's last line
    end, which `write_output` puts back; bytes for a BINARY format) and its least confident sentence's
    confidence."""
    try:
        data = path.read_bytes()
        text = data if fmt in BINARY else data.decode("utf-8").removesuffix("\n")
    except FileNotFoundError:
        raise UsageError(f"{path}: file not found") from None
    except UnicodeDecodeError as e:
        raise MtxError(f"{path}: not UTF-8 text (byte {e.start})") from None
    try:
        doc = make_document(text, fmt, lang)
    except SubtitleError as e:
        raise MtxError(f"{path}:{e.line}: not {fmt} subtitles: {e.message}") from None
    except PageError as e:
        raise MtxError(f"{path}: not an HTML page mtx translates: {e}") from None
    except OfficeError as e:
        raise MtxError(f"{path}: {e}") from None
    trs = translator.translate(doc.sentences, prefix=prefix, glossary=glossary)
    aligned = None
    if doc.needs_alignment:
        ids = translator.tokenizer.encode(doc.sentences)
        aligned = alignments(translator, ids, doc.sentences, trs, prefix)
    out = doc.render([t.text for t in trs], aligned)
    return Translation(out, [(out, 0.0)], [], min((t.confidence for t in trs), default=1.0))


def write_output(path: Path, out: Iterable[str], source: Path | None) -> int:
    """Write `out` to `path` a line each, atomically (a failure leaves `path` as it was), with a last line end
    where `source` has one; the number of lines written."""
    if source is not None and path.resolve() == source.resolve():
        raise UsageError(f"--output {path}: the input file itself; write the translation elsewhere")
    if not path.parent.is_dir():
        raise UsageError(f"--output {path}: no directory {path.parent}")
    final = ends_with_newline(source) if source is not None else True
    count = 0
    items = iter(out)
    first = next(items, None)
    if isinstance(first, bytes):  # a binary document: the file as it is
        atomic_write(path, first)
        return 1
    out = itertools.chain([] if first is None else [first], items)

    def write(tmp: Path) -> None:
        nonlocal count
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            for line in out:
                f.write(("\n" if count else "") + line)
                count += 1
            if count and final:
                f.write("\n")

    atomic_write(path, write)
    return count


def by_line(translator: BatchTranslator, inputs: Iterable[str], lang: str, on_line, **options) -> Iterator[Translation]:
    """A translation for each line of `inputs`: its sentences (documents/segment.py, `lang`'s rules) translated
    in one stream and put back in the line (spaces around and between kept as TextDocument keeps them); its
    confidence its least confident sentence's, its score the sum of theirs. Streams: lines wait for their
    sentences' translations only as long as the translator's chunk."""
    waiting: deque[TextDocument] = deque()

    def sentences() -> Iterator[str]:
        for line in inputs:
            doc = TextDocument(line, lang)
            waiting.append(doc)
            yield from doc.sentences

    done: list[Translation] = []
    for tr in itertools.chain(translator.stream(sentences(), **options), [None]):
        if tr is not None:
            done.append(tr)
        while waiting and (len(done) >= len(waiting[0].sentences) or tr is None):
            doc = waiting.popleft()
            n = len(doc.sentences)
            part, done = done[:n], done[n:]
            text = doc.render([t.text for t in part])
            score = sum(t.nbest[0][1] for t in part)
            yield Translation(text, [(text, score)], [x for t in part for x in t.tokens],
                              min((t.confidence for t in part), default=1.0))  # fmt: skip
            on_line(1)


def _aligned(path: Path, text: list[str] | None, source: Path | None, what: str) -> list[str]:
    """The lines of a `--prefix-file` or `--constraints` file, one for each input line (checked when the input is
    not stdin)."""
    if text is None and source is None:
        raise UsageError(f"{path}: a file of {what} for each input line needs TEXT arguments or --input FILE")
    heads = list(lines(path))
    n = len(text) if text else sum(1 for _ in lines(source))
    if len(heads) != n:
        raise UsageError(f"{path}: {len(heads)} {what} for {n} input lines (one a line)")
    return heads


def _term_lists(path: Path, rows: list[str]) -> list[list[str]]:
    """Each line of a `--constraints` file: a JSON list of non-empty strings (an empty line: none)."""
    out = []
    for i, row in enumerate(rows, 1):
        try:
            terms = json.loads(row) if row.strip() else []
        except json.JSONDecodeError as e:
            raise UsageError(f"{path}:{i}: not JSON ({e.msg})") from None
        if not isinstance(terms, list) or not all(isinstance(t, str) and t.strip() for t in terms):
            raise UsageError(f'{path}:{i}: expected a list of target terms, like ["term", "another term"]')
        out.append(terms)
    return out

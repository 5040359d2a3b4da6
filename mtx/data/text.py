"""Plain text files, a line at a time: the one line reader (UTF-8; a bad byte is an error naming file and line),
a fast check of a large file in blocks, and the checks of a small line-aligned pair of files (a test set).
Training corpora of every kind are read by mtx/data/sources.py."""

from __future__ import annotations

import codecs
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mtx.errors import MtxError

CHUNK = 4 << 20  # bytes a block of `scan_text`
NL = b"\n"


def lines(path: Path | None, keep_cr: bool = False) -> Iterator[str]:
    """The lines of a UTF-8 file (or of stdin, for None), without their line ends ("\n", "\r\n"; `keep_cr`: a
    CRLF line keeps its "\r"), read as they are needed."""
    name = str(path) if path else "<stdin>"
    try:
        stream = open(path, "rb") if path else sys.stdin.buffer  # noqa: SIM115
    except FileNotFoundError:
        raise MtxError(f"{path}: file not found") from None
    except OSError as e:
        raise MtxError(f"{path}: cannot read ({e.strerror})") from None
    with stream:
        for i, raw in enumerate(stream, 1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise MtxError(f"{name}:{i}: invalid UTF-8 at byte {e.start}") from None
            text = text.removesuffix("\n")
            yield text if keep_cr else text.removesuffix("\r")


def ends_with_newline(path: Path) -> bool:
    """Whether a file's last line has its line end (an empty file: no)."""
    with open(path, "rb") as f:
        if f.seek(0, 2) == 0:
            return False
        f.seek(-1, 2)
        return f.read(1) == NL


def read_lines(path: Path) -> list[str]:
    """All the lines of a UTF-8 text file (see `lines`)."""
    return list(lines(path))


def check_aligned(paths: tuple[Path, Path], counts: tuple[int, int]) -> None:
    """Two files of a parallel corpus have the same number of lines, and some."""
    if counts[0] != counts[1]:
        longer = paths[0] if counts[0] > counts[1] else paths[1]
        raise MtxError(
            f"{longer}:{min(counts) + 1}: files are not aligned ({paths[0].name} has {counts[0]} lines, "
            f"{paths[1].name} has {counts[1]})"
        )
    if counts[0] == 0:
        raise MtxError(f"{paths[0]}: file is empty")


def check_parallel(src_path: Path, tgt_path: Path) -> int:
    """Validate a line-aligned pair of files; return the number of lines."""
    src = read_lines(src_path)
    tgt = read_lines(tgt_path)
    check_aligned((src_path, tgt_path), (len(src), len(tgt)))
    for path, texts in ((src_path, src), (tgt_path, tgt)):
        for i, line in enumerate(texts, 1):
            if "\r" in line:
                raise MtxError(f"{path}:{i}: carriage return inside a line")
            if not line.strip():
                raise MtxError(f"{path}:{i}: empty line in a parallel corpus")
    return len(src)


@dataclass
class Split:
    """A small parallel split in memory: `src` and `tgt` are lists of sentences."""

    name: str
    src: list[str]
    tgt: list[str]


def split_paths(data_dir: Path, split: str, src: str, tgt: str) -> tuple[Path, Path]:
    return data_dir / f"{split}.{src}", data_dir / f"{split}.{tgt}"


def scan_text(path: Path, inner_cr: bool = False) -> int:
    """Lines of a text file, checked in blocks of `CHUNK` bytes (C speed; memory bounded by the block, however
    long a line): invalid UTF-8 or (unless `inner_cr`) a carriage return inside a line is an error naming the
    line and the byte in it."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    count, offset, line_start, cr = 0, 0, 0, False  # line ends seen; where the block and the line start
    try:
        f = open(path, "rb")  # noqa: SIM115
    except OSError as e:
        raise MtxError(f"{path}: cannot read ({e.strerror})") from None
    with f:
        while block := f.read(CHUNK):
            pending = len(decoder.getstate()[0])  # bytes of a character the previous block cut
            try:
                decoder.decode(block)
            except UnicodeDecodeError as e:
                _fail_at(path, block, offset, offset - pending + e.start, count, line_start, utf8=True)
            if not inner_cr:  # a CR not followed by LF (a CR that ends a block is judged with the next one)
                data = (b"\r" if cr else b"") + block
                cr = data.endswith(b"\r")
                i = (data[:-1] if cr else data).replace(b"\r\n", b"\n\n").find(b"\r")
                if i >= 0:
                    _fail_at(path, block, offset, offset - (len(data) - len(block)) + i, count, line_start)
            if (last := block.rfind(NL)) >= 0:
                line_start = offset + last + 1
            count += block.count(NL)
            offset += len(block)
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            _fail_at(path, b"", offset, offset - len(decoder.getstate()[0]), count, line_start, utf8=True)
    return count + (offset > line_start)  # a last line without a line end


def _fail_at(path: Path, block: bytes, offset: int, at: int, count: int, line_start: int, utf8: bool = False):
    """The error (invalid UTF-8, else a carriage return) at file offset `at`, in `block` (which starts at
    `offset`) or just before it, named by its line and, for UTF-8, its byte in the line."""
    inside = max(at - offset, 0)
    line = count + block.count(NL, 0, inside) + 1
    nl = block.rfind(NL, 0, inside)
    start = offset + nl + 1 if nl >= 0 else line_start
    if not utf8:
        raise MtxError(f"{path}:{line}: carriage return inside a line")
    raise MtxError(f"{path}:{line}: invalid UTF-8 at byte {at - start}")


def count_fields(path: Path, sep: str) -> int:
    """Fields of the first line of a delimited file."""
    with open(path, "rb") as f:
        return f.readline().count(sep.encode()) + 1

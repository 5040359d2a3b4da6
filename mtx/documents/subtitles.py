"""Subtitles, SubRip (.srt) and WebVTT (.vtt): each cue's text is one unit (its lines joined), cut into sentences,
translated, and written back over as many lines as the cue had, broken at spaces into lines of even length; cue
numbers, identifiers, timings and their settings, the WEBVTT header and NOTE, STYLE and REGION blocks are kept
as they are, as are the blank lines between blocks and the file's line ends."""

from __future__ import annotations

import re

from mtx.documents.segment import split_sentences

TIMING = re.compile(r"^\s*(\d+:)?\d{1,2}:\d{2}[,.]\d{3}\s+-->\s+(\d+:)?\d{1,2}:\d{2}[,.]\d{3}")
KEPT_VTT = ("NOTE", "STYLE", "REGION")


class SubtitleError(ValueError):
    """A file that is not the subtitles its name says, at `line` (1-based)."""

    def __init__(self, line: int, message: str):
        super().__init__(f"line {line}: {message}")
        self.line, self.message = line, message


class SubtitleDocument:
    """The cues of a .srt or .vtt file (`kind`)."""

    needs_alignment = False

    def __init__(self, text: str, lang: str, kind: str = "srt"):
        self.lines = text.split("\n")  # a CRLF line keeps its "\r": written back as it came
        self.cues: list[tuple[list[int], int]] = []  # (the cue's text lines, how many sentences its text has)
        self.sentences: list[str] = []
        rows = [x.rstrip("\r") for x in self.lines]
        i = 0
        if kind == "vtt":
            if not rows or not rows[0].lstrip("\ufeff").startswith("WEBVTT"):
                raise SubtitleError(1, "a WebVTT file starts with WEBVTT")
            i = _block_end(rows, 0)
        while i < len(rows):
            if not rows[i].strip():
                i += 1
                continue
            end = _block_end(rows, i)
            block = list(range(i, end))
            if kind == "vtt" and rows[i].split(" ")[0] in KEPT_VTT:
                i = end
                continue
            at = next((k for k in block[:2] if TIMING.match(rows[k])), None)
            if at is None:
                raise SubtitleError(i + 1, "a cue needs a timing line (00:00:01,000 --> 00:00:02,000)")
            if kind == "srt" and at != i + 1:
                raise SubtitleError(i + 1, "a SubRip cue starts with its number, then its timing line")
            text = [k for k in block if k > at]
            found = split_sentences(" ".join(rows[k].strip() for k in text), lang)
            self.cues.append((text, len(found)))
            self.sentences += found
            i = end

    def render(self, translations: list[str], alignments: list | None = None) -> str:
        """The file with each cue's text replaced by its sentences' translations, over the cue's lines."""
        out, k = list(self.lines), 0
        for text, n in self.cues:
            if not n:
                continue
            parts = _balanced(" ".join(translations[k : k + n]).split(), len(text))
            k += n
            for row, part in zip(text, parts, strict=True):
                out[row] = part + ("\r" if out[row].endswith("\r") else "")
        return "\n".join(out)


def _block_end(rows: list[str], i: int) -> int:
    while i < len(rows) and rows[i].strip():
        i += 1
    return i


def _balanced(words: list[str], n: int) -> list[str]:
    """`words` on `n` lines of about even length (in characters), in order; lines left empty where there are
    fewer words than lines."""
    out: list[str] = []
    left = words
    for lines_left in range(n, 0, -1):
        if lines_left == 1:
            out.append(" ".join(left))
            break
        target = len(" ".join(left)) / lines_left
        take, size = 0, 0
        while take < len(left) and (take == 0 or size + 1 + len(left[take]) / 2 <= target):
            size += len(left[take]) + (1 if take else 0)
            take += 1
        out.append(" ".join(left[:take]))
        left = left[take:]
    return out

"""The first layer of a request: its texts (plain or HTML) cut into the sentences the model translates, and put
back together from their translations. No HTTP and no model here: `sentences` out, `render(...)` in.

Plain text: each line's sentences (segment.py), joined again with single spaces, the line's leading and trailing
whitespace and its line breaks kept. HTML: each run of the page (markup.py) is cut into sentences the same way;
its inline tags are placed back by the model's alignment of each sentence (`alignments`)."""

from __future__ import annotations

import torch

from mtx.documents.markdown import MarkdownDocument
from mtx.documents.markup import HtmlPage
from mtx.documents.office import DocxDocument, OdtDocument
from mtx.documents.segment import split_sentences
from mtx.documents.subtitles import SubtitleDocument


class TextDocument:
    """Plain text: lines of sentences."""

    needs_alignment = False

    def __init__(self, text: str, lang: str):
        self.lines: list[tuple[str, int]] = []  # (the line, how many sentences it has)
        self.sentences: list[str] = []
        for line in text.split("\n"):
            found = split_sentences(line, lang)
            self.lines.append((line, len(found)))
            self.sentences += found

    def render(self, translations: list[str], alignments: list | None = None) -> str:
        """The text with each sentence replaced by its translation (one for each of `sentences`)."""
        out, k = [], 0
        for line, n in self.lines:
            if n == 0:
                out.append(line)
                continue
            lead, trail = line[: len(line) - len(line.lstrip())], line[len(line.rstrip()) :]
            out.append(lead + " ".join(translations[k : k + n]) + trail)
            k += n
        return "\n".join(out)


class HtmlDocument:
    """An HTML page: runs of sentences; tags placed back by the alignments."""

    needs_alignment = True

    def __init__(self, text: str, lang: str):
        self.page = HtmlPage(text)  # a PageError for a page nested too deeply
        self.runs: list[list[int]] = []  # each run's sentences' offsets in its text
        self.sentences: list[str] = []
        for run in self.page.texts:
            offsets, pos = [], 0
            for s in split_sentences(run, lang):
                at = run.find(s, pos)
                offsets.append(at if at >= 0 else pos)
                pos = offsets[-1] + len(s)
                self.sentences.append(s)
            self.runs.append(offsets)

    def render(self, translations: list[str], alignments: list | None = None) -> str:
        """The page with its runs translated; `alignments`: for each sentence, (target char, source char) pairs
        (`pairs`), or None."""
        texts, maps, k = [], [], 0
        for offsets in self.runs:
            parts, pairs, at = [], [], 0
            for src_at in offsets:
                tr = translations[k]
                got = alignments[k] if alignments is not None else None
                if got is not None:
                    pairs += [(at + t, src_at + s) for t, s in got]
                parts.append(tr)
                at += len(tr) + 1
                k += 1
            texts.append(" ".join(parts))
            maps.append(pairs or None)
        return self.page.render(texts, maps)


FORMATS = ("text", "html", "srt", "vtt", "md", "docx", "odt")
EXTENSIONS = {
    ".txt": "text",
    ".html": "html",
    ".htm": "html",
    ".srt": "srt",
    ".vtt": "vtt",
    ".md": "md",
    ".docx": "docx",
    ".odt": "odt",
}  # a file's format, by its extension
BINARY = ("docx", "odt")  # formats whose files are bytes, not UTF-8 text (render gives bytes)


def make_document(text: str | bytes, fmt: str, lang: str):
    """`text` as a document of format `fmt` (FORMATS; bytes for BINARY ones): a PageError, a SubtitleError or an
    OfficeError where it is not one."""
    if fmt == "docx":
        return DocxDocument(text, lang, HtmlDocument)
    if fmt == "odt":
        return OdtDocument(text, lang, HtmlDocument)
    if fmt == "html":
        return HtmlDocument(text, lang)
    if fmt == "md":
        return MarkdownDocument(text, lang, HtmlDocument)
    if fmt in ("srt", "vtt"):
        return SubtitleDocument(text, lang, fmt)
    return TextDocument(text, lang)


def starts(pieces: list[str], text: str) -> list[int]:
    """Where each sentencepiece piece of `text` starts in it (pieces begin a word with ▁)."""
    out, pos = [], 0
    for p in pieces:
        core = p.lstrip("\u2581")
        if p.startswith("\u2581"):
            while pos < len(text) and text[pos].isspace():
                pos += 1
        out.append(min(pos, len(text)))
        found = text.find(core, pos) if core else -1
        pos = found + len(core) if 0 <= found <= pos + 2 else pos + len(core)
    return out


def pairs(weights: torch.Tensor, src_pieces: list[str], source: str, tgt_pieces: list[str], target: str):
    """(target char, source char) for each target piece: where it starts, and where the source piece it attends
    to most starts (`weights`: (target pieces, source pieces))."""
    best = weights.argmax(dim=1).tolist()
    s_at, t_at = starts(src_pieces, source), starts(tgt_pieces, target)
    return [(t_at[t], s_at[min(best[t], len(s_at) - 1)]) for t in range(min(len(t_at), len(best)))]


def alignments(translator, ids: list[list[int]], sentences: list[str], translations: list, prefix: list[int]) -> list:
    """Each sentence's (target char, source char) pairs (`pairs`) from `translator.align` (a BatchTranslator) of
    its ids and its translation's tokens; None where the engine has no alignment."""
    weights = translator.align(ids, [t.tokens for t in translations], prefix)
    piece = translator.tokenizer.sp.id_to_piece
    return [
        None if w is None else pairs(w, [piece(x) for x in src], sent, [piece(x) for x in t.tokens], t.text)
        for w, src, sent, t in zip(weights, ids, sentences, translations, strict=True)
    ]

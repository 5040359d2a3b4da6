"""Markdown (.md): the text of each paragraph, heading, list item, quote and table cell translated; code blocks,
HTML blocks, code spans and link and image targets kept as they are. Each block's inline text (markdown-it-py,
CommonMark with tables) is rendered to HTML, translated as an HTML run is (formats.HtmlDocument: emphasis and
links placed by the model's alignment, `<code>` kept), and written back as Markdown (markdownify) in the block's
first line; a paragraph over several lines comes back on one. Everything else keeps its line."""

from __future__ import annotations

from markdown_it import MarkdownIt
from markdownify import markdownify

_MD = MarkdownIt("commonmark").enable("table")
_MD.normalizeLink = lambda url: url  # link targets as written, not percent-encoded
_MD.validateLink = lambda url: True


class MarkdownDocument:
    needs_alignment = True

    def __init__(self, text: str, lang: str, run):
        """`run(html, lang)`: a run's document (formats.HtmlDocument)."""
        self.lines = text.split("\n")
        self.blocks: list[tuple[list[tuple[int, int, int]], object]] = []  # (where its lines are, its run)
        self.sentences: list[str] = []
        cursor = [0] * len(self.lines)  # where the next block of a line may start (table cells share a line)
        for tok in _MD.parse(text):
            if tok.type != "inline" or tok.map is None or not tok.content.strip():
                continue
            spans = []
            for k, part in enumerate(tok.content.split("\n")):
                row = tok.map[0] + k
                want = part.strip()
                at = self.lines[row].find(want, cursor[row]) if row < len(self.lines) and want else -1
                if at < 0:
                    spans = []  # not found as written: the block is left as it is
                    break
                spans.append((row, at, at + len(want)))
                cursor[row] = at + len(want)
            if not spans:
                continue
            doc = run(_MD.renderInline(tok.content), lang)
            self.blocks.append((spans, doc))
            self.sentences += doc.sentences

    def render(self, translations: list[str], alignments: list | None = None) -> str:
        out = list(self.lines)
        edits: dict[int, list[tuple[int, int, str]]] = {}
        k = 0
        for spans, doc in self.blocks:
            n = len(doc.sentences)
            html = doc.render(translations[k : k + n], alignments[k : k + n] if alignments else None)
            k += n
            text = " ".join(markdownify(html, escape_asterisks=True, escape_underscores=True).split())
            row, start, end = spans[0]
            edits.setdefault(row, []).append((start, end, text))
            for row, start, end in spans[1:]:  # the paragraph's other lines: their text goes
                edits.setdefault(row, []).append((start, end, ""))
        drop = set()
        for row, changes in edits.items():
            line = out[row]
            for start, end, text in sorted(changes, reverse=True):
                line = line[:start] + text + line[end:]
            if not line.strip() and out[row].strip():
                drop.add(row)  # a continuation line left empty
            out[row] = line
        return "\n".join(x for i, x in enumerate(out) if i not in drop)

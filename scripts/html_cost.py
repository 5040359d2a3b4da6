"""Seconds to place the tags of one bold paragraph of N words (format html): parse, place by a word-for-word
alignment, render; the translation itself not included. `python scripts/html_cost.py`"""

from __future__ import annotations

import re
import time

from mtx.documents.markup import HtmlPage


def diagonal(source: str, target: str) -> list[tuple[int, int]]:
    s = [m.start() for m in re.finditer(r"\S+", source)]
    return [(m.start(), s[min(k, len(s) - 1)]) for k, m in enumerate(re.finditer(r"\S+", target))]


def main() -> None:
    print("| words | seconds |")
    print("|---|---|")
    for n in (13, 26, 52, 104, 1000):
        words = " ".join(f"Wort{k}" for k in range(n))
        start = time.perf_counter()
        page = HtmlPage(f"<p><b>{words}.</b> Ende.</p>")
        out = [t.upper() for t in page.texts]
        page.render(out, [diagonal(t, o) for t, o in zip(page.texts, out, strict=True)])
        print(f"| {n} | {time.perf_counter() - start:.4f} |")


if __name__ == "__main__":
    main()

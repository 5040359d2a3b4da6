"""Against a running `mtx serve` (any version): three real-model HTML examples, the time of one bold paragraph of
104 words, and the time of a plain request while six such paragraphs are being translated.
`python scripts/serve_html_check.py http://127.0.0.1:5000 [--skip-load]`"""

from __future__ import annotations

import json
import sys
import threading
import time
import urllib.request

EXAMPLES = [
    '<p>Ein <b>kleiner Junge</b> spielt mit einem <a href="/ball">roten Ball</a> im Park.</p>',
    '<p><a href="#">Zwei junge</a> Männer spielen <b>Fußball</b> im Park.</p>',
    "<p>Eine Frau in einem <i>blauen Kleid</i> sitzt auf einer <b>Bank</b> und liest ein <em>Buch</em>.</p>",
]
SENTENCE = "Ein kleiner Hund rennt mit einem roten Ball über die grüne Wiese und zwei Kinder lachen laut"
BOLD = "<p><b>" + " ".join([SENTENCE + "."] * 6) + " Sehr schön.</b></p>"  # 104 words, 7 sentences


def post(url: str, q: str, fmt: str = "html", timeout: float = 600) -> tuple[float, str]:
    body = json.dumps({"q": q, "source": "de", "target": "en", "format": fmt}).encode()
    req = urllib.request.Request(f"{url}/translate", body, {"Content-Type": "application/json"})
    start = time.perf_counter()
    with urllib.request.urlopen(req, timeout=timeout) as r:
        out = json.loads(r.read())["translatedText"]
    return time.perf_counter() - start, out


def main(url: str, load: bool) -> None:
    words = len(BOLD.replace("<p><b>", "").replace("</b></p>", "").split())
    for page in EXAMPLES:
        print(f"{page}\n  -> {post(url, page)[1]}")
    post(url, "Ein Hund.", "text")  # warm
    seconds, _ = post(url, BOLD)
    print(f"one bold paragraph of {words} words: {seconds:.2f} s")
    if not load:
        return
    times: list[float] = []
    threads = [threading.Thread(target=lambda: times.append(post(url, BOLD)[0])) for _ in range(6)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    plain, _ = post(url, "Ein Hund rennt.", "text")
    for t in threads:
        t.join()
    print(
        f"six bold paragraphs at once: {min(times):.2f}-{max(times):.2f} s each; a plain request meanwhile: "
        f"{plain:.2f} s"
    )


if __name__ == "__main__":
    main(sys.argv[1].rstrip("/"), "--skip-load" not in sys.argv)

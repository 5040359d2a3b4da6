"""Language detection accuracy on Multi30k's val sets: each sentence of val.{de,en,fr,cs} detected among the four
languages by mtx serve's detector (py3langid restricted to them). Usage: python scripts/detect_accuracy.py [DIR]"""

import sys
import time
from pathlib import Path

from mtx.serve.detect import Detector

root = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/multi30k")
langs = ["de", "en", "fr", "cs"]
detector = Detector(langs)
total = right = 0
t0 = time.perf_counter()
for lang in langs:
    lines = [x for x in (root / f"val.{lang}").read_text(encoding="utf-8").splitlines() if x.strip()]
    hits = sum(detector.detect(x)[0]["language"] == lang for x in lines)
    print(f"{lang}: {hits}/{len(lines)} = {100 * hits / len(lines):.2f}%")
    total, right = total + len(lines), right + hits
print(
    f"all: {right}/{total} = {100 * right / total:.2f}% ({(time.perf_counter() - t0) / total * 1000:.2f} ms a sentence)"
)

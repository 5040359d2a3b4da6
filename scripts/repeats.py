"""Runaway repetitions in translations (issue 34): lines of each hypothesis file with a word, or a run of up to
four words, repeated three or more times in a row ("a a a", "x y x y x y").

    python scripts/repeats.py HYP_FILE [HYP_FILE ...]
"""

from __future__ import annotations

import sys
from pathlib import Path


def runaway(words: list[str], times: int = 3, longest: int = 4) -> bool:
    """Whether some n words (n <= `longest`) come `times` or more times in a row."""
    for n in range(1, longest + 1):
        for i in range(len(words) - n * times + 1):
            if all(words[i + k * n : i + (k + 1) * n] == words[i : i + n] for k in range(1, times)):
                return True
    return False


def main(files: list[str]) -> None:
    for f in files:
        lines = Path(f).read_text(encoding="utf-8").splitlines()
        hits = [i + 1 for i, line in enumerate(lines) if runaway(line.split())]
        print(f"{f}: {len(hits)} of {len(lines)} lines repeat (lines {hits[:10]}{' ...' if len(hits) > 10 else ''})")


if __name__ == "__main__":
    main(sys.argv[1:])

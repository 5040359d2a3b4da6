"""Translate lines with Argos Translate's own code, from packages installed with its own install_from_path:

    python scripts/argos_translate.py PACKAGE.argosmodel [...] --from de --to en < in.txt > out.txt
    python scripts/argos_translate.py PACKAGE.argosmodel [...] --tsv < lines.tsv   # SRC<tab>TGT<tab>TEXT a line

Argos splits text into sentences with MiniSBD, whose model is downloaded on first use; offline, the splitter is
stubbed here (a line is one sentence, as `mtx translate` takes it): the only part of Argos replaced. Set
ARGOS_PACKAGES_DIR to an empty folder first (packages are installed there), ARGOS_BEAM_SIZE for the beam."""

from __future__ import annotations

import argparse
import sys

import argostranslate.translate as argos_translate
from argostranslate import package


class OneSentence:
    """Argos' sentence splitter, stubbed: the text is one sentence."""

    def __init__(self, pkg):
        self.pkg = pkg

    def split_sentences(self, text: str) -> list[str]:
        return [text]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("packages", nargs="+")
    ap.add_argument("--from", dest="src")
    ap.add_argument("--to", dest="tgt")
    ap.add_argument("--tsv", action="store_true", help="Each line: source, target and text, tab-separated.")
    args = ap.parse_args()
    if not args.tsv and not (args.src and args.tgt):
        ap.error("give --from and --to, or --tsv")
    argos_translate.MiniSBDSentencizer = OneSentence
    for path in args.packages:
        package.install_from_path(path)
    languages = {lang.code: lang for lang in argos_translate.get_installed_languages()}
    for line in sys.stdin.read().splitlines():
        src, tgt, text = line.split("\t", 2) if args.tsv else (args.src, args.tgt, line)
        print(languages[src].get_translation(languages[tgt]).translate(text))


if __name__ == "__main__":
    main()

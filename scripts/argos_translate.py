"""Translate lines with Argos Translate's own code, from packages installed with its own install_from_path:

    python scripts/argos_translate.py PACKAGE.argosmodel [...] --from de --to en < in.txt > out.txt

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
    ap.add_argument("--from", dest="src", required=True)
    ap.add_argument("--to", dest="tgt", required=True)
    args = ap.parse_args()
    argos_translate.MiniSBDSentencizer = OneSentence
    for path in args.packages:
        package.install_from_path(path)
    languages = {lang.code: lang for lang in argos_translate.get_installed_languages()}
    translation = languages[args.src].get_translation(languages[args.tgt])
    for line in sys.stdin.read().splitlines():
        print(translation.translate(line))


if __name__ == "__main__":
    main()

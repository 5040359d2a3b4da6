"""Compare sentence segmenters on abbreviation, number, quote and ellipsis cases in de, en, fr, cs: prints a
Markdown table (cases right per segmenter, and the time per 1,000 sentences). Needs the two not installed by mtx:
`pip install pysbd sentencex && python scripts/segmenters.py`"""

from __future__ import annotations

import time

import pysbd
import sentence_splitter
import sentencex

# (language, text, the expected sentences)
CASES = [
    ("de", "Ich habe z. B. Hunde gern. Du nicht.", ["Ich habe z. B. Hunde gern.", "Du nicht."]),
    ("de", "Er kommt am 3. Oktober zurück. Dann feiern wir.", ["Er kommt am 3. Oktober zurück.", "Dann feiern wir."]),
    ("de", "Es kostet ca. 5 Euro. Das ist billig.", ["Es kostet ca. 5 Euro.", "Das ist billig."]),
    ("de", "Dr. Müller ist da. Er wartet.", ["Dr. Müller ist da.", "Er wartet."]),
    ("de", "Hunde, Katzen usw. sind Tiere. Vögel auch.", ["Hunde, Katzen usw. sind Tiere.", "Vögel auch."]),
    ("de", "Er sagte: „Komm her!“ Dann ging er.", ["Er sagte: „Komm her!“", "Dann ging er."]),
    ("de", "Ich weiß nicht … Vielleicht morgen.", ["Ich weiß nicht …", "Vielleicht morgen."]),
    ("de", "Ein Hund läuft. Eine Katze schläft.", ["Ein Hund läuft.", "Eine Katze schläft."]),
    ("en", "Mr. Smith met Dr. Jones. They talked.", ["Mr. Smith met Dr. Jones.", "They talked."]),
    ("en", "It costs $3.50 today. Buy it!", ["It costs $3.50 today.", "Buy it!"]),
    ("en", "Pets, e.g. dogs, are nice. Cats too.", ["Pets, e.g. dogs, are nice.", "Cats too."]),
    ("en", 'He said "Stop." Then he left.', ['He said "Stop."', "Then he left."]),
    ("en", "Wait... What happened? Nobody knows.", ["Wait...", "What happened?", "Nobody knows."]),
    ("en", "A man in a red shirt. A dog runs.", ["A man in a red shirt.", "A dog runs."]),
    ("fr", "M. Dupont est arrivé. Il est content.", ["M. Dupont est arrivé.", "Il est content."]),
    ("fr", "Il y a env. 5 km. C'est loin.", ["Il y a env. 5 km.", "C'est loin."]),
    ("fr", "Elle a dit « Viens ! » Puis elle est partie.", ["Elle a dit « Viens ! »", "Puis elle est partie."]),
    ("fr", "Le 1er janv. 2020 il neigeait. Il faisait froid.", ["Le 1er janv. 2020 il neigeait.", "Il faisait froid."]),
    ("cs", "Přišel např. Petr. Pak odešel.", ["Přišel např. Petr.", "Pak odešel."]),
    ("cs", "Bylo to 3. května. Pršelo.", ["Bylo to 3. května.", "Pršelo."]),
    ("cs", "Stojí to cca 5 Kč. To je levné.", ["Stojí to cca 5 Kč.", "To je levné."]),
    ("cs", "Pes běží. Kočka spí.", ["Pes běží.", "Kočka spí."]),
]


def segmenters():
    pysbd_langs = {"de": "de", "en": "en", "fr": "fr", "cs": "sk"}  # pysbd has no Czech: Slovak, the nearest
    sbd = {lang: pysbd.Segmenter(language=code, clean=False) for lang, code in pysbd_langs.items()}
    moses = {lang: sentence_splitter.SentenceSplitter(language=lang) for lang in ("de", "en", "fr", "cs")}
    return {
        "pysbd 0.3.4": lambda lang, text: [s.strip() for s in sbd[lang].segment(text) if s.strip()],
        "sentence-splitter 1.4": lambda lang, text: moses[lang].split(text),
        "sentencex 1.0": lambda lang, text: [s.strip() for s in sentencex.segment(lang, text) if s.strip()],
    }


def main() -> None:
    print(f"| segmenter | right (of {len(CASES)}) | de | en | fr | cs | ms / 1,000 sentences | wrong |")
    print("|---|---|---|---|---|---|---|---|")
    for name, split in segmenters().items():
        right, per, wrong = 0, {}, []
        for lang, text, want in CASES:
            ok = split(lang, text) == want
            right += ok
            per[lang] = per.get(lang, 0) + ok
            if not ok:
                wrong.append(f"{lang}: {split(lang, text)}")
        start = time.perf_counter()
        for _ in range(50):
            for lang, text, _ in CASES:
                split(lang, text)
        ms = (time.perf_counter() - start) * 1000 / (50 * sum(len(w) for _, _, w in CASES)) * 1000
        langs = " | ".join(str(per[x]) for x in ("de", "en", "fr", "cs"))
        print(f"| {name} | {right} | {langs} | {ms:.0f} | {'; '.join(wrong)} |")


if __name__ == "__main__":
    main()

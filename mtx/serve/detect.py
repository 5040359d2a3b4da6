"""Language identification for `POST /detect` and `source: "auto"`: py3langid (langid.py's naive Bayes model over
byte n-grams, 97 languages, shipped inside its wheel: nothing is downloaded), restricted to the languages the
model translates from. Why this library and how well it does on Multi30k: docs/deploy.md."""

from __future__ import annotations

from py3langid.langid import MODEL_FILE, LanguageIdentifier

from mtx.errors import UsageError


class Detector:
    """Ranks a text's language among `languages` (those py3langid knows), confidence in percent."""

    def __init__(self, languages: list[str]):
        self.ident = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        known = set(self.ident.nb_classes)
        self.languages = [x for x in languages if x in known]
        if not self.languages:
            raise UsageError(f"language detection knows none of {', '.join(languages)}")
        if len(self.languages) > 1:
            self.ident.set_languages(self.languages)

    def detect(self, text: str) -> list[dict]:
        """[{"language": code, "confidence": percent}, ...], the most likely first (LibreTranslate's /detect)."""
        if len(self.languages) == 1:
            return [{"language": self.languages[0], "confidence": 100.0}]
        ranked = self.ident.rank(text)
        return [{"language": lang, "confidence": round(100.0 * p, 1)} for lang, p in ranked]

"""The web page at / in a real browser: Debian's Chromium, headless, driven by Playwright. Typing German shows the
model's translation; alternatives on click; the detected language; switching the target of a multilingual model;
an API-key server without a key shows its error; a file translated; a phone-sized window and the keyboard alone."""

from __future__ import annotations

import shutil
import urllib.request

import pytest
from fakes import FunctionTranslator, WordTokenizer
from test_serve import Running, loaded  # noqa: F401  (the tiny model's translator, a fixture)

from mtx.config import DecodeConfig
from mtx.decode.translator import BatchTranslator, Translation
from mtx.serve.service import Limits, Service

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium (apt-get install chromium)")
WAIT_MS = 60_000


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield b
        b.close()


class Tagged(BatchTranslator):
    """A two-target model's stand-in: "translates" a line into the target tag it was given and the line."""

    class Tok(WordTokenizer):
        def piece_id(self, piece):
            return {"<2en>": 5, "<2fr>": 6}[piece]

    def __init__(self):
        self.tokenizer, self.cfg, self.batch_tokens = self.Tok(), DecodeConfig(beam=1), 1000

    def decode_ids(self, ids, prefix=None, **options):
        tag = {5: "EN", 6: "FR"}[prefix[0]]
        return [Translation(f"{tag}: {x}", [(f"{tag}: {x}", 0.0)]) for x in self.tokenizer.decode(ids)]


def test_typing_german_shows_the_models_english(browser, loaded, tiny_corpus):  # noqa: F811
    src = (tiny_corpus / "test_2016_flickr.de").read_text(encoding="utf-8").splitlines()[0]
    best = loaded.translate([src])[0].text
    limits = Limits(max_chars=500, max_sentences=8, wait_ms=5)
    with Running(Service(loaded, [("de", "en")], limits)) as r:
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{r.port}/")
        sync_api.expect(page.locator("#source option")).to_have_count(2)  # "Detect language" and German
        page.locator("#text").fill(src)
        sync_api.expect(page.locator("#output")).to_have_text(best, timeout=WAIT_MS)
        sync_api.expect(page.locator("#detected")).to_contain_text("German")
        page.locator("#more").click()
        alternatives = page.locator("#alternatives button")
        sync_api.expect(alternatives).not_to_have_count(0, timeout=WAIT_MS)
        other = alternatives.first.inner_text()
        alternatives.first.click()
        sync_api.expect(page.locator("#output")).to_have_text(other)
        page.locator("#source").select_option("de")
        sync_api.expect(page.locator("#output")).to_have_text(best, timeout=WAIT_MS)
        sync_api.expect(page.locator("#detected")).to_have_text("")
        # a file: its translation to download
        page.locator("#file").set_input_files(
            files=[{"name": "a.html", "mimeType": "text/html", "buffer": f"<p><b>{src}</b></p>".encode()}]
        )
        link = page.locator("#file-result a")
        sync_api.expect(link).to_have_count(1, timeout=WAIT_MS)
        with urllib.request.urlopen(link.get_attribute("href"), timeout=60) as got:
            assert got.read().decode() == f"<p><b>{best}</b></p>"
        page.close()


def test_switching_the_target_of_a_multilingual_model(browser):
    with Running(Service(Tagged(), [("de", "en"), ("de", "fr")], Limits(wait_ms=1))) as r:
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{r.port}/")
        sync_api.expect(page.locator("#target option")).to_have_count(2)
        page.locator("#text").fill("Ein Hund")
        sync_api.expect(page.locator("#output")).to_have_text("EN: Ein Hund", timeout=WAIT_MS)
        page.locator("#target").select_option("fr")
        sync_api.expect(page.locator("#output")).to_have_text("FR: Ein Hund", timeout=WAIT_MS)
        page.close()


def test_sentences_of_low_confidence_are_marked_with_a_legend(browser):
    """The fake's confidence is 1 / a sentence's words: the four-word sentence (0.25) is marked, the two-word one
    (0.5, not below the mark) is not; the legend says so, and goes when nothing is marked."""
    with Running(Service(FunctionTranslator(str.upper), [("de", "en")], Limits(wait_ms=1))) as r:
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{r.port}/")
        page.locator("#text").fill("Ein Hund. Ein kleiner grauer Hund. Hallo.")
        output = page.locator("#output")
        sync_api.expect(output).to_have_text("EIN HUND. EIN KLEINER GRAUER HUND. HALLO.", timeout=WAIT_MS)
        sync_api.expect(output.locator("mark")).to_have_count(1)
        sync_api.expect(output.locator("mark")).to_have_text("EIN KLEINER GRAUER HUND.")
        sync_api.expect(output.locator("mark")).to_have_attribute("title", "confidence 0.25")
        sync_api.expect(page.locator("#legend")).to_contain_text("a sentence the model is unsure of")
        page.locator("#text").fill("Ein Hund.")
        sync_api.expect(output).to_have_text("EIN HUND.", timeout=WAIT_MS)
        sync_api.expect(output.locator("mark")).to_have_count(0)
        sync_api.expect(page.locator("#legend")).to_have_text("")
        page.close()


def test_a_key_server_without_a_key_shows_the_error(browser):
    limits = Limits(wait_ms=1, keys=frozenset({"k1"}))
    with Running(Service(Tagged(), [("de", "en"), ("de", "fr")], limits)) as r:
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{r.port}/")
        sync_api.expect(page.locator("#api-key")).to_be_visible()
        page.locator("#text").fill("Ein Hund")
        sync_api.expect(page.locator("#error")).to_contain_text("API key", timeout=WAIT_MS)
        sync_api.expect(page.locator("#output")).to_have_text("")
        page.locator("#api-key").fill("k1")
        page.locator("#api-key").press("Tab")  # the change event: translated with the key
        sync_api.expect(page.locator("#output")).to_have_text("EN: Ein Hund", timeout=WAIT_MS)
        sync_api.expect(page.locator("#error")).to_have_text("")
        page.close()


def test_a_phone_sized_window_and_the_keyboard_alone(browser):
    with Running(Service(Tagged(), [("de", "en"), ("de", "fr")], Limits(wait_ms=1))) as r:
        page = browser.new_page(viewport={"width": 375, "height": 740})
        page.goto(f"http://127.0.0.1:{r.port}/")
        sync_api.expect(page.locator("#target option")).to_have_count(2)
        src, out = page.locator("#text").bounding_box(), page.locator("#output").bounding_box()
        assert out["y"] > src["y"] + src["height"] and src["width"] <= 375  # one column, nothing wider than it
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
        for _ in range(10):  # Tab to the text box (no mouse), type, Ctrl+Enter
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.id") == "text":
                break
        assert page.evaluate("document.activeElement.id") == "text"
        page.keyboard.type("Ein Hund")
        page.keyboard.press("Control+Enter")
        sync_api.expect(page.locator("#output")).to_have_text("EN: Ein Hund", timeout=WAIT_MS)
        for _ in range(10):  # on to the target picker; the arrow key picks French
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.id") == "target":
                break
        page.keyboard.press("ArrowDown")
        sync_api.expect(page.locator("#output")).to_have_text("FR: Ein Hund", timeout=WAIT_MS)
        page.close()

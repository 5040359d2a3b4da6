"""A screenshot of `mtx serve`'s web page with a German sentence translated (docs/web.png):

    python scripts/web_screenshot.py MODEL docs/web.png [--width 1100] [--height 560]

Starts the server on a free loopback port, opens / in Debian's Chromium (headless, through Playwright), types the
first sentence of Multi30k's test set and waits for its translation."""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

TEXT = "Ein Mann mit einem orangefarbenen Hut, der etwas anstarrt."


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("out", type=Path)
    ap.add_argument("--width", type=int, default=1100)
    ap.add_argument("--height", type=int, default=560)
    args = ap.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "mtx", "serve", "--model", args.model, "--port", str(port),
                               "--device", "cpu"])  # fmt: skip
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium"))
            page = browser.new_page(viewport={"width": args.width, "height": args.height})
            page.goto(f"http://127.0.0.1:{port}/")
            page.locator("#text").fill(TEXT)
            expect(page.locator("#detected")).not_to_have_text("", timeout=60_000)
            page.locator("#more").click()
            expect(page.locator("#alternatives button")).not_to_have_count(0, timeout=60_000)
            page.screenshot(path=str(args.out))
            print(f"{args.out}: {page.locator('#output').inner_text()!r}")
            browser.close()
    finally:
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    main()

"""The faults of issue 31 a client could cause, sent to a running `mtx serve` (any version): what it answers to
each. `python scripts/serve_faults.py http://127.0.0.1:5000`; with `--rate`, against a server started with
`--req-limit 3`: six requests, each with a made-up key and its own X-Forwarded-For."""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request

T = '"source": "de", "target": "en"'
FAULTS = {
    "prefix with a lone surrogate": ("/translate", '{"q": "Ein Hund.", ' + T + ', "prefix": "\\ud800"}'),
    "q with a lone surrogate": ("/translate", '{"q": "\\ud800", ' + T + "}"),
    "html q with a lone surrogate": ("/translate", '{"q": "\\ud800", ' + T + ', "format": "html"}'),
    "score translation with a lone surrogate": ("/score", '{"q": "a", "translation": "\\udfff", ' + T + "}"),
    "temperature 1e-308": ("/translate", '{"q": "Ein Hund.", ' + T + ', "sample": "topk=5", "temperature": 1e-308}'),
    "400 nested <b>": ("/translate", '{"q": "' + "<b>" * 400 + 'x", ' + T + ', "format": "html"}'),
    "990 <div>": ("/translate", '{"q": "' + "<div>" * 990 + 'x", ' + T + ', "format": "html"}'),
    "a 4,999-character prefix (limit 5,000)": (
        "/translate",
        '{"q": "Ein.", ' + T + ', "prefix": "' + "x" * 4999 + '"}',
    ),
    "20,000 texts to /detect": ("/detect", '{"q": [' + ",".join(['""'] * 20000) + "]}"),
}


def call(url: str, path: str, body: str, headers: dict | None = None) -> tuple[int, str]:
    req = urllib.request.Request(url + path, body.encode(), {"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=600) as r:
            return r.status, r.read().decode()[:80]
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()[:80]


def main(url: str, rate: bool) -> None:
    if not rate:
        for name, (path, body) in FAULTS.items():
            print(f"{name}: {call(url, path, body)}")
        print("CSP of the page:", urllib.request.urlopen(url + "/", timeout=60).headers["Content-Security-Policy"])
        return
    codes = [call(url, "/translate", json.dumps({"q": "Ein Hund.", "source": "de", "target": "en", "api_key": f"k{i}"}),
                  {"X-Forwarded-For": f"10.0.0.{i}"})[0] for i in range(6)]  # fmt: skip
    print(f"a made-up key and X-Forwarded-For per request (--req-limit 3): {codes}")


if __name__ == "__main__":
    main(sys.argv[1].rstrip("/"), "--rate" in sys.argv)

"""Item 9 of issue 31 against a running `mtx serve` (any version): 8 clients send 70 sentences each and hang up after
0.3 s; then one sentence is sent. Prints how long it waits, and how long it takes alone.
`python scripts/serve_hangups.py http://127.0.0.1:5000`"""

from __future__ import annotations

import json
import socket
import sys
import time
import urllib.parse
import urllib.request


def one(url: str) -> float:
    body = json.dumps({"q": "Ein Hund rennt.", "source": "de", "target": "en"}).encode()
    start = time.perf_counter()
    req = urllib.request.Request(f"{url}/translate", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        r.read()
    return time.perf_counter() - start


def main(url: str) -> None:
    one(url)  # warm
    alone = one(url)
    host, port = urllib.parse.urlsplit(url).hostname, urllib.parse.urlsplit(url).port
    q = " ".join(f"Ein Mann in einem roten Hemd steht neben Nummer {k} auf der Straße." for k in range(70))
    body = json.dumps({"q": q, "source": "de", "target": "en"}).encode()
    head = b"POST /translate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    clients = [socket.create_connection((host, port)) for _ in range(8)]
    for c in clients:
        c.sendall(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
    time.sleep(0.3)
    for c in clients:
        c.close()
    waited = one(url)
    print(f"one sentence alone: {alone:.2f} s; after 8 clients of 70 sentences hung up: {waited:.2f} s")


if __name__ == "__main__":
    main(sys.argv[1].rstrip("/"))

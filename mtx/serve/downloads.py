"""Translated files waiting for their download (`POST /translate_file` answers a translatedFileUrl, as
LibreTranslate does): kept in memory for `ttl_s` seconds, the newest `most` of them."""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict

FILE_TTL_S = 600.0
FILES = 64


class FileStore:
    def __init__(self, ttl_s: float = FILE_TTL_S, most: int = FILES, clock=time.monotonic):
        self.ttl_s, self.most, self.clock = ttl_s, most, clock
        self.files: OrderedDict[str, tuple[float, str, str]] = OrderedDict()

    def put(self, name: str, body: str) -> str:
        """Keep a file; the key that fetches it (unguessable)."""
        self._expire()
        key = secrets.token_urlsafe(16)
        self.files[key] = (self.clock(), name, body)
        while len(self.files) > self.most:
            self.files.popitem(last=False)
        return key

    def get(self, key: str) -> tuple[str, str] | None:
        """(name, body) of a kept file, or None."""
        self._expire()
        got = self.files.get(key)
        return None if got is None else got[1:]

    def _expire(self) -> None:
        now = self.clock()
        while self.files and now - next(iter(self.files.values()))[0] > self.ttl_s:
            self.files.popitem(last=False)

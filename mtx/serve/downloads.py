"""Translated files waiting for their download (`POST /translate_file` answers a translatedFileUrl, as
LibreTranslate does): kept in memory for `ttl_s` seconds (cachetools' TTLCache), at most `per_client` of one
client (its oldest goes first) and `most_chars` characters in all (beyond, a new file is refused: one client
never evicts another's pending download)."""

from __future__ import annotations

import secrets
import time

from cachetools import TTLCache

FILE_TTL_S = 600.0
PER_CLIENT = 16
MOST_CHARS = 64 * 1024 * 1024


class StoreFull(Exception):
    """No room for another file now."""


class FileStore:
    def __init__(self, ttl_s: float = FILE_TTL_S, per_client: int = PER_CLIENT, most_chars: int = MOST_CHARS,
                 clock=time.monotonic):  # fmt: skip
        self.files: TTLCache = TTLCache(most_chars, ttl_s, timer=clock, getsizeof=lambda v: len(v[2]) + 1)
        self.owned: TTLCache = TTLCache(1 << 20, ttl_s, timer=clock)  # client -> its keys, oldest first
        self.per_client = per_client

    def put(self, client: str, name: str, body: str | bytes) -> str:
        """Keep a file of `client`'s; the key that fetches it (unguessable). StoreFull when it does not fit."""
        self.files.expire()
        mine = [k for k in self.owned.get(client, []) if k in self.files]
        while len(mine) >= self.per_client:
            self.files.pop(mine.pop(0), None)
        if self.files.currsize + len(body) + 1 > self.files.maxsize:
            raise StoreFull("no room for another translated file now; retry in a minute")
        key = secrets.token_urlsafe(16)
        self.files[key] = (client, name, body)
        self.owned[client] = [*mine, key]
        return key

    def get(self, key: str) -> tuple[str, str | bytes] | None:
        """(name, body) of a kept file, or None."""
        got = self.files.get(key)
        return None if got is None else got[1:]

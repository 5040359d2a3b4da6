"""Who may use the server, and how much (LibreTranslate's `--api-keys`, `--req-limit`): API keys read from a file,
and requests per minute counted by `limits` (a moving window, in memory; a client's entries expire with its
window, so the table holds only the clients of the last minute).

Who a request is: its API key where keys are configured and it carries a valid one; else its client address (a
key that the server does not check names nobody: counting per made-up key would let any client reset its own
count). A request refused for its key (403) counts against its address too, so keys cannot be guessed at speed."""

from __future__ import annotations

from pathlib import Path

from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from mtx.errors import MtxError

MIN_KEY = 8  # characters an API key has at least


def read_keys(path: Path) -> set[str]:
    """The keys of a file, one a line (a UTF-8 BOM, blank lines, `#` comments, also after a key, skipped); an
    empty or unreadable file, or a key shorter than MIN_KEY characters, is an error, named with its line."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise MtxError(f"{path}: cannot read API keys ({e})") from None
    keys = set()
    for n, line in enumerate(text.splitlines(), 1):
        key = line.split("#", 1)[0].strip()
        if not key:
            continue
        if len(key) < MIN_KEY or any(c.isspace() for c in key):
            raise MtxError(f"{path}:{n}: an API key has {MIN_KEY} or more characters and no spaces")
        keys.add(key)
    if not keys:
        raise MtxError(f"{path}: no API key in the file (one a line)")
    return keys


class Access:
    """LibreTranslate's access rules: `check(key, address)` returns None when the request may go on, else
    (status, message)."""

    def __init__(self, keys: frozenset[str], per_minute: int):
        self.keys, self.per_minute = keys, per_minute
        self.limiter = MovingWindowRateLimiter(MemoryStorage()) if per_minute > 0 else None
        self.item = RateLimitItemPerMinute(per_minute) if per_minute > 0 else None

    def _hit(self, who: str) -> bool:
        return self.limiter is None or self.limiter.hit(self.item, who)

    def check(self, key: str | None, address: str) -> tuple[int, str] | None:
        if self.keys and key not in self.keys:
            if not self._hit(f"address {address}"):
                return 429, f"Too many requests: at most {self.per_minute} a minute"
            return 403, "Invalid API key" if key else "Please provide an API key (api_key)"
        who = f"key {key}" if self.keys else f"address {address}"
        if not self._hit(who):
            return 429, f"Too many requests: at most {self.per_minute} a minute"
        return None

"""Who may use the server, and how much (LibreTranslate's `--api-keys`, `--req-limit`): API keys read from a file,
and requests per minute counted per key, else per client address."""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from pathlib import Path

from mtx.errors import MtxError

TRACKED = 100_000  # clients whose recent requests are remembered at most (the longest idle forgotten first)


def read_keys(path: Path) -> set[str]:
    """The keys of a file, one a line (blank lines and `#` comments skipped); an empty or unreadable file is an
    error, named."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise MtxError(f"{path}: cannot read API keys ({e})") from None
    keys = {line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")}
    if not keys:
        raise MtxError(f"{path}: no API key in the file (one a line)")
    return keys


class RateLimit:
    """At most `per_minute` requests of a client in any 60 seconds (0: no limit)."""

    def __init__(self, per_minute: int, clock=time.monotonic):
        self.per_minute, self.clock = per_minute, clock
        self.seen: OrderedDict[str, deque] = OrderedDict()

    def allow(self, client: str) -> bool:
        """Count a request of `client`; False when it is over the limit (and then it is not counted)."""
        if self.per_minute <= 0:
            return True
        now = self.clock()
        times = self.seen.pop(client, None) or deque()
        while times and now - times[0] >= 60.0:
            times.popleft()
        self.seen[client] = times  # the most recent last
        if len(self.seen) > TRACKED:
            self.seen.popitem(last=False)
        if len(times) >= self.per_minute:
            return False
        times.append(now)
        return True

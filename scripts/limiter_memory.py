"""Memory of serve's rate limiter (mtx/serve/access.py) as distinct clients arrive: 10,000 addresses, each making
one request more than `--req-limit`, and a new made-up key per request from one address.
`python scripts/limiter_memory.py`"""

from __future__ import annotations

import time
import tracemalloc

from mtx.serve.access import Access


def main(clients: int = 10_000, per_minute: int = 3) -> None:
    access = Access(frozenset(), per_minute)
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    start = time.perf_counter()
    for i in range(clients):
        for _ in range(per_minute + 1):
            access.check(f"made-up-{i}", f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}")
    held = tracemalloc.get_traced_memory()[0] - base
    seconds = time.perf_counter() - start
    storage = access.limiter.storage
    keys = len(getattr(storage, "events", {})) + len(getattr(storage, "storage", {}))
    print(
        f"{clients} distinct clients, {per_minute + 1} requests each: {held / 1e6:.1f} MB held, {keys} keys, "
        f"{seconds / (clients * (per_minute + 1)) * 1e6:.1f} µs a check"
    )
    # made-up keys without configured keys name nobody: one client per address, whatever the key
    one = Access(frozenset(), per_minute)
    answers = [one.check(f"key-{k}", "127.0.0.1") for k in range(per_minute + 2)]
    print("one address, a new key each time:", ["ok" if a is None else a[0] for a in answers])


if __name__ == "__main__":
    main()

"""Token buckets keyed by (client, target): how often unverified sign-ins and a code's requests may come.

A :class:`Buckets` holds one bucket per key. A bucket starts full with ``burst`` tokens; each
admitted request takes one, and one comes back every ``refill_s`` seconds. An empty bucket means
"refuse now, retry in N seconds" — answered by the caller before anything is queued, so a flood
costs no worker, no queue slot and no password hash.

The keys are chosen by the caller (:mod:`studio.guard`): ``(client address, "admin")`` for admin
sign-ins that could not be verified in advance, ``(client address, "reader")`` for unknown reader
codes, ``("code", code hash)`` for the requests of one valid code. Keying on the client *and* the
target is what keeps an attacker from locking anyone else out: their failures empty only their own
bucket, and a request that proves the secret never needs a token (see :mod:`studio.guard`).

Memory is bounded: at most ``max_keys`` buckets, the least recently used dropped first (a dropped
bucket is a full one again, which only ever favours a client, never locks one out).
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Hashable


@dataclass
class _Bucket:
    tokens: float
    updated: float


class Buckets:
    """Token buckets per key (thread-safe; the clock is injectable for tests).

    Args:
        burst: requests admitted at once from a full bucket.
        refill_s: seconds per token coming back (the sustained rate is 1 / refill_s per second).
        max_keys: buckets kept at most (least recently used dropped first).
        clock: monotonic seconds.
    """

    def __init__(self, burst: int, refill_s: float, max_keys: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if burst < 1 or refill_s <= 0:
            raise ValueError("burst must be >= 1 and refill_s > 0")
        self.burst = burst
        self.refill_s = refill_s
        self.max_keys = max_keys
        self.clock = clock
        self._buckets: OrderedDict[Hashable, _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    def _bucket(self, key: Hashable, now: float) -> _Bucket:
        b = self._buckets.get(key)
        if b is None:
            b = self._buckets[key] = _Bucket(float(self.burst), now)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            b.tokens = min(float(self.burst), b.tokens + (now - b.updated) / self.refill_s)
            b.updated = now
            self._buckets.move_to_end(key)
        return b

    def take(self, key: Hashable, consume: bool = True) -> float:
        """Take a token for ``key`` (``consume=False``: only ask whether one is there).

        Returns:
            0.0 when admitted; else the seconds until a token is back (nothing was taken).
        """
        with self._lock:
            now = self.clock()
            b = self._bucket(key, now)
            if b.tokens >= 1.0:
                if consume:
                    b.tokens -= 1.0
                return 0.0
            return max(0.001, (1.0 - b.tokens) * self.refill_s)

    def give_back(self, key: Hashable) -> None:
        """Return one token to ``key`` (e.g. the request turned out to hold the right secret)."""
        with self._lock:
            b = self._buckets.get(key)
            if b is not None:
                b.tokens = min(float(self.burst), b.tokens + 1.0)

    def tokens(self, key: Hashable) -> float:
        """Tokens ``key`` has now (``burst`` for a key never seen)."""
        with self._lock:
            b = self._buckets.get(key)
            if b is None:
                return float(self.burst)
            return min(float(self.burst), b.tokens + (self.clock() - b.updated) / self.refill_s)

    def __len__(self) -> int:
        return len(self._buckets)


def retry_after(seconds: float) -> str:
    """A ``Retry-After`` header value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))

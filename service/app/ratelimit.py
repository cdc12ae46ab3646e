"""Per-caller rate limiting: a token bucket per API key (per client address without keys).

A bucket holds ``burst`` tokens and refills at ``rate`` per second; a request takes one. An empty
bucket answers 429 with ``Retry-After``, the whole seconds until a token is back.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

# Buckets idle this long are full again anyway; dropping them bounds memory under many callers.
IDLE_SECONDS = 300.0


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate, self.burst, self.clock = rate, burst, clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()
        self._swept = clock()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def acquire(self, caller: str) -> float | None:
        """Take a token for ``caller``; None if allowed, else seconds until one is back."""
        if not self.enabled:
            return None
        now = self.clock()
        with self._lock:
            self._sweep(now)
            bucket = self._buckets.setdefault(caller, _Bucket(float(self.burst), now))
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
            if bucket.tokens >= 1:
                bucket.tokens -= 1
                return None
            return (1 - bucket.tokens) / self.rate

    def _sweep(self, now: float) -> None:
        if now - self._swept < IDLE_SECONDS:
            return
        self._swept = now
        idle = [k for k, b in self._buckets.items() if now - b.updated > IDLE_SECONDS]
        for caller in idle:
            del self._buckets[caller]


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))

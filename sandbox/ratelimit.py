"""Rate limiters with the semantics the real services document: fixed windows (Plytix) and a
token bucket (PhotoShelter). Rejected requests do not count, as plytix.md §5 says."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass


@dataclass
class Verdict:
    allowed: bool
    limit: int
    remaining: int
    retry_after_s: int  # whole seconds until a request would be allowed again


class FixedWindows:
    """Several fixed windows (e.g. 20 per 10 s and 15 000 per hour); a request must fit in all."""

    def __init__(self, windows: list[tuple[int, float]], clock=time.monotonic):
        self.windows = windows  # (limit, window seconds), the first one is reported in headers
        self.clock = clock
        self._state: dict[tuple[str, int], tuple[float, int]] = {}

    def check(self, key: str) -> Verdict:
        now = self.clock()
        counts = []
        for i, (_limit, span) in enumerate(self.windows):
            start, count = self._state.get((key, i), (now, 0))
            if now - start >= span:
                start, count = now - ((now - start) % span), 0
            counts.append((start, count))
        for (limit, span), (start, count) in zip(self.windows, counts, strict=True):
            if count >= limit:
                wait = max(1, math.ceil(start + span - now))
                return Verdict(False, self.windows[0][0], 0, wait)
        for i, (start, count) in enumerate(counts):
            self._state[(key, i)] = (start, count + 1)
        first_limit, first_span = self.windows[0]
        start, count = self._state[(key, 0)]
        return Verdict(True, first_limit, first_limit - count, max(1, math.ceil(start + first_span - now)))


class TokenBucket:
    """`rate` requests per second per key, bursting up to `burst`."""

    def __init__(self, rate: float, burst: float | None = None, clock=time.monotonic):
        self.rate = rate
        self.burst = burst if burst is not None else max(rate, 1.0)
        self.clock = clock
        self._state: dict[str, tuple[float, float]] = {}

    def check(self, key: str) -> Verdict:
        now = self.clock()
        tokens, last = self._state.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens < 1:
            self._state[key] = (tokens, now)
            return Verdict(False, int(self.burst), 0, max(1, math.ceil((1 - tokens) / self.rate)))
        self._state[key] = (tokens - 1, now)
        return Verdict(True, int(self.burst), int(tokens - 1), 0)

"""The rate limits' store in process memory (used without `RENDIO_REDIS_URL`).

`limits` ships one (`async+memory://`), but it expires entries by scanning every key after
every hit, with a thread hop per moving-window key: measured here, ~350 µs of CPU per request
with ten keys, and one full core once a thousand addresses or users had been seen — work any
crowd of clients could make the server do. This store expires lazily instead: a key's old
entries are dropped when the key is used, and a sweep of the keys nobody used for a while runs
at most once per `SWEEP_EVERY` seconds, inline.

It serves the two strategies the service uses (moving window, sliding window counter) with
the library's own arithmetic, so the decisions are the same as with the library's stores.
"""

from __future__ import annotations

import time
from collections import deque

from limits.aio.storage import MovingWindowSupport, SlidingWindowCounterSupport, Storage
from limits.storage.base import TimestampedSlidingWindow

SWEEP_EVERY = 60.0


class LocalLimitsStorage(
    Storage, MovingWindowSupport, SlidingWindowCounterSupport, TimestampedSlidingWindow
):
    STORAGE_SCHEME = None  # made directly by RateLimiter, never from a URI

    def __init__(self) -> None:
        super().__init__()
        self._counters: dict[str, tuple[int, float]] = {}  # key: (count, expires at)
        self._events: dict[str, tuple[deque[float], float]] = {}  # key: (hit times, window)
        self._next_sweep = time.time() + SWEEP_EVERY

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return ValueError

    def _sweep(self, now: float) -> None:
        """Forget what has expired, at most once per SWEEP_EVERY (keys in use are kept tidy
        when they are used)."""
        if now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_EVERY
        self._counters = {k: v for k, v in self._counters.items() if v[1] > now}
        self._events = {k: v for k, v in self._events.items() if v[0] and v[0][-1] > now - v[1]}

    # Counters (the sliding window counter's two windows).

    async def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        now = time.time()
        self._sweep(now)
        count, expires = self._counters.get(key, (0, 0.0))
        if expires <= now:
            count, expires = 0, now + expiry
        self._counters[key] = (count + amount, expires)
        return count + amount

    async def get(self, key: str) -> int:
        count, expires = self._counters.get(key, (0, 0.0))
        return count if expires > time.time() else 0

    async def get_expiry(self, key: str) -> float:
        return self._counters.get(key, (0, time.time()))[1]

    async def check(self) -> bool:
        return True

    async def reset(self) -> int | None:
        count = len(self._counters) + len(self._events)
        self._counters.clear()
        self._events.clear()
        return count

    async def clear(self, key: str) -> None:
        self._counters.pop(key, None)
        self._events.pop(key, None)

    # Moving window: the times of the hits within the window, oldest first.

    def _window(self, key: str, expiry: float, now: float) -> deque[float]:
        hits = self._events.get(key, (deque(), expiry))[0]
        while hits and hits[0] <= now - expiry:
            hits.popleft()
        return hits

    async def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        now = time.time()
        self._sweep(now)
        hits = self._window(key, expiry, now)
        if len(hits) + amount > limit:
            return False
        hits.extend([now] * amount)
        self._events[key] = (hits, expiry)
        return True

    async def get_moving_window(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
        now = time.time()
        hits = self._window(key, expiry, now)
        return (hits[0], len(hits)) if hits else (now, 0)

    # Sliding window counter: this window's count and the previous one's, weighted.

    async def acquire_sliding_window_entry(
        self, key: str, limit: int, expiry: int, amount: int = 1
    ) -> bool:
        if amount > limit:
            return False
        now = time.time()
        previous, previous_ttl, current, _ = await self._sliding(key, expiry, now)
        if int(previous * previous_ttl / expiry + current) + amount > limit:
            return False
        # Nothing awaited since the counts were read: no other request came in between.
        await self.incr(self.sliding_window_keys(key, expiry, now)[1], 2 * expiry, amount)
        return True

    async def get_sliding_window(self, key: str, expiry: int) -> tuple[int, float, int, float]:
        return await self._sliding(key, expiry, time.time())

    async def clear_sliding_window(self, key: str, expiry: int) -> None:
        for window in self.sliding_window_keys(key, expiry, time.time()):
            await self.clear(window)

    async def _sliding(self, key: str, expiry: int, now: float) -> tuple[int, float, int, float]:
        """(previous count, previous weight's time, current count, current time to live), as
        the library's stores compute them."""
        previous_key, current_key = self.sliding_window_keys(key, expiry, now)
        previous, current = await self.get(previous_key), await self.get(current_key)
        previous_ttl = 0.0 if previous == 0 else (1 - (((now - expiry) / expiry) % 1)) * expiry
        current_ttl = (1 - ((now / expiry) % 1)) * expiry + expiry
        return previous, previous_ttl, current, current_ttl

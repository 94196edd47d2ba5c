"""The in-memory rate-limit store decides as the library's own store does, and forgets what has
expired without scanning every key on every hit."""

import random
from typing import Any

import pytest
from limits import parse
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter, SlidingWindowCounterRateLimiter

from rendio.platform import limits_memory
from rendio.platform.limits_memory import SWEEP_EVERY, LocalLimitsStorage


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """One fake clock for both stores (each reads `time.time()`)."""
    fake = Clock()
    monkeypatch.setattr("time.time", fake)
    return fake


@pytest.mark.parametrize("strategy", [MovingWindowRateLimiter, SlidingWindowCounterRateLimiter])
async def test_decisions_match_the_librarys_store(clock: Clock, strategy: Any) -> None:
    ours, theirs = strategy(LocalLimitsStorage()), strategy(MemoryStorage())
    item = parse("5/10 seconds")
    steps = random.Random(7)
    for _ in range(400):
        clock.now += steps.choice([0.0, 0.1, 0.5, 1.0, 3.0, 7.0])
        key = steps.choice(["a", "b"])
        hit = steps.random() < 0.8
        if hit:
            decided = await ours.hit(item, key), await theirs.hit(item, key)
        else:
            decided = await ours.test(item, key), await theirs.test(item, key)
        assert decided[0] == decided[1]
        mine, library = (
            await ours.get_window_stats(item, key),
            await theirs.get_window_stats(item, key),
        )
        assert mine.remaining == library.remaining
        assert mine.reset_time == pytest.approx(library.reset_time)


async def test_expired_keys_are_forgotten_by_the_next_sweep(clock: Clock) -> None:
    store = LocalLimitsStorage()
    moving, sliding = MovingWindowRateLimiter(store), SlidingWindowCounterRateLimiter(store)
    item = parse("10/minute")
    for address in range(1000):
        await moving.hit(item, f"user-{address}")
        await sliding.hit(item, f"ip-{address}")
    assert len(store._events) == 1000
    assert len(store._counters) == 1000
    clock.now += 3 * 60 + SWEEP_EVERY  # past every window (counters live two) and a sweep
    await moving.hit(item, "someone new")
    [kept] = store._events
    assert "someone new" in kept
    assert store._counters == {}


def test_the_store_is_what_the_limiter_uses_without_redis() -> None:
    from rendio.platform.ratelimit import RateLimiter

    limiter = RateLimiter({"p": "1/second"}, None)
    assert isinstance(limiter._strategy.storage, limits_memory.LocalLimitsStorage)

"""Rate limits (SPEC §5): per client IP or per user, per action, with the `limits` library —
in process memory by default (`limits_memory.py`), in Redis when `RENDIO_REDIS_URL` is set, so
that every replica shares one count.

A decision carries what the IETF draft headers say (`RateLimit-Policy: "name";q=;w=` and
`RateLimit: "name";r=;t=`); the middleware adds them to the response of a limited route. If
the store is unreachable the limiter fails open — the request is served, the error logged and
counted in `rendio_rate_limit_errors_total` — because refusing every request while Redis is
down would turn a cache outage into a full outage (docs/decisions.md).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import structlog
from fastapi import Request
from limits import RateLimitItem, parse
from limits.aio.strategies import (
    MovingWindowRateLimiter,
    SlidingWindowCounterRateLimiter,
)
from limits.aio.strategies import (
    RateLimiter as Strategy,
)
from limits.storage import storage_from_string
from prometheus_client import Counter

from rendio.platform.errors import RateLimited
from rendio.platform.limits_memory import LocalLimitsStorage

log = structlog.get_logger(__name__)
HITS = Counter("rendio_rate_limited_total", "Requests refused by a rate limit", ["policy"])
ERRORS = Counter(
    "rendio_rate_limit_errors_total", "Rate-limit checks that failed open (store unreachable)"
)
STATE_KEY = "rate_limits"


@dataclass(frozen=True)
class Decision:
    policy: str
    quota: int
    window: int
    allowed: bool
    remaining: int
    reset_after: int

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [
            (b"ratelimit-policy", f'"{self.policy}";q={self.quota};w={self.window}'.encode()),
            (b"ratelimit", f'"{self.policy}";r={self.remaining};t={self.reset_after}'.encode()),
        ]

    def refusal(self) -> RateLimited:
        """429 `ERR_4004`; the RateLimit headers are added by the middleware from the state."""
        retry_after = max(1, self.reset_after)
        return RateLimited(
            {"retry_after": retry_after, "policy": self.policy},
            headers={"Retry-After": str(retry_after)},
        )


class RateLimiter:
    def __init__(self, policies: dict[str, str], redis_url: str | None) -> None:
        self.policies: dict[str, RateLimitItem] = {
            name: parse(rule) for name, rule in policies.items()
        }
        storage = (
            LocalLimitsStorage()
            if redis_url is None
            else storage_from_string("async+" + redis_url)  # redis:// or rediss://
        )
        self._strategy = MovingWindowRateLimiter(storage)
        # The per-IP ceiling counts every request of every client: a sliding window counter
        # keeps two numbers per address where a moving window keeps one timestamp per request
        # (up to the ceiling's 1,200 per address), and costs the same at any rate.
        self._ceiling = SlidingWindowCounterRateLimiter(storage)

    async def check(self, policy: str, key: str, *, consume: bool) -> Decision:
        """Whether `key` may do `policy` now; `consume` counts this request against it."""
        return await self._check(self._strategy, policy, key, consume=consume)

    async def _check(self, strategy: Strategy, policy: str, key: str, *, consume: bool) -> Decision:
        item = self.policies[policy]
        window = int(item.get_expiry())
        try:
            if consume:
                allowed = await strategy.hit(item, policy, key)
            else:
                allowed = await strategy.test(item, policy, key)
            stats = await strategy.get_window_stats(item, policy, key)
        except Exception as error:  # the store is away: fail open, visibly
            _failed_open(policy, error)
            return Decision(policy, item.amount, window, True, item.amount, window)
        reset_after = max(0, math.ceil(stats.reset_time - time.time()))
        if not allowed:
            HITS.labels(policy).inc()
        return Decision(policy, item.amount, window, allowed, stats.remaining, reset_after)

    async def over_limit(self, policy: str, key: str) -> Decision | None:
        """Count one request; None if it is within the limit, else the refusal's decision.
        For the per-IP ceiling on every request: the window's stats (a second store call) are
        read only for a refusal."""
        try:
            allowed = await self._ceiling.hit(self.policies[policy], policy, key)
        except Exception as error:
            _failed_open(policy, error)
            return None
        if allowed:
            return None
        decision = await self._check(self._ceiling, policy, key, consume=False)
        return None if decision.allowed else decision

    async def enforce(
        self, request: Request, policy: str, key: str | None = None, *, consume: bool = True
    ) -> None:
        """Check `key` (default: the client's IP), remember the decision for the response's
        headers, and refuse with 429 `ERR_4004` if it is over its limit."""
        state = request.scope.setdefault("state", {})
        decision = await self.check(
            policy, key or state.get("client_ip", "unknown"), consume=consume
        )
        _remember(request, decision)
        if not decision.allowed:
            raise decision.refusal()

    async def count(self, request: Request, policy: str, key: str) -> None:
        """Count a request that succeeded against `policy` (paid actions count only what they
        did: a refused request, or a replay of an earlier answer, costs no quota)."""
        _remember(request, await self.check(policy, key, consume=True))


def _remember(request: Request, decision: Decision) -> None:
    """Kept for the middleware, which adds the decision's headers to the response."""
    request.scope.setdefault("state", {}).setdefault(STATE_KEY, {})[decision.policy] = decision


def _failed_open(policy: str, error: Exception) -> None:
    ERRORS.inc()
    log.error("rate_limit_store_unreachable", policy=policy, error=repr(error))

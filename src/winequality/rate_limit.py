"""Per-caller request limits: a token bucket per (endpoint, client address), answered 429.

A caller may send ``burst`` requests at once and ``rate_per_s`` a second after that; one over
gets ``429`` with ``Retry-After`` (whole seconds until a request is allowed again) and
``{"detail": {"reason": "rate_limited", "message": ...}}``, the bearer check's shape. The check
is a dependency placed after the token's, so a refused request is refused before its body is
read. The caller is the peer address: behind an ingress that is the ingress, unless it is the
one limiting (see docs/threat-model.md). At most ``max_callers`` buckets are kept, the least
recently seen forgotten first, so a flood of addresses cannot grow the process.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Final

from fastapi import FastAPI, HTTPException, Request

__all__ = ["CallerLimiter", "limit_dependency", "set_limit"]

_LIMITS_ATTRIBUTE: Final = "caller_limits"


class CallerLimiter:
    """Token buckets by caller; ``rate_per_s <= 0`` disables the limit. ``on_refused`` is
    called for every request refused (a refused request reaches no endpoint, so no other
    count sees it)."""

    def __init__(
        self,
        rate_per_s: float,
        burst: int,
        *,
        max_callers: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        on_refused: Callable[[], object] | None = None,
    ) -> None:
        self.rate_per_s = rate_per_s
        self.burst = max(1, burst)
        self.max_callers = max_callers
        self._clock = clock
        self._on_refused = on_refused
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.rate_per_s > 0

    def take(self, caller: str) -> float:
        """0 when ``caller`` may go ahead (one request taken), else seconds to wait."""
        if not self.enabled:
            return 0.0
        now = self._clock()
        tokens, seen = self._buckets.pop(caller, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - seen) * self.rate_per_s)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate_per_s
            if self._on_refused is not None:
                self._on_refused()
        self._buckets[caller] = (tokens, now)
        while len(self._buckets) > self.max_callers:
            self._buckets.popitem(last=False)
        return wait


def set_limit(app: FastAPI, name: str, limiter: CallerLimiter) -> None:
    """The limiter ``limit_dependency(name)`` applies in ``app``."""
    limits = getattr(app.state, _LIMITS_ATTRIBUTE, None)
    if limits is None:
        limits = {}
        setattr(app.state, _LIMITS_ATTRIBUTE, limits)
    limits[name] = limiter


def limit_dependency(name: str) -> Callable[[Request], Awaitable[None]]:
    """A dependency refusing (429) a caller over the app's limit ``name`` (none set: no limit)."""

    async def limit(request: Request) -> None:
        limiter: CallerLimiter | None = getattr(request.app.state, _LIMITS_ATTRIBUTE, {}).get(name)
        if limiter is None or not limiter.enabled:
            return
        client = request.client
        wait = limiter.take(client.host if client is not None else "unknown")
        if wait > 0:
            retry = max(1, math.ceil(wait))
            raise HTTPException(
                429,
                {
                    "reason": "rate_limited",
                    "message": f"more than {limiter.rate_per_s:g} request(s)/s (burst "
                    f"{limiter.burst}) from this caller to {name}; retry in {retry} s",
                },
                headers={"Retry-After": str(retry)},
            )

    return limit

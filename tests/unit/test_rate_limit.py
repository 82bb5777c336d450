"""Per-caller token buckets: a burst, then the rate; callers apart; bounded memory."""

from __future__ import annotations

from winequality.rate_limit import CallerLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_caller_gets_its_burst_then_waits_for_the_rate() -> None:
    clock = Clock()
    limiter = CallerLimiter(2.0, 3, clock=clock)
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a") == 0.5  # one token refills in 1/rate s
    clock.now = 0.5
    assert limiter.take("a") == 0.0
    assert limiter.take("a") > 0


def test_a_refused_request_takes_nothing() -> None:
    clock = Clock()
    limiter = CallerLimiter(1.0, 1, clock=clock)
    assert limiter.take("a") == 0.0
    for _ in range(100):
        assert limiter.take("a") > 0  # hammering while refused does not push the wait out
    clock.now = 1.0
    assert limiter.take("a") == 0.0


def test_callers_have_their_own_buckets() -> None:
    limiter = CallerLimiter(1.0, 1, clock=Clock())
    assert limiter.take("a") == 0.0
    assert limiter.take("a") > 0
    assert limiter.take("b") == 0.0


def test_a_rate_of_zero_disables_the_limit() -> None:
    limiter = CallerLimiter(0.0, 1, clock=Clock())
    assert not limiter.enabled
    assert all(limiter.take("a") == 0.0 for _ in range(1000))


def test_at_most_max_callers_buckets_are_kept_oldest_forgotten_first() -> None:
    limiter = CallerLimiter(1.0, 1, max_callers=3, clock=Clock())
    for caller in "abcd":
        limiter.take(caller)
    assert limiter.take("a") == 0.0  # forgotten, so a fresh bucket
    assert limiter.take("d") > 0

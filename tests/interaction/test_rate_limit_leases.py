"""Rate-limit leases (idp/interaction/ratelimit.py): a busy address's requests are taken from
Redis several at a time, and every worker together still never admits more than the limit
(checklist 112)."""

from __future__ import annotations

import random
import secrets
from typing import Any

import pytest

from idp.interaction.ratelimit import MAX_LEASE, RateLimiter
from idp.storage.hot import RedisStore

pytestmark = pytest.mark.redis


class CountingStore(RedisStore):
    """A :class:`RedisStore` that counts the scripts it sends (one per Redis round trip)."""

    def __init__(self, url: str) -> None:
        super().__init__(url, namespace="test")
        self.scripts = 0

    def script(self, what: str, source: str, keys: Any, args: Any) -> Any:
        self.scripts += 1
        return super().script(what, source, keys, args)


def _limiters(redis_url: str, n: int, clock: Any) -> list[tuple[RateLimiter, CountingStore]]:
    namespace = "test-" + secrets.token_hex(6)  # shared by the "workers", new per test
    out = []
    for _ in range(n):
        store = CountingStore(redis_url)
        out.append((RateLimiter(store, namespace=namespace, clock=clock), store))
    return out


def test_checklist_112_a_busy_address_costs_few_redis_round_trips(redis_url: str) -> None:
    [(limiter, store)] = _limiters(redis_url, 1, lambda: 1_000.0)
    admitted = [limiter.hit("token", "192.0.2.7", 100_000) for _ in range(500)]
    assert admitted == [None] * 500
    # Leases of 1, 2, 4, … 64, then 64 each: 500 requests in 13 round trips, not 500.
    assert store.scripts <= 15
    assert limiter.last_backend == "redis"


def test_checklist_112_workers_together_never_admit_more_than_the_limit(redis_url: str) -> None:
    limit = 100
    workers = _limiters(redis_url, 3, lambda: 2_000.0)
    rng = random.Random(7)
    admitted = 0
    for _ in range(400):
        limiter, _store = rng.choice(workers)
        if limiter.hit("token", "192.0.2.8", limit) is None:
            admitted += 1
    # Never more than the limit; and since every worker keeps being asked, what each leased
    # is used up before it asks again: exactly the limit.
    assert admitted == limit


def test_checklist_112_small_limits_are_counted_one_by_one(redis_url: str) -> None:
    workers = _limiters(redis_url, 2, lambda: 3_000.0)
    results = [workers[i % 2][0].hit("login", "192.0.2.9", 3) for i in range(5)]
    assert results[:3] == [None, None, None]
    assert results[3] is not None and results[4] is not None


def test_checklist_112_past_the_limit_no_round_trip_until_the_window_ends(
    redis_url: str,
) -> None:
    now = [4_000.0]
    [(limiter, store)] = _limiters(redis_url, 1, lambda: now[0])
    assert [limiter.hit("token", "192.0.2.10", 2) for _ in range(3)][2] is not None
    sent = store.scripts
    for _ in range(50):
        wait = limiter.hit("token", "192.0.2.10", 2)
        assert wait is not None and 1 <= wait <= 60
    assert store.scripts == sent  # a flood of refused requests is answered from memory
    now[0] += 60  # the next window: counted afresh
    assert limiter.hit("token", "192.0.2.10", 2) is None
    assert store.scripts == sent + 1


def test_checklist_112_a_raised_limit_is_seen_within_the_window(redis_url: str) -> None:
    [(limiter, _store)] = _limiters(redis_url, 1, lambda: 5_000.0)
    assert [limiter.hit("sms", "192.0.2.11", 1) for _ in range(2)][1] is not None
    assert limiter.hit("sms", "192.0.2.11", 100) is None  # a policy raised the limit


def test_checklist_112_leases_are_bounded() -> None:
    # A lease never exceeds MAX_LEASE or a quarter of what is left (no Redis needed).
    from idp.interaction.ratelimit import _Lease

    assert _Lease(0, 64, 0, 0.0).next_size(1_000_000) == MAX_LEASE
    assert _Lease(0, 8, 80, 0.0).next_size(100) == 5
    assert _Lease(0, 8, 99, 0.0).next_size(100) == 1

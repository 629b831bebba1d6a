"""Request rate limits shared by all workers through Redis, failing safe without it.

Checklist 112 (ASVS 2.4.1, 16.5.2/16.5.3): ``/login``, ``/register`` and the second-factor
endpoints answer ``429 Too Many Requests`` with ``Retry-After`` (RFC 6585 §4, RFC 9110
§10.2.3) once a client address exceeds its limit.  The counters are fixed one-minute (or
one-hour) windows kept in Redis (``INCRBY`` + ``EXPIRE`` as one ``EVALSHA``), so every
worker and node sees the same count.

**Leases.**  A worker does not ask Redis for every request of a busy address: it takes the
next *n* of that address's requests in the window at once (one ``INCRBY n``) and admits them
from memory.  The first request of an address in a window takes one; each later lease twice
the last, at most :data:`MAX_LEASE` and at most a quarter of what the window has left, so a
limit of a few per window is counted one by one.  Leased requests are counted in Redis when
leased, so every worker together never admits more than the limit; what a worker leased and
did not use is lost at the end of the window, so an address may be refused a little early,
never late.  Once Redis's count passed the limit, the worker remembers it until the window
ends (a fixed window's count only grows), so a flood costs no Redis command per request.
Why: a round trip to Redis for every token request cost about a fifth of a client-credentials
request's CPU (docs/benchmarks.md), while a relying party's backend, one address, makes most
of the token endpoint's traffic.

**When Redis is down** (or not configured) each worker counts in its own memory with
the *same* limits: the effective limit becomes at most ``workers × limit`` per address, never
unlimited (checklist 117).  After a Redis error the limiter stays local for ``RETRY_AFTER_ERROR``
seconds before trying Redis again, so an outage costs one short timeout, not one per request.

Rate limits are a traffic guard, not the lockout: failed-attempt counters that must hold
(lockout, second-factor failures, TOTP replay) are in the database (:mod:`.throttle`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from idp.errors import StateStoreUnavailable
from idp.storage.hot import RedisStore

log = logging.getLogger(__name__)

#: INCRBY and EXPIRE as one command (EVALSHA): the same atomic count as a
#: MULTI/INCRBY/EXPIRE/EXEC transaction, but one command to encode and one reply to parse.
_COUNT = """
local n = redis.call('INCRBY', KEYS[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[1])
return n
"""

RETRY_AFTER_ERROR = 5.0  # seconds of local-only counting after a Redis failure
MAX_LEASE = 64  # requests of one address a worker may take from Redis at once
MAX_KEYS = 50_000  # window counters (or leases) kept in memory before expired ones are dropped


@dataclass
class _Lease:
    """What this worker holds of one address's window: requests it may still admit, the last
    lease's size, Redis's count after it, and when the window ends."""

    left: int
    size: int
    counted: int
    ends: float

    def next_size(self, limit: int) -> int:
        """Twice the last lease, at most :data:`MAX_LEASE` and a quarter of what is left."""
        return max(1, min(self.size * 2, MAX_LEASE, (limit - self.counted) // 4))


class RateLimiter:
    """The counters in ``hot`` (the process's one :class:`RedisStore`), else in memory."""

    def __init__(
        self,
        hot: RedisStore | None,
        *,
        namespace: str = "yitong",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.hot = hot
        self.namespace = namespace
        self.clock = clock
        self._down_until = 0.0
        self._local: dict[str, tuple[int, float]] = {}
        self._leases: dict[str, _Lease] = {}
        self._lock = threading.Lock()
        self.last_backend = "local"

    def hit(self, scope: str, key: str, limit: int, window: int = 60) -> int | None:
        """Count one request; None if within ``limit`` per ``window`` s, else seconds to wait."""
        now = self.clock()
        bucket = int(now // window)
        name = f"{self.namespace}:rl:{scope}:{key}:{bucket}"[:512]
        ends = (bucket + 1) * window
        reset_in = max(1, int(ends - now + 0.999))
        with self._lock:
            lease = self._leases.get(name)
            if lease is not None:
                if lease.left > 0:  # taken from Redis earlier in this window
                    lease.left -= 1
                    self.last_backend = "redis"
                    return None
                if lease.counted > limit:  # Redis's count only grows within a window
                    self.last_backend = "redis"
                    return reset_in
        if self.hot is not None and now >= self._down_until:
            size = 1 if lease is None else lease.next_size(limit)
            try:
                counted = int(self.hot.script("rate limit", _COUNT, [name], [window + 1, size]))
            except StateStoreUnavailable as exc:  # fall back, loudly
                log.warning("rate limiter: %s; counting locally", exc)
                self._down_until = now + RETRY_AFTER_ERROR
            else:
                self.last_backend = "redis"
                # Of this lease, what the limit still allowed (the rest went past it).
                granted = min(size, max(0, limit - (counted - size)))
                with self._lock:
                    held = self._leases.get(name)
                    left = (held.left if held is not None else 0) + max(0, granted - 1)
                    self._leases[name] = _Lease(left, size, counted, ends)
                    if len(self._leases) > MAX_KEYS:
                        self._leases = {k: v for k, v in self._leases.items() if v.ends > now}
                return None if granted > 0 else reset_in
        self.last_backend = "local"
        with self._lock:
            count, expires = self._local.get(name, (0, 0.0))
            if expires <= now:
                count = 0
            count += 1
            self._local[name] = (count, ends)
            if len(self._local) > MAX_KEYS:
                self._local = {k: v for k, v in self._local.items() if v[1] > now}
        return None if count <= limit else reset_in

"""Request rate limits shared by all workers through Redis, failing safe without it.

Checklist 112 (ASVS 2.4.1, 16.5.2/16.5.3): ``/login``, ``/register`` and the second-factor
endpoints answer ``429 Too Many Requests`` with ``Retry-After`` (RFC 6585 §4, RFC 9110
§10.2.3) once a client address exceeds its limit.  The counters are fixed one-minute (or
one-hour) windows kept in Redis (``INCR`` + ``EXPIRE``), so every worker and node sees the
same count (one ``EVALSHA`` of a two-line script per request).

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

from idp.errors import StateStoreUnavailable
from idp.storage.hot import RedisStore

log = logging.getLogger(__name__)

#: INCR and EXPIRE as one command (EVALSHA): the same atomic count as a MULTI/INCR/EXPIRE/EXEC
#: transaction, but one command to encode and one reply to parse instead of four of each.
#: Every token request passes through :meth:`RateLimiter.hit`, so this is per-request work.
_COUNT = """
local n = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[1])
return n
"""

RETRY_AFTER_ERROR = 5.0  # seconds of local-only counting after a Redis failure


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
        self._lock = threading.Lock()
        self.last_backend = "local"

    def hit(self, scope: str, key: str, limit: int, window: int = 60) -> int | None:
        """Count one request; None if within ``limit`` per ``window`` s, else seconds to wait."""
        now = self.clock()
        bucket = int(now // window)
        name = f"{self.namespace}:rl:{scope}:{key}:{bucket}"[:512]
        reset_in = max(1, int((bucket + 1) * window - now + 0.999))
        if self.hot is not None and now >= self._down_until:
            try:
                count = int(self.hot.script("rate limit", _COUNT, [name], [window + 1]))
                self.last_backend = "redis"
                return None if count <= limit else reset_in
            except StateStoreUnavailable as exc:  # fall back, loudly
                log.warning("rate limiter: %s; counting locally", exc)
                self._down_until = now + RETRY_AFTER_ERROR
        self.last_backend = "local"
        with self._lock:
            count, expires = self._local.get(name, (0, 0.0))
            if expires <= now:
                count = 0
            count += 1
            self._local[name] = (count, (bucket + 1) * window)
            if len(self._local) > 50_000:
                self._local = {k: v for k, v in self._local.items() if v[1] > now}
        return None if count <= limit else reset_in

"""Request rate limits shared by all workers through Redis, failing safe without it.

Checklist 112 (ASVS 2.4.1, 16.5.2/16.5.3): ``/login``, ``/register`` and the second-factor
endpoints answer ``429 Too Many Requests`` with ``Retry-After`` (RFC 6585 §4, RFC 9110
§10.2.3) once a client address exceeds its limit.  The counters are fixed one-minute (or
one-hour) windows kept in Redis (``INCR`` + ``EXPIRE``), so every worker and node sees the
same count (one ``EVALSHA`` of a two-line script per request).

**When Redis is down** (or ``redis_url`` is empty) each worker counts in its own memory with
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
from typing import Any

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
REDIS_TIMEOUT = 0.25  # seconds; a limiter must never make a login slow


class RateLimiter:
    def __init__(
        self,
        redis_url: str = "",
        *,
        namespace: str = "yitong",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis_url = redis_url
        self.namespace = namespace
        self.clock = clock
        self._redis: Any = None
        self._count: Any = None
        self._down_until = 0.0
        self._local: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()
        self.last_backend = "local"

    def _client(self) -> Any:
        if not self.redis_url or self.clock() < self._down_until:
            return None
        if self._redis is None:
            import redis

            client = redis.Redis.from_url(
                self.redis_url,
                socket_timeout=REDIS_TIMEOUT,
                socket_connect_timeout=REDIS_TIMEOUT,
                retry_on_timeout=False,
            )
            self._count = client.register_script(_COUNT)  # before _redis: threads see both
            self._redis = client
        return self._redis

    def hit(self, scope: str, key: str, limit: int, window: int = 60) -> int | None:
        """Count one request; None if within ``limit`` per ``window`` s, else seconds to wait."""
        now = self.clock()
        bucket = int(now // window)
        name = f"{self.namespace}:rl:{scope}:{key}:{bucket}"[:512]
        reset_in = max(1, int((bucket + 1) * window - now + 0.999))
        client = self._client()
        if client is not None:
            try:
                count = int(self._count(keys=[name], args=[window + 1], client=client))
                self.last_backend = "redis"
                return None if count <= limit else reset_in
            except Exception as exc:  # any Redis failure: fall back, loudly
                log.warning("rate limiter: Redis unavailable (%s); counting locally", exc)
                self._down_until = now + RETRY_AFTER_ERROR
                self._redis = None
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

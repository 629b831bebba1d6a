"""Short-lived shared state in Redis: replay caches, pushed requests, counters, session
clocks (issue 12 item 2).

PostgreSQL (or SQLite) stays the system of record for accounts, grants, refresh tokens,
consents, keys and the audit trail.  What moves here when ``redis_url`` is set is state that
lives seconds to minutes, is written on hot paths and must be seen by every worker and node at
once:

- one-time markers (client-assertion ``jti``, RFC 7523 §3 item 7): ``SET key 1 NX EX ttl``,
  the first writer wins atomically on every node;
- pushed authorization requests (RFC 9126): ``SET … EX`` on push, ``GETDEL`` on use, so a
  ``request_uri`` is single-use without a database row;
- the lockout and second-factor counters (:mod:`idp.interaction.redis_counters`);
- the SSO sessions' activity clock (:mod:`idp.interaction.sessions`): written on every request
  that uses a session, its row written only now and then.  The one caller that catches
  :class:`~idp.errors.StateStoreUnavailable`: an unreachable (or missing) clock falls back to
  the row's, which is never fresher, so an idle timeout is never bypassed.

**When Redis is down nothing is bypassed** (checklist 117): every call raises
:class:`~idp.errors.StateStoreUnavailable`, which the app answers with a 503 page or an RFC 6749
``temporarily_unavailable`` JSON error; no replay check is skipped and no counter is guessed.
Timeouts are short, so an outage costs a fraction of a second per request, not a hang.

Keys carry the instance's namespace (``<ns>:<kind>:<digest>``); values that name a credential
are stored under its SHA-256 digest, never in the clear.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Sequence
from typing import Any

import redis
from redis.exceptions import NoScriptError

from idp.errors import StateStoreUnavailable

#: Seconds; a Redis call that takes longer is an outage (fail closed, answer 503).
SOCKET_TIMEOUT = 0.5


class RedisStore:
    """One Redis connection pool per process, with the namespace every key carries."""

    def __init__(self, url: str, *, namespace: str) -> None:
        self.url = url
        self.namespace = namespace
        self._client: redis.Redis | None = None
        self._lock = threading.Lock()
        self._mine = threading.local()  # this thread's own connection (see command)

    @property
    def client(self) -> redis.Redis:
        """The (lazily created) client; a pool of connections shared by the worker's threads."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = redis.Redis.from_url(
                        self.url,
                        socket_timeout=SOCKET_TIMEOUT,
                        socket_connect_timeout=SOCKET_TIMEOUT,
                        retry_on_timeout=False,
                        health_check_interval=30,
                    )
        return self._client

    def key(self, kind: str, name: str) -> str:
        return f"{self.namespace}:{kind}:{name}"

    def command(self, what: str, *args: Any) -> Any:
        """One command on this thread's own connection, its raw reply (bytes, int, None, list).

        The hot paths (the rate limit on every token request, the session clock on every
        signed-in request, the login counters) send one command each.  Through
        ``redis.Redis`` one ``EVALSHA`` cost about 75 µs of CPU, two thirds of it the pool's
        checkout and return and the retry wrapper; on a connection of the thread's own, about
        24 µs.  A connection that failed is dropped and opened afresh by the next call; one
        made before a fork is never used in the child.
        """
        conn = getattr(self._mine, "conn", None)
        if conn is None or self._mine.pid != os.getpid():
            conn = self.client.connection_pool.make_connection()
            self._mine.conn, self._mine.pid = conn, os.getpid()
        try:
            conn.send_command(*args)
            return conn.read_response()
        except NoScriptError:
            raise
        except redis.ResponseError as exc:  # an error reply: the connection is still good
            raise StateStoreUnavailable(f"redis {what}: {type(exc).__name__}") from None
        except redis.RedisError as exc:
            conn.disconnect()
            self._mine.conn = None
            raise StateStoreUnavailable(f"redis {what}: {type(exc).__name__}") from None

    def script(self, what: str, source: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run a Lua script by its digest (``EVALSHA``), loading it first if Redis lost it
        (a restart flushes scripts)."""
        sha = hashlib.sha1(source.encode()).hexdigest()  # noqa: S324 - Redis names scripts so
        try:
            return self.command(what, "EVALSHA", sha, len(keys), *keys, *args)
        except NoScriptError:
            self.command(what, "SCRIPT", "LOAD", source)
            return self.command(what, "EVALSHA", sha, len(keys), *keys, *args)

    # ------------------------------------------------------------------ one-time markers
    def claim_once(self, kind: str, name: str, ttl: int) -> bool:
        """Record ``name`` as used for ``ttl`` seconds; False if it already was (a replay)."""
        key = self.key(kind, name)
        return self.command("claim", "SET", key, b"1", "EX", max(1, ttl), "NX") is not None

    # ------------------------------------------------------------------ values used once
    def put(self, kind: str, name: str, value: bytes, ttl: int) -> None:
        key = self.key(kind, name)
        self.command("put", "SET", key, value, "EX", max(1, ttl))

    def take(self, kind: str, name: str) -> bytes | None:
        """The value, removed atomically (``GETDEL``): a second taker gets None."""
        key = self.key(kind, name)
        value = self.command("take", "GETDEL", key)
        return value if isinstance(value, bytes) else None

    def swap(self, kind: str, name: str, value: bytes, ttl: int) -> bytes | None:
        """Set the value and return the one it replaced (``SET … GET``, one round trip)."""
        key = self.key(kind, name)
        old = self.command("swap", "SET", key, value, "EX", max(1, ttl), "GET")
        return old if isinstance(old, bytes) else None

    def peek(self, kind: str, name: str) -> bytes | None:
        key = self.key(kind, name)
        value = self.command("get", "GET", key)
        return value if isinstance(value, bytes) else None

    # ------------------------------------------------------------------ health
    def ping(self) -> bool:
        """Whether Redis answers now (the readiness probe)."""
        try:
            return bool(self.client.ping())
        except redis.RedisError:
            return False

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

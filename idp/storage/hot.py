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

import functools
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


@functools.lru_cache(maxsize=64)
def script_digest(source: str) -> str:
    """The name Redis gives a script (SHA-1 of its text), worked out once per script text.

    The scripts are module constants run on hot paths (the rate limit of every token
    request); hashing the text again on every call cost a tenth of the call.
    """
    return hashlib.sha1(source.encode()).hexdigest()  # noqa: S324 - Redis names scripts so


def pack_command(args: tuple[Any, ...], encoding: str, errors: str) -> bytes | None:
    """The RESP request for ``args``, byte for byte what redis-py would send; None if it
    holds anything but a plain command name and ``bytes``, ``str`` and ``int`` arguments.

    redis-py's packer runs every argument through its encoder's chain of ``isinstance``
    checks and re-joins the buffer once per argument: two thirds of the Python cost of
    sending an ``EVALSHA``.  ``encoding`` and ``errors`` are the connection's, for ``str``
    arguments.  On None the caller hands ``args`` to redis-py, which then packs or refuses
    them itself (``DataError`` for a ``bool``, for instance), so nothing that is not packed
    here is packed differently.  The name is ASCII letters only: redis-py splits a name at
    whitespace (``"SCRIPT LOAD"``) and encodes it as UTF-8.
    """
    if not args:
        return None
    name = args[0]
    if type(name) is not str or not (name.isascii() and name.isalpha()):
        return None
    out = [b"*%d\r\n$%d\r\n%b\r\n" % (len(args), len(name), name.encode())]
    for arg in args[1:]:
        kind = type(arg)
        if kind is bytes:
            data = arg
        elif kind is str:
            data = arg.encode(encoding, errors)
        elif kind is int:
            data = b"%d" % arg
        else:
            return None
        out.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(out)


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
        made before a fork is never used in the child.  The command is packed by
        :func:`pack_command` where it can be, else by redis-py.

        Errors: :class:`~redis.exceptions.NoScriptError` is raised as it is (``script``
        loads the script); any other error reply raises
        :class:`~idp.errors.StateStoreUnavailable` and keeps the connection; any other
        ``RedisError`` (connection, timeout, an argument redis-py cannot pack) raises it too
        and drops the connection.  Anything else (an argument its encoding cannot encode)
        is raised as it is.
        """
        mine = self._mine
        conn = getattr(mine, "conn", None)
        if conn is None or mine.pid != os.getpid():
            conn = self.client.connection_pool.make_connection()
            encoder = self.client.get_encoder()  # the connection's settings
            mine.conn, mine.pid = conn, os.getpid()
            mine.codec = (encoder.encoding, encoder.encoding_errors)
        try:
            packed = pack_command(args, *mine.codec)
            if packed is None:
                conn.send_command(*args)
            else:
                conn.send_packed_command((packed,))
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
        sha = script_digest(source)
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

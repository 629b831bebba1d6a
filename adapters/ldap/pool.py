"""Connections to one directory's servers: pool, circuit breakers, failover and time budget.

Each directory keeps its own pool and per-server breakers, so a department whose directory
is down or hung answers ``AdapterUnavailable`` at once and never slows down another
department (checklist 116).  Every call carries an :class:`Attempt`: the deadline it may
spend across all servers, and the servers it already failed on.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import ldap3
from ldap3.core import exceptions as ldap_errors

from adapters.base import AdapterUnavailable, InvalidCredentials
from adapters.ldap.config import DirectoryConfig, ServerUrl

log = logging.getLogger("yitong.adapters.ldap")

T = TypeVar("T")

# Result codes that mean "the server cannot serve now", not "these credentials are wrong".
BUSY_CODES = frozenset({51, 52, 80})  # busy, unavailable, other
COMMUNICATION_ERRORS: tuple[type[BaseException], ...] = (
    ldap_errors.LDAPCommunicationError,
    ldap_errors.LDAPStartTLSError,
    ldap_errors.LDAPCertificateError,
    ldap_errors.LDAPSSLConfigurationError,
    ldap_errors.LDAPResponseTimeoutError,
    ssl.SSLError,
    OSError,
)


class ServerAnswer(Exception):
    """The server answered, but not usefully (misconfiguration): reported as unavailable."""


# ----------------------------------------------------------------------------- circuit breaker
class ServerHealth:
    """A circuit breaker for one server URL.

    Closed: calls go through.  After ``threshold`` consecutive failures it opens for
    ``reset`` seconds, during which the server is skipped (the directory answers at once,
    checklist 116); then one probe is let through (half-open) and its outcome decides.
    """

    def __init__(self, threshold: int, reset: float, clock: Callable[[], float]) -> None:
        self.threshold = threshold
        self.reset = reset
        self.clock = clock
        self.failures = 0
        self.open_until = 0.0
        self.probing = False
        self.last_error: str | None = None
        self._lock = threading.Lock()

    @property
    def state(self) -> str:
        if self.failures < self.threshold:
            return "closed"
        return "half-open" if self.clock() >= self.open_until else "open"

    def allow(self) -> bool:
        with self._lock:
            if self.failures < self.threshold:
                return True
            if self.clock() >= self.open_until and not self.probing:
                self.probing = True
                return True
            return False

    def success(self) -> None:
        with self._lock:
            self.failures = 0
            self.probing = False
            self.last_error = None

    def settle(self) -> None:
        """End a half-open probe that proved nothing either way (so the next one may run)."""
        with self._lock:
            self.probing = False

    def failure(self, error: str) -> bool:
        """Record a failure; True when this opened (or re-opened) the breaker."""
        with self._lock:
            self.failures += 1
            self.probing = False
            self.last_error = error
            if self.failures >= self.threshold:
                self.open_until = self.clock() + self.reset
                return True
            return False


# ----------------------------------------------------------------------------- connection pool
@dataclass
class Slot:
    """One pooled connection, the server it is open to, and whether it came from the pool."""

    conn: Any  # ldap3.Connection
    server_index: int
    kind: str
    last_used: float
    reused: bool = False


class _Pool:
    """Idle connections of one kind ("search": service-bound, "bind": for user binds).

    At most ``size`` connections of a kind exist at once; a caller waits for one only as long
    as its own deadline allows.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.idle: deque[Slot] = deque()
        self.lock = threading.Lock()
        self.capacity = threading.BoundedSemaphore(size)


class Attempt:
    """What one call may still spend: the deadline and the servers it already failed on."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.failed: set[int] = set()
        self.errors: list[str] = []

    def remaining(self) -> float:
        return self.deadline - time.monotonic()


class ConnectionPool:
    """The servers of one directory: pooled connections, breakers and failover order.

    :meth:`run` is the only way directory operations reach a server, so every operation
    gets the same deadline, failover and breaker accounting.
    """

    def __init__(self, config: DirectoryConfig, clock: Callable[[], float]) -> None:
        self.config = config
        self.id = config.id
        self._clock = clock
        self.health = [
            ServerHealth(config.circuit_failures, config.circuit_reset_seconds, clock)
            for _ in config.urls
        ]
        self._pools = {"search": _Pool(config.pool_size), "bind": _Pool(config.pool_size)}

    def status(self) -> list[dict[str, Any]]:
        """Circuit-breaker state per server, for ``ldap list`` and health pages."""
        return [
            {"url": s.url, "state": h.state, "failures": h.failures, "last_error": h.last_error}
            for s, h in zip(self.config.urls, self.health, strict=True)
        ]

    def close(self) -> None:
        """Close every idle pooled connection (at shutdown, or when the config changes)."""
        for pool in self._pools.values():
            with pool.lock:
                slots = list(pool.idle)
                pool.idle.clear()
            for slot in slots:
                close_quietly(slot.conn)

    def _tls(self, server: ServerUrl) -> ldap3.Tls | None:
        cfg = self.config
        if cfg.tls == "none":
            return None
        # Checklist 90: ldap3's Tls() defaults to CERT_NONE and turns the SSLContext's
        # hostname check off; require a chain to the CA and check the name ourselves
        # (ldap3 matches the URL host, plus tls_names, against the certificate).
        return ldap3.Tls(
            validate=ssl.CERT_REQUIRED if cfg.validate_certificate else ssl.CERT_NONE,
            ca_certs_file=cfg.ca_file,
            valid_names=[server.host, *cfg.tls_names],
            sni=server.host,
        )

    def connect(self, index: int, deadline: float, *, service: bool) -> Any:
        """Open (TLS, and the service bind when ``service``) a connection to server ``index``.

        Not pooled: :meth:`run` pools; ``ldap test`` uses this directly to check each server.
        """
        cfg = self.config
        server_url = cfg.urls[index]
        remaining = max(0.1, deadline - time.monotonic())
        server = ldap3.Server(
            server_url.host,
            port=server_url.port,
            use_ssl=server_url.use_ssl,
            tls=self._tls(server_url),
            get_info=ldap3.NONE,
            connect_timeout=min(cfg.connect_timeout, remaining),
            # Checklist 93: ldap3's default is [("*", True)], any host, with our credentials.
            allowed_referral_hosts=[(h, True) for h in cfg.referral_hosts],
        )
        conn = ldap3.Connection(
            server,
            client_strategy=ldap3.SYNC,
            auto_referrals=cfg.allow_referrals,
            read_only=True,
            raise_exceptions=False,
            return_empty_attributes=False,
            # ldap3 packs this into SO_RCVTIMEO as a whole number of seconds.
            receive_timeout=max(1, math.ceil(min(cfg.receive_timeout, remaining))),
        )
        try:
            conn.open(read_server_info=False)
            limit_wait(conn, min(cfg.receive_timeout, max(0.1, deadline - time.monotonic())))
            # Checklist 90: a StartTLS failure ends here; we never continue in plaintext.
            if cfg.tls == "starttls" and (
                not conn.start_tls(read_server_info=False) or not conn.tls_started
            ):
                raise ldap_errors.LDAPStartTLSError(f"StartTLS refused: {conn.last_error}")
            if service:
                self.service_bind(conn)
        except BaseException:
            close_quietly(conn)
            raise
        return conn

    def service_bind(self, conn: Any) -> None:
        """Bind ``conn`` as the service account (nothing for anonymous search)."""
        cfg = self.config
        if not cfg.bind_dn:
            return  # anonymous_search: the connection stays anonymous
        if conn.closed or (cfg.tls != "none" and not (conn.server.ssl or conn.tls_started)):
            raise ldap_errors.LDAPSocketSendError("connection lost its TLS layer")
        conn.user = cfg.bind_dn
        conn.password = (cfg.bind_password or "").encode("utf-8")
        conn.authentication = ldap3.SIMPLE
        try:
            conn.bind(read_server_info=False)
        finally:
            conn.password = None
        if not conn.result or conn.result["result"] != 0:
            raise ServerAnswer(
                f"service bind as {cfg.bind_dn} refused: "
                f"{conn.result['description'] if conn.result else conn.last_error}"
            )

    def _acquire(self, kind: str, attempt: Attempt, *, fresh: bool = False) -> Slot:
        pool = self._pools[kind]
        if not pool.capacity.acquire(timeout=max(0.0, attempt.remaining())):
            raise AdapterUnavailable(
                f"directory {self.id}: all {pool.size} {kind} connections busy"
            )
        try:
            now = self._clock()
            if not fresh:
                while True:
                    with pool.lock:
                        slot = pool.idle.popleft() if pool.idle else None
                    if slot is None:
                        break
                    idle_too_long = now - slot.last_used > self.config.pool_idle_seconds
                    if (
                        idle_too_long
                        or slot.server_index in attempt.failed
                        or self.health[slot.server_index].state != "closed"
                    ):
                        close_quietly(slot.conn)
                        continue
                    slot.reused = True
                    return slot
            for index in range(len(self.config.urls)):
                if index in attempt.failed:
                    continue
                if attempt.remaining() <= 0:
                    break
                if not self.health[index].allow():
                    attempt.errors.append(f"{self.config.urls[index].url}: circuit open")
                    continue
                try:
                    conn = self.connect(index, attempt.deadline, service=(kind == "search"))
                except (*COMMUNICATION_ERRORS, ServerAnswer, ldap_errors.LDAPException) as exc:
                    self._record_failure(index, exc, attempt)
                    continue
                return Slot(conn, index, kind, now)
            raise AdapterUnavailable(
                f"directory {self.id} unavailable: "
                + ("; ".join(attempt.errors) or "no server left")
            )
        except BaseException:
            pool.capacity.release()
            raise

    def _release(self, slot: Slot) -> None:
        pool = self._pools[slot.kind]
        slot.last_used = self._clock()
        if slot.conn.closed:
            pool.capacity.release()
            return
        with pool.lock:
            pool.idle.append(slot)
        pool.capacity.release()

    def _discard(self, slot: Slot) -> None:
        close_quietly(slot.conn)
        self._pools[slot.kind].capacity.release()

    def _record_failure(self, index: int, exc: BaseException, attempt: Attempt) -> None:
        url = self.config.urls[index].url
        text = describe_error(exc)
        attempt.failed.add(index)
        attempt.errors.append(f"{url}: {text}")
        if self.health[index].failure(text):
            log.warning(
                "directory %s: %s marked down for %.0fs (%s)",
                self.id,
                url,
                self.config.circuit_reset_seconds,
                text,
            )
            self._drop_idle(index)
        else:
            log.info("directory %s: %s failed (%s)", self.id, url, text)

    def _drop_idle(self, index: int) -> None:
        for pool in self._pools.values():
            with pool.lock:
                keep = [s for s in pool.idle if s.server_index != index]
                drop = [s for s in pool.idle if s.server_index == index]
                pool.idle.clear()
                pool.idle.extend(keep)
            for slot in drop:
                close_quietly(slot.conn)

    def run(self, kind: str, op: Callable[[Any], T], attempt: Attempt, *, retry: bool = True) -> T:
        """Run ``op`` on a pooled connection, failing over between servers within the deadline.

        A reused connection that fails at once (closed by the server while idle) is replaced
        and retried on the same server; a timeout or a failure on a fresh connection counts
        against that server's breaker and moves on to the next server (checklist 116).
        """
        fresh = False
        while True:
            if attempt.remaining() <= 0:
                raise AdapterUnavailable(
                    f"directory {self.id}: no answer within {self.config.timeout:g}s; "
                    + "; ".join(attempt.errors)
                )
            slot = self._acquire(kind, attempt, fresh=fresh)
            if slot.conn.closed:
                self._discard(slot)
                continue
            limit_wait(slot.conn, min(self.config.receive_timeout, max(0.1, attempt.remaining())))
            health = self.health[slot.server_index]
            try:
                result = op(slot.conn)
            except ServerAnswer as exc:
                # The server answered: it is up, but refuses this (misconfiguration).
                self._release(slot)
                health.success()
                raise AdapterUnavailable(f"directory {self.id}: {exc}") from None
            except COMMUNICATION_ERRORS as exc:
                self._discard(slot)
                stale = slot.reused and not isinstance(exc, TimeoutError) and not _timed_out(exc)
                if stale and retry and not fresh:
                    fresh = True
                    continue
                self._record_failure(slot.server_index, exc, attempt)
                fresh = False
                continue
            except InvalidCredentials:
                self._release(slot)
                health.success()
                raise
            except ldap_errors.LDAPException as exc:
                # ldap3 refused the request itself (a malformed DN, say): not the server's
                # fault, so its breaker is left alone.
                self._discard(slot)
                health.settle()
                raise AdapterUnavailable(f"directory {self.id}: {describe_error(exc)}") from None
            except BaseException:
                self._discard(slot)
                health.settle()
                raise
            self._release(slot)
            health.success()
            return result


# ----------------------------------------------------------------------------- small helpers
def close_quietly(conn: Any) -> None:
    """Unbind; closing a broken socket may fail, and there is nothing to report then."""
    with contextlib.suppress(Exception):
        conn.unbind()


def limit_wait(conn: Any, seconds: float) -> None:
    """Bound the next socket wait by what this call may still spend."""
    sock = getattr(conn, "socket", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.settimeout(seconds)


def _timed_out(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "timed out" in text or "timeout" in text


def describe_error(exc: BaseException) -> str:
    """A short, printable account of ``exc`` for logs, status and ``ldap test``."""
    text = str(exc).strip() or type(exc).__name__
    # ldap3 puts the whole peer certificate into its hostname error; keep the point of it.
    text = re.sub(r"certificate \{.*\} doesn't match", "certificate doesn't match", text)
    return text if len(text) < 300 else text[:297] + "..."

"""Outbound fetches of client metadata URLs (``jwks_uri``), guarded against SSRF.

Checklist 59 (ASVS 1.3.6): a URL a client registered is attacker-controlled input.  Before we
connect we resolve the host ourselves, refuse every non-global address (loopback, RFC 1918,
link-local including 169.254.169.254, CGNAT, multicast, reserved, IPv4-mapped forms of those),
and then connect to the very address we checked, so a DNS answer that changes between the
check and the connection (rebinding) cannot redirect us.  Only ``https``; redirects are not
followed; the body is capped (64 KB) and the whole exchange times out (5 s).

``Settings.outbound_test_allowlist`` (testing only, refused otherwise) lists ``host:port``
pairs that may be reached over plain http on loopback, so tests can serve a JWKS locally.
``Settings.outbound_private_hosts`` lists intranet hosts (``host`` or ``host:port``) that may
resolve to private addresses: department services on the government network.  They still
need https and a valid certificate.
"""

from __future__ import annotations

import base64
import socket
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import urllib3

from idp import untrusted_json
from idp.oauth.addresses import is_public_address

MAX_BYTES = 64 * 1024
TIMEOUT_SECONDS = 5.0


class OutboundError(Exception):
    """The URL may not be fetched, or the fetch failed; the message is safe to log."""


@dataclass(frozen=True)
class OutboundPolicy:
    """Limits for one kind of fetch; the defaults are the checklist's (64 KB, 5 s, https only).

    ``allowlist`` holds testing-only ``host:port`` exceptions (see the module docstring).
    """

    allowlist: tuple[str, ...] = ()
    max_bytes: int = MAX_BYTES
    timeout: float = TIMEOUT_SECONDS
    private_hosts: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: Any) -> OutboundPolicy:
        return cls(
            allowlist=tuple(settings.outbound_test_allowlist),
            private_hosts=tuple(settings.outbound_private_hosts),
        )


def _is_public(address: str) -> bool:
    # NAT64, 6to4, Teredo and IPv4-compatible forms are judged by their IPv4 address.
    return is_public_address(address)


@dataclass(frozen=True)
class _Target:
    scheme: str
    host: str
    port: int
    path: str
    address: str


def resolve_target(
    url: str, allowlist: Collection[str] = (), private_hosts: Collection[str] = ()
) -> _Target:
    """Check ``url`` and pick the (public) address to connect to; raise :class:`OutboundError`."""
    if not isinstance(url, str) or len(url) > 2000:
        raise OutboundError("URL is missing or too long")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise OutboundError("URL cannot be parsed") from None
    host = parts.hostname
    if not host or parts.username or parts.password or "@" in parts.netloc:
        raise OutboundError("URL needs a host and no userinfo")
    port = port or (443 if parts.scheme == "https" else 80)
    allowed_for_tests = f"{host}:{port}" in allowlist
    private_ok = host in private_hosts or f"{host}:{port}" in private_hosts
    if parts.scheme != "https" and not (parts.scheme == "http" and allowed_for_tests):
        raise OutboundError("only https URLs are fetched")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise OutboundError("host does not resolve") from None
    addresses = [str(info[4][0]) for info in infos]
    if not addresses:
        raise OutboundError("host does not resolve")
    if not (allowed_for_tests or private_ok):
        # Every answer must be public: picking "the public one" of a mixed answer would let
        # an attacker race us onto the private one through the resolver cache.
        for address in addresses:
            if not _is_public(address):
                raise OutboundError("host resolves to a non-public address")
    return _Target(parts.scheme, host, port, path, addresses[0])


def pinned_pool(target: _Target) -> urllib3.HTTPConnectionPool:
    """A one-connection pool to the checked address of ``target``, never re-resolved.

    TLS is verified against the host name (SNI and certificate), while the TCP connection
    goes to the address :func:`resolve_target` checked: DNS cannot swap it (rebinding).
    The one way every outbound request of ours connects (fetches and logout deliveries).
    """
    if target.scheme == "https":
        return urllib3.HTTPSConnectionPool(
            target.address,
            target.port,
            server_hostname=target.host,
            assert_hostname=target.host,
            cert_reqs="CERT_REQUIRED",
            maxsize=1,
            retries=False,
        )
    return urllib3.HTTPConnectionPool(target.address, target.port, maxsize=1, retries=False)


def host_header(target: _Target) -> str:
    return target.host if target.port in (80, 443) else f"{target.host}:{target.port}"


def fetch(
    url: str,
    *,
    allowlist: Collection[str] = (),
    max_bytes: int = MAX_BYTES,
    timeout: float = TIMEOUT_SECONDS,
    accept: str = "application/json",
    private_hosts: Collection[str] = (),
) -> bytes:
    """GET ``url`` under the SSRF rules above and return at most ``max_bytes`` of body."""
    target = resolve_target(url, allowlist, private_hosts)
    pool = pinned_pool(target)
    deadline = time.monotonic() + timeout
    try:
        resp = pool.urlopen(
            "GET",
            target.path,
            headers={"Host": host_header(target), "Accept": accept, "User-Agent": "yitong"},
            redirect=False,
            preload_content=False,
            timeout=urllib3.Timeout(connect=timeout, read=timeout),
            retries=False,
        )
        try:
            if resp.status != 200:
                raise OutboundError(f"unexpected HTTP status {resp.status}")
            declared = resp.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise OutboundError("response too large")
            chunks: list[bytes] = []
            size = 0
            for chunk in resp.stream(8192):
                size += len(chunk)
                if size > max_bytes:
                    raise OutboundError("response too large")
                if time.monotonic() > deadline:
                    raise OutboundError("timed out")
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            resp.release_conn()
            resp.close()
    except urllib3.exceptions.HTTPError as exc:
        raise OutboundError(f"fetch failed: {type(exc).__name__}") from None
    finally:
        pool.close()


def post_form(
    url: str,
    form: dict[str, str],
    policy: OutboundPolicy,
    *,
    basic: tuple[str, str] | None = None,
) -> tuple[int, Any]:
    """POST ``form`` under the same SSRF rules as :func:`fetch`; (status, parsed JSON body).

    For back-channel calls to a provider we trust by configuration (the upstream token
    endpoint): no redirects, the body capped and timed like a fetch.
    """
    target = resolve_target(url, policy.allowlist, policy.private_hosts)
    pool = pinned_pool(target)
    headers = {
        "Host": host_header(target),
        "Accept": "application/json",
        "User-Agent": "yitong",
        "Content-Type": "application/x-www-form-urlencoded",
    }
    if basic is not None:
        pair = f"{quote(basic[0], safe='')}:{quote(basic[1], safe='')}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
    try:
        resp = pool.urlopen(
            "POST",
            target.path,
            body=urlencode(form),
            headers=headers,
            redirect=False,
            preload_content=False,
            timeout=urllib3.Timeout(connect=policy.timeout, read=policy.timeout),
            retries=False,
        )
        try:
            body = resp.read(policy.max_bytes + 1)
            if len(body) > policy.max_bytes:
                raise OutboundError("response too large")
            status = resp.status
        finally:
            resp.release_conn()
            resp.close()
    except urllib3.exceptions.HTTPError as exc:
        raise OutboundError(f"request failed: {type(exc).__name__}") from None
    finally:
        pool.close()
    try:
        return status, untrusted_json.loads(body)
    except ValueError:
        raise OutboundError(f"HTTP {status}: response is not JSON") from None


def fetch_json(
    url: str, policy: OutboundPolicy | None = None, *, allowlist: Collection[str] = ()
) -> Any:
    """GET and parse a JSON document under ``policy`` (or the default limits)."""
    policy = policy or OutboundPolicy(allowlist=tuple(allowlist))
    body = fetch(
        url,
        allowlist=policy.allowlist,
        max_bytes=policy.max_bytes,
        timeout=policy.timeout,
        private_hosts=policy.private_hosts,
    )
    try:
        return untrusted_json.loads(body)
    except ValueError:
        raise OutboundError("response is not JSON") from None


class JsonCache:
    """A small per-process cache of fetched JSON documents (success and failure).

    Successes are kept ``ttl`` seconds; failures ``error_ttl`` seconds, so a client whose
    ``jwks_uri`` is down does not turn each of its requests into an outbound fetch.
    ``refresh`` forces a re-fetch at most once per ``min_refresh`` seconds (key rotation).
    """

    def __init__(
        self, ttl: float = 300.0, error_ttl: float = 30.0, min_refresh: float = 60.0
    ) -> None:
        self.ttl = ttl
        self.error_ttl = error_ttl
        self.min_refresh = min_refresh
        self._entries: dict[str, tuple[float, float, Any, str | None]] = {}
        self._lock = threading.Lock()

    def get(self, url: str, policy: OutboundPolicy | None = None, *, refresh: bool = False) -> Any:
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(url)
        if entry is not None:
            expires, fetched_at, value, error = entry
            fresh = now < expires
            if fresh and not (refresh and now - fetched_at >= self.min_refresh):
                if error is not None:
                    raise OutboundError(error)
                return value
        try:
            value = fetch_json(url, policy)
        except OutboundError as exc:
            with self._lock:
                self._entries[url] = (now + self.error_ttl, now, None, str(exc))
            raise
        with self._lock:
            if len(self._entries) > 1000:
                self._entries.clear()
            self._entries[url] = (now + self.ttl, now, value, None)
        return value

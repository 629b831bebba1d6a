"""Discovery and the JWKS: the same bytes for every request, answered before Flask.

Both documents change only when the settings change (never, within a process) or when the
published key set changes (rotation, revocation: the key store re-reads its snapshot at most
every few seconds, :mod:`keys.lifecycle`).  So each worker keeps each document as encoded
bytes; the JWKS is re-encoded when the key store hands out a different key set, so a key
rotated by another process is served here within the key store's refresh bound.

:class:`PublishedDocuments` is also a WSGI middleware that answers a plain ``GET`` of these
paths with those bytes and the same headers the Flask views send, without the request
context, sessions or per-request hooks: a relying party polling the JWKS costs about what a
hello-world app does (docs/benchmarks.md).  They still carry an ``X-Request-Id`` and are
counted in the request metrics like every other request (:mod:`idp.observability`).  Anything else (another method, a query string, an
``Origin`` header that needs CORS) goes through Flask, whose views send the same bytes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from idp.metrics import count_request
from idp.observability import request_id_for

if TYPE_CHECKING:
    from idp.services import Services

Headers = list[tuple[str, str]]
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

ENDPOINTS = {
    "/.well-known/openid-configuration": "oidc.openid_configuration",
    "/.well-known/oauth-authorization-server": "oidc.oauth_metadata",
}
DISCOVERY_PATHS = tuple(ENDPOINTS)
JWKS_PATH = "/jwks"


def encode(doc: Any) -> bytes:
    """The JSON encoding Flask's ``jsonify`` uses here (sorted keys, ASCII, compact)."""
    return (
        json.dumps(doc, sort_keys=True, ensure_ascii=True, separators=(",", ":")) + "\n"
    ).encode()


class PublishedDocuments:
    """Cached discovery and JWKS bytes, and the middleware that serves them."""

    def __init__(self, services: Services, discovery: dict[str, Any]) -> None:
        self.services = services
        self.discovery = encode(discovery)
        self.discovery_max_age = services.settings.jwks_cache_seconds
        self._jwks: tuple[dict[str, Any], bytes] = ({}, b"")
        self.security_headers: Headers = []
        self.app: WsgiApp | None = None

    def jwks(self) -> bytes:
        """The current JWKS, re-encoded only when the published key set changed."""
        keys = self.services.keys
        keys.maybe_rotate()  # as every request's before_request hook does
        current = keys.public_jwks()
        cached_doc, cached = self._jwks
        if current != cached_doc:
            cached = encode(current)
            self._jwks = (current, cached)
        return cached

    def wrap(self, app: WsgiApp, security_headers: Headers) -> WsgiApp:
        """Serve plain GETs of the documents in front of ``app`` (the Flask WSGI app)."""
        self.app = app
        self.security_headers = security_headers
        return self

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        assert self.app is not None
        path = environ.get("PATH_INFO")
        if (
            (path == JWKS_PATH or path in DISCOVERY_PATHS)
            and environ.get("REQUEST_METHOD") == "GET"
            and not environ.get("QUERY_STRING")
            and "HTTP_ORIGIN" not in environ
        ):
            started = time.perf_counter()
            if path == JWKS_PATH:
                body, max_age = self.jwks(), self.services.keys.jwks_max_age()
                endpoint = "oidc.jwks"
            else:
                body, max_age = self.discovery, self.discovery_max_age
                endpoint = ENDPOINTS[path]
            start_response(
                "200 OK",
                [
                    ("Content-Type", "application/json"),
                    ("Content-Length", str(len(body))),
                    ("Cache-Control", f"public, max-age={max_age}"),
                    ("Vary", "Origin"),
                    *self.security_headers,
                    ("X-Request-Id", request_id_for(environ.get("HTTP_X_REQUEST_ID", ""))),
                ],
            )
            # Counted as the Flask views are (idp.observability).
            count_request(endpoint, 200, time.perf_counter() - started)
            return [body]
        return self.app(environ, start_response)

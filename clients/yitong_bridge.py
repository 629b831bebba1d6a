"""Reference client of the Yitong ticket bridge, protocol v1 (docs/integrating.md).

A legacy system copies this module (it needs ``requests``, and ``joserfc`` only to verify
back-channel logout tokens) and does four things::

    bridge = BridgeClient(server, system_id, system_secret)
    redirect(bridge.login_url(state=my_state))            # 1. send the browser to sign in
    token = bridge.exchange(ticket)                       # 2. on the callback: ticket -> token
    person = bridge.user_info(token["access_token"])      # 3. token -> released attributes
    bridge.logout(token["access_token"])                  # 4. end the person's SSO session

``login_url(acting="company")`` lets a legal person choose the company to act for (a new
login to switch company; the SSO session means no second password).  Every refusal raises
:class:`BridgeError` with the protocol's error code.  The module imports nothing of Yitong:
the canonical string below is the protocol's definition, written out again on purpose.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode

import requests

VERSION = "1"
LOGIN_PATH = "/bridge/v1/login"
LOGOUT_PATH = "/bridge/v1/logout"


class BridgeError(Exception):
    """The server refused: ``code`` is the protocol's error code (``invalid_ticket``…)."""

    def __init__(self, code: str, description: str = "", status: int = 0) -> None:
        super().__init__(f"{code}: {description}" if description else code)
        self.code = code
        self.description = description
        self.status = status


def _encode(value: str) -> str:
    return quote(value, safe="-_.~")


def canonical(path: str, params: Mapping[str, str]) -> bytes:
    """``path`` LF ``name=value&…``: sorted by name, ``signature`` left out, UTF-8 percent-
    encoded except the RFC 3986 unreserved characters ``A-Z a-z 0-9 - _ . ~``."""
    pairs = sorted((k, v) for k, v in params.items() if k != "signature")
    return (path + "\n" + "&".join(f"{_encode(k)}={_encode(v)}" for k, v in pairs)).encode()


def sign(secret: str, path: str, params: Mapping[str, str]) -> str:
    """The v1 signature: hex HMAC-SHA-256 of :func:`canonical`, keyed with the secret."""
    return hmac.new(secret.encode(), canonical(path, params), hashlib.sha256).hexdigest()


class BridgeClient:
    """One registered system talking to one Yitong server."""

    def __init__(
        self,
        server: str,
        system_id: str,
        system_secret: str,
        *,
        timeout: float = 5.0,
        http: requests.Session | None = None,
        signing: str = "hmac",
    ) -> None:
        """``signing``: ``hmac`` (a ``signature`` parameter) or ``jwt`` (a ``request`` JWT,
        HS256 with the secret); the server accepts either."""
        if signing not in ("hmac", "jwt"):
            raise ValueError("signing must be hmac or jwt")
        self.signing = signing
        self.server = server.rstrip("/")
        self.system_id = system_id
        self.system_secret = system_secret
        self.timeout = timeout
        self.http = http or requests.Session()

    # ---------------------------------------------------------------- browser redirects
    def signed_params(
        self, path: str, extra: Mapping[str, str], *, now: int | None = None
    ) -> dict[str, str]:
        """``extra`` with ``version``, ``system_id``, ``timestamp``, a fresh ``nonce`` and the
        ``signature`` (or, with ``signing="jwt"``, ``system_id`` and the ``request`` JWT)."""
        if self.signing == "jwt":
            return {"system_id": self.system_id, "request": self.request_jwt(path, extra, now=now)}
        params = {
            **extra,
            "version": VERSION,
            "system_id": self.system_id,
            "timestamp": str(int(time.time()) if now is None else now),
            "nonce": secrets.token_urlsafe(24),
        }
        params["signature"] = sign(self.system_secret, path, params)
        return params

    def request_jwt(self, path: str, extra: Mapping[str, str], *, now: int | None = None) -> str:
        """The JWT form of a signed request: ``iss`` system id, ``aud`` the endpoint URL,
        ``iat`` now, ``jti`` a fresh nonce, ``version`` 1, and the parameters as claims."""
        from joserfc import jwt
        from joserfc.jwk import OctKey

        claims = {
            **extra,
            "version": VERSION,
            "iss": self.system_id,
            "aud": self.server + path,
            "iat": int(time.time()) if now is None else now,
            "jti": secrets.token_urlsafe(24),
        }
        header = {"alg": "HS256", "typ": "bridge-request+jwt"}
        return jwt.encode(header, claims, OctKey.import_key(self.system_secret))

    def login_url(self, state: str | None = None, *, acting: str = "self") -> str:
        """Where to send the browser; the ticket comes back to the registered callback as
        ``?ticket=BT-…&state=…`` (or ``?error=access_denied&state=…``)."""
        extra = {"acting": acting}
        if state is not None:
            extra["state"] = state
        return self.server + LOGIN_PATH + "?" + urlencode(self.signed_params(LOGIN_PATH, extra))

    def logout_url(self, return_to: str | None = None) -> str:
        """Front-channel logout: send the browser here (``return_to``: the callback)."""
        extra = {"return_to": return_to} if return_to is not None else {}
        return self.server + LOGOUT_PATH + "?" + urlencode(self.signed_params(LOGOUT_PATH, extra))

    # ---------------------------------------------------------------- server to server
    def _post(self, path: str, form: Mapping[str, str]) -> dict[str, Any]:
        resp = self.http.post(
            self.server + path,
            data=dict(form),
            auth=(self.system_id, self.system_secret),
            timeout=self.timeout,
        )
        try:
            body = resp.json()
        except ValueError:
            raise BridgeError(
                "server_error", f"HTTP {resp.status_code}", resp.status_code
            ) from None
        if resp.status_code != 200 or "error" in body:
            raise BridgeError(
                str(body.get("error", "server_error")),
                str(body.get("error_description", "")),
                resp.status_code,
            )
        return body  # type: ignore[no-any-return]

    def exchange(self, ticket: str) -> dict[str, Any]:
        """Ticket → ``{"access_token", "token_type": "Bearer", "expires_in"}`` (once)."""
        return self._post("/bridge/v1/token", {"ticket": ticket})

    def user_info(self, access_token: str) -> dict[str, Any]:
        """Token → ``{"sub", "attributes", "acting_for", "acr", "auth_time", "sid"}``."""
        return self._post("/bridge/v1/userinfo", {"access_token": access_token})

    def logout(self, access_token: str) -> bool:
        """End the SSO session the token came from (every system and client hears of it)."""
        return bool(self._post("/bridge/v1/logout", {"access_token": access_token})["ended"])

    # ---------------------------------------------------------------- back-channel logout
    def verify_logout_token(self, logout_token: str) -> dict[str, Any]:
        """The claims of a logout token POSTed to the system's back-channel URL, verified
        against the server's published keys (OpenID Connect Back-Channel Logout §2.6)."""
        from joserfc import jwt
        from joserfc.jwk import KeySet

        jwks = self.http.get(self.server + "/jwks", timeout=self.timeout).json()
        token = jwt.decode(logout_token, KeySet.import_key_set(jwks))
        claims = dict(token.claims)
        if token.header.get("typ") != "logout+jwt":
            raise BridgeError("invalid_token", "not a logout token")
        if claims.get("iss") != self.server or claims.get("aud") != self.system_id:
            raise BridgeError("invalid_token", "issuer or audience mismatch")
        if "http://schemas.openid.net/event/backchannel-logout" not in claims.get("events", {}):
            raise BridgeError("invalid_token", "no logout event")
        if int(claims.get("exp", 0)) < time.time() - 10:
            raise BridgeError("invalid_token", "expired")
        return claims

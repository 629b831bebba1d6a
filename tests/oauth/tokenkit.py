"""Helpers for the token-side tests: clients of every auth method, assertions, races, lookups."""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

from flask import Flask
from jose import jwt as jose_jwt
from joserfc.jwk import ECKey, Key, OctKey, RSAKey

from tests.helpers import ISSUER, Flow, RegisteredClient

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
CC_FORM = {"grant_type": "client_credentials"}
TOKEN_URL = ISSUER + "/token"


def create_client(
    app: Flask, *, name: str = "Department API client", **spec: Any
) -> RegisteredClient:
    """Register a client through the real create_client (with the KEK, for client_secret_jwt)."""
    from idp.oauth.clients import ClientSpec
    from idp.oauth.clients import create_client as create

    services = app.extensions["yitong"]
    spec.setdefault("scopes", ["openid", "profile", "email", "offline_access"])
    with services.db.transaction() as session:
        row, secret = create(session, ClientSpec(name=name, **spec), actor="test", kek=services.kek)
    return RegisteredClient(row.client_id, secret, list(row.redirect_uris), list(row.scopes))


def api_client(app: Flask, **spec: Any) -> RegisteredClient:
    """A confidential client_credentials client with two API scopes and two resources."""
    spec.setdefault("grant_types", ["client_credentials"])
    spec.setdefault("scopes", ["hr:read", "hr:write"])
    spec.setdefault("resources", ["https://api.hr.gov.example/", "https://api.tax.gov.example/"])
    return create_client(app, **spec)


def set_columns(app: Flask, model: Any, key: Any, **values: Any) -> None:
    """Change a row directly (simulating time passing or an admin action)."""
    with app.extensions["yitong"].db.transaction() as session:
        row = session.get(model, key)
        assert row is not None
        for k, v in values.items():
            setattr(row, k, v)


def token_row(app: Flask, raw: str) -> Any:
    from idp.storage import repo

    with app.extensions["yitong"].db.session() as session:
        return repo.query_token(session, raw)


def grant_row(app: Flask, grant_id: str) -> Any:
    from idp.storage.models import Grant

    with app.extensions["yitong"].db.session() as session:
        return session.get(Grant, grant_id)


def count_live_refresh_tokens(app: Flask, grant_id: str) -> int:
    from sqlalchemy import func, select

    from idp.storage.models import Token

    with app.extensions["yitong"].db.session() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(Token)
                .where(
                    Token.grant_id == grant_id,
                    Token.kind == "refresh",
                    Token.revoked_at.is_(None),
                    Token.consumed_at.is_(None),
                )
            )
            or 0
        )


def auth(
    rp: RegisteredClient, data: dict[str, Any] | None = None
) -> tuple[dict[str, str], dict[str, Any]]:
    """Headers and form for ``rp``'s own method (Basic for confidential, client_id for public)."""
    data = dict(data or {})
    if rp.secret:
        return rp.basic(), data
    data.setdefault("client_id", rp.client_id)
    return {}, data


def post(
    http: Any,
    path: str,
    rp: RegisteredClient | None,
    data: dict[str, Any],
    headers: dict[str, str] | None = None,
) -> Any:
    h, d = auth(rp, data) if rp is not None else ({}, dict(data))
    h.update(headers or {})
    return http.post(path, data=d, headers=h)


def code_tokens(
    http: Any,
    rp: RegisteredClient,
    citizen: Any,
    scope: str = "openid profile offline_access",
    **flow_kw: Any,
) -> dict[str, Any]:
    """Run the code flow and redeem the code; return the token response body."""
    flow = Flow(http, rp, scope=scope)
    params = flow.run(citizen, **flow_kw)
    resp = flow.token(params["code"])
    assert resp.status_code == 200, resp.get_json()
    return dict(resp.get_json())


def refresh(http: Any, rp: RegisteredClient, rt: str, **extra: Any) -> Any:
    return post(http, "/token", rp, {"grant_type": "refresh_token", "refresh_token": rt, **extra})


def introspect(http: Any, rp: RegisteredClient, token: str, **extra: Any) -> Any:
    return post(http, "/introspect", rp, {"token": token, **extra})


def revoke(http: Any, rp: RegisteredClient, token: str, **extra: Any) -> Any:
    return post(http, "/revoke", rp, {"token": token, **extra})


def userinfo_status(http: Any, at: str) -> int:
    return int(http.get("/userinfo", headers={"Authorization": f"Bearer {at}"}).status_code)


# ------------------------------------------------------------------ assertions
def ec_key() -> ECKey:
    return ECKey.generate_key("P-256", private=True, auto_kid=True)


def rsa_key() -> RSAKey:
    return RSAKey.generate_key(2048, private=True, auto_kid=True)


def public_jwks(*keys: Key) -> dict[str, Any]:
    return {"keys": [k.as_dict(private=False) | {"kid": k.kid, "use": "sig"} for k in keys]}


def assertion(
    client_id: str,
    key: Key,
    alg: str = "ES256",
    *,
    aud: Any = ISSUER,
    header: dict[str, Any] | None = None,
    drop: tuple[str, ...] = (),
    **claims: Any,
) -> str:
    now = int(time.time())
    body: dict[str, Any] = {
        "iss": client_id,
        "sub": client_id,
        "aud": aud,
        "iat": now,
        "exp": now + 120,
        "jti": secrets.token_urlsafe(16),
    }
    body.update(claims)
    for name in drop:
        body.pop(name, None)
    hdr = {"alg": alg}
    if key.kid and not isinstance(key, OctKey):
        hdr["kid"] = key.kid
    hdr.update(header or {})
    return sign_raw(hdr, body, key)


def sign_raw(header: dict[str, Any], claims: dict[str, Any], key: Key) -> str:
    """Sign exactly the header given (no library header checks: crit, jwk… go through)."""
    from joserfc.jws import JWSRegistry

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    message = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    model = JWSRegistry.algorithms[header["alg"]]
    return f"{message}.{b64(model.sign(message.encode(), key))}"


def raw_jws(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"sig") -> str:
    """A hand-made compact JWS (for malformed or unsigned tokens)."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    return ".".join(
        [b64(json.dumps(header).encode()), b64(json.dumps(claims).encode()), b64(signature)]
    )


def hs256_raw(header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
    """HS256 with any bytes as the secret (the attacker's view: a public key as HMAC key)."""
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    message = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    return f"{message}.{b64(hmac.new(secret, message.encode(), hashlib.sha256).digest())}"


def assertion_form(signed: str, **extra: Any) -> dict[str, Any]:
    return {"client_assertion_type": ASSERTION_TYPE, "client_assertion": signed, **extra}


# ------------------------------------------------------------------ races
def run_parallel(n: int, fn: Callable[[int], Any], *, timeout: float = 60) -> list[Any]:
    """Run ``fn(i)`` in ``n`` threads released together by a barrier; return results in order."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def worker(i: int) -> None:
        barrier.wait()
        try:
            results[i] = fn(i)
        except Exception as exc:  # pragma: no cover - surfaced by the assertion below
            results[i] = exc

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    assert not any(t.is_alive() for t in threads), "a request hung"
    return results


def utc(seconds_from_now: float = 0) -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds_from_now)


def verify_jwt_access_token(http: Any, token: str, audience: str) -> dict[str, Any]:
    """RFC 9068 verification with an independent library (python-jose) and the published JWKS."""
    header = jose_jwt.get_unverified_header(token)
    assert header["typ"] == "at+jwt"
    jwks = http.get("/jwks").get_json()
    key = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    return dict(
        jose_jwt.decode(token, key, algorithms=[header["alg"]], audience=audience, issuer=ISSUER)
    )

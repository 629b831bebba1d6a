"""Keys as relying parties and resource servers meet them: the JWKS endpoint, tokens across a
rotation, and tokens signed with a revoked key at userinfo and introspection.  Through the
app (test client), with the store the app factory built; tokens verified by python-jose."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from jose import jwt as jose_jwt

from idp.storage.db import Database
from idp.storage.models import utcnow
from keys.software import PRIVATE_MEMBERS
from tests.helpers import ISSUER, Citizen, Flow, RegisteredClient


def tokens(client: FlaskClient, rp: RegisteredClient, citizen: Citizen) -> dict[str, Any]:
    flow = Flow(client, rp)
    resp = flow.token(flow.run(citizen)["code"])
    assert resp.status_code == 200, resp.get_json()
    body: dict[str, Any] = resp.get_json()
    return body


def rp_verifies(client: FlaskClient, token: str, jwks: dict[str, Any] | None = None) -> bool:
    """A relying party with ``jwks`` (default: fetched now) accepts ``token``."""
    jwks = jwks or client.get("/jwks").get_json()
    header = jose_jwt.get_unverified_header(token)
    matches = [k for k in jwks["keys"] if k["kid"] == header["kid"]]
    if not matches:
        return False
    jose_jwt.decode(
        token, matches[0], algorithms=[header["alg"]], issuer=ISSUER,
        options={"verify_aud": False, "verify_at_hash": False},
    )  # fmt: skip
    return True


def userinfo(client: FlaskClient, access_token: str) -> int:
    return client.get("/userinfo", headers={"Authorization": f"Bearer {access_token}"}).status_code


def introspect(client: FlaskClient, rp: RegisteredClient, token: str) -> bool:
    resp = client.post("/introspect", data={"token": token}, headers=rp.basic())
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return bool(resp.get_json()["active"])


def test_jwks_endpoint_publishes_public_keys_only(
    db: Database, app: Flask, client: FlaskClient
) -> None:
    # checklist 49
    resp = client.get("/jwks")
    jwks = resp.get_json()
    kids = [k["kid"] for k in jwks["keys"]]
    assert len(kids) == len(set(kids)) >= 4  # active and next, RS256 and ES256
    for jwk in jwks["keys"]:
        assert not PRIVATE_MEMBERS.intersection(jwk)
        assert jwk["use"] == "sig" and jwk["alg"] in ("RS256", "ES256")
    max_age = int(re.search(r"max-age=(\d+)", resp.headers["Cache-Control"]).group(1))  # type: ignore[union-attr]
    assert 0 < max_age <= app.extensions["yitong"].keys.jwks_max_age()
    discovery = client.get("/.well-known/openid-configuration").get_data(as_text=True)
    assert '"d"' not in discovery and "PRIVATE" not in discovery


def test_tokens_issued_before_a_rotation_keep_working(
    db: Database, app: Flask, client: FlaskClient, citizen: Citizen
) -> None:
    # checklist 96 and 121
    rp = RegisteredClient.create(app, access_token_format="jwt")
    store = app.extensions["yitong"].keys
    before = client.get("/jwks").get_json()
    old = tokens(client, rp, citizen)
    assert rp_verifies(client, old["id_token"])

    store.rotate(utcnow() + dt.timedelta(days=91))

    new = tokens(client, rp, citizen)
    for name in ("id_token", "access_token"):
        old_kid = jose_jwt.get_unverified_header(old[name])["kid"]
        new_kid = jose_jwt.get_unverified_header(new[name])["kid"]
        assert old_kid != new_kid
        assert rp_verifies(client, old[name])  # old tokens, current JWKS
        assert rp_verifies(client, new[name], before)  # new tokens, JWKS cached before
    assert userinfo(client, old["access_token"]) == 200
    assert introspect(client, rp, old["access_token"])


def test_tokens_signed_with_a_revoked_key_are_refused(
    db: Database, app: Flask, client: FlaskClient, citizen: Citizen
) -> None:
    # checklist 97: gone from JWKS at once, refused at userinfo and introspection, K2 signs
    rp = RegisteredClient.create(app, access_token_format="jwt")
    store = app.extensions["yitong"].keys
    issued = tokens(client, rp, citizen)
    kid = jose_jwt.get_unverified_header(issued["access_token"])["kid"]
    assert userinfo(client, issued["access_token"]) == 200
    assert introspect(client, rp, issued["access_token"])
    cached = client.get("/jwks").get_json()

    store.revoke(kid, actor="test:security-admin", reason="checklist 97")

    assert kid not in {k["kid"] for k in client.get("/jwks").get_json()["keys"]}
    assert userinfo(client, issued["access_token"]) == 401
    assert not introspect(client, rp, issued["access_token"])
    fresh = tokens(client, rp, citizen)
    assert jose_jwt.get_unverified_header(fresh["access_token"])["kid"] != kid
    assert userinfo(client, fresh["access_token"]) == 200
    assert rp_verifies(client, fresh["access_token"], cached)  # K2 had been published

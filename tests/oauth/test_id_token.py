"""ID tokens as a relying party that never saw our code checks them (issue 3 item 8).

SECURITY-CHECKLIST items 46-52.  Signatures are checked with python-jose where it supports the
algorithm (RS256, ES256) and with ``cryptography`` primitives for every algorithm (PS256 and
EdDSA included), always against the JWKS as published; never with our own key store.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from jose import jwt as jose_jwt
from joserfc import jwt as joserfc_jwt
from joserfc.jwk import KeySet
from sqlalchemy import select

from idp.storage.models import SsoSession, User
from tests.helpers import ISSUER, Citizen, Flow, RegisteredClient

ALL_ALGS = ("RS256", "PS256", "ES256", "EdDSA")


# ------------------------------------------------------------------ an independent verifier
def b64d(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def b64int(value: str) -> int:
    return int.from_bytes(b64d(value), "big")


def verify_signature(token: str, jwk: dict[str, Any]) -> None:
    """RFC 7515/7518/8037 signature check with ``cryptography`` only; raises on failure."""
    head, body, sig = token.split(".")
    message = f"{head}.{body}".encode()
    signature = b64d(sig)
    alg = json.loads(b64d(head))["alg"]
    if jwk["kty"] == "RSA":
        public = rsa.RSAPublicNumbers(b64int(jwk["e"]), b64int(jwk["n"])).public_key()
        pad = (
            padding.PKCS1v15()
            if alg == "RS256"
            else padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
        )
        assert alg in ("RS256", "PS256")
        public.verify(signature, message, pad, hashes.SHA256())
    elif jwk["kty"] == "EC":
        assert alg == "ES256" and jwk["crv"] == "P-256" and len(signature) == 64
        public_ec = ec.EllipticCurvePublicNumbers(
            b64int(jwk["x"]), b64int(jwk["y"]), ec.SECP256R1()
        ).public_key()
        der = encode_dss_signature(
            int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        )
        public_ec.verify(der, message, ec.ECDSA(hashes.SHA256()))
    else:
        assert alg == "EdDSA" and jwk["kty"] == "OKP" and jwk["crv"] == "Ed25519"
        Ed25519PublicKey.from_public_bytes(b64d(jwk["x"])).verify(signature, message)


def half_hash(value: str, alg: str) -> str:
    digest = (hashlib.sha512 if alg == "EdDSA" else hashlib.sha256)(value.encode()).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode()


def check_id_token(
    http: Any,
    token: str,
    rp: RegisteredClient,
    *,
    nonce: str | None,
    access_token: str | None = None,
    alg: str = "RS256",
) -> dict[str, Any]:
    """Everything checklist item 46 asks of an ID token, done the relying party's way."""
    header = json.loads(b64d(token.split(".")[0]))
    assert header["alg"] == alg  # the client's id_token_signed_response_alg
    assert header.get("typ", "JWT") == "JWT"
    jwks = http.get("/jwks").get_json()
    jwk = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    verify_signature(token, jwk)
    if alg in ("RS256", "ES256"):
        jose_jwt.decode(
            token,
            jwk,
            algorithms=[alg],
            audience=rp.client_id,
            issuer=ISSUER,
            access_token=access_token,
        )
    claims = json.loads(b64d(token.split(".")[1]))
    assert claims["iss"] == ISSUER
    aud = claims["aud"]
    assert aud == rp.client_id or (rp.client_id in aud and claims["azp"] == rp.client_id)
    now = time.time()
    assert claims["iat"] - 5 <= now < claims["exp"]
    assert claims.get("nonce") == nonce
    sub = claims["sub"]
    assert 0 < len(sub) <= 255 and sub.isascii()
    if access_token is not None:
        assert claims["at_hash"] == half_hash(access_token, alg)  # checklist 47
    return claims


def sign_in(
    http: Any, citizen: Citizen, rp: RegisteredClient, **overrides: Any
) -> tuple[Flow, dict[str, Any]]:
    flow = Flow(http, rp)
    params = flow.run(citizen, **overrides)
    resp = flow.token(params["code"])
    assert resp.status_code == 200, resp.get_json()
    return flow, resp.get_json()


# ------------------------------------------------------------------ 46-48
@pytest.fixture
def all_algs_app(make_app):
    return make_app(signing_algorithms=ALL_ALGS)


@pytest.mark.parametrize("alg", ALL_ALGS)
def test_item46_each_registered_algorithm(all_algs_app, alg):
    app = all_algs_app
    http = app.test_client()
    citizen = Citizen.create(app)
    rp = RegisteredClient.create(app, name=f"{alg} client", id_token_alg=alg)
    flow, body = sign_in(http, citizen, rp)
    claims = check_id_token(
        http, body["id_token"], rp, nonce=flow.nonce, access_token=body["access_token"], alg=alg
    )
    assert claims["sub"] == citizen.id
    meta = http.get("/.well-known/openid-configuration").get_json()
    assert set(meta["id_token_signing_alg_values_supported"]) == set(ALL_ALGS)


def test_item46_default_is_rs256_and_discovery_lists_only_configured_algs(client, citizen, rp):
    flow, body = sign_in(client, citizen, rp)
    check_id_token(
        client, body["id_token"], rp, nonce=flow.nonce, access_token=body["access_token"]
    )
    meta = client.get("/.well-known/openid-configuration").get_json()
    assert meta["id_token_signing_alg_values_supported"] == ["RS256", "ES256"]
    assert "none" not in meta["id_token_signing_alg_values_supported"]


def test_item46_session_claims_sid_acr_amr_auth_time(client, citizen, rp, services):
    flow, body = sign_in(client, citizen, rp, max_age="3600")
    claims = check_id_token(
        client, body["id_token"], rp, nonce=flow.nonce, access_token=body["access_token"]
    )
    with services.db.session() as session:
        sso = session.scalars(select(SsoSession)).one()
    assert claims["sid"] == sso.id
    assert claims["auth_time"] == int(sso.auth_time.timestamp())
    assert claims["acr"] == sso.acr
    assert claims["amr"] == ["pwd"]


def test_item47_at_hash_for_each_hash_size(all_algs_app):
    # RS256/PS256/ES256 -> SHA-256 (16 bytes), EdDSA (Ed25519) -> SHA-512 (32 bytes).
    app = all_algs_app
    http = app.test_client()
    citizen = Citizen.create(app)
    for alg, size in (("PS256", 16), ("EdDSA", 32)):
        rp = RegisteredClient.create(
            app, name=alg, id_token_alg=alg, redirect_uris=[f"https://{alg.lower()}.gov.example/cb"]
        )
        _, body = sign_in(http, citizen, rp)
        claims = json.loads(b64d(body["id_token"].split(".")[1]))
        assert len(b64d(claims["at_hash"])) == size
        assert claims["at_hash"] == half_hash(body["access_token"], alg)
        assert "c_hash" not in claims  # only hybrid flows return a code beside an ID token


def test_item47_a_wrong_at_hash_would_be_caught(client, citizen, rp):
    _, body = sign_in(client, citizen, rp)
    jwks = client.get("/jwks").get_json()
    kid = jose_jwt.get_unverified_header(body["id_token"])["kid"]
    key = next(k for k in jwks["keys"] if k["kid"] == kid)
    with pytest.raises(Exception, match="at_hash"):
        jose_jwt.decode(
            body["id_token"],
            key,
            algorithms=["RS256"],
            audience=rp.client_id,
            access_token=body["access_token"] + "x",
        )


def test_item48_no_unsigned_id_tokens(client, citizen, rp):
    _, body = sign_in(client, citizen, rp)
    assert jose_jwt.get_unverified_header(body["id_token"])["alg"] != "none"
    meta = client.get("/.well-known/openid-configuration").get_json()
    assert "none" not in meta["id_token_signing_alg_values_supported"]
    assert "none" not in meta["request_object_signing_alg_values_supported"]


# ------------------------------------------------------------------ 49 JWKS hygiene
def test_item49_jwks_is_public_unique_and_typed(all_algs_app):
    http = all_algs_app.test_client()
    resp = http.get("/jwks")
    assert resp.status_code == 200 and resp.is_json
    assert (
        "max-age=" in resp.headers["Cache-Control"]
        and "no-store" not in resp.headers["Cache-Control"]
    )
    keys = resp.get_json()["keys"]
    kids = [k["kid"] for k in keys]
    assert len(kids) == len(set(kids))
    for k in keys:
        assert not {"d", "p", "q", "dp", "dq", "qi", "k", "oth"} & set(k), k["kid"]
        assert k["use"] == "sig" and k["alg"] in ALL_ALGS
        if k["kty"] == "RSA":
            assert b64int(k["n"]).bit_length() >= 2048
        elif k["kty"] == "EC":
            assert k["crv"] == "P-256"
        else:
            assert k["crv"] == "Ed25519"


# ------------------------------------------------------------------ 50 subject identifiers
def _pairwise(app: Any, host: str, **extra: Any) -> RegisteredClient:
    return RegisteredClient.create(
        app, name=host, redirect_uris=[f"https://{host}/cb"], subject_type="pairwise", **extra
    )


def test_item50_pairwise_differs_between_sectors_and_is_stable(app, client, citizen, services):
    tax = _pairwise(app, "tax.gov.example")
    health = _pairwise(app, "health.gov.example")
    public = RegisteredClient.create(
        app, name="Public", redirect_uris=["https://pub.gov.example/cb"]
    )
    _, t1 = sign_in(client, citizen, tax)
    _, h1 = sign_in(client, citizen, health)
    _, p1 = sign_in(client, citizen, public)
    sub = {
        name: jose_jwt.get_unverified_claims(b["id_token"])["sub"]
        for name, b in (("tax", t1), ("health", h1), ("public", p1))
    }
    assert sub["public"] == citizen.id
    assert len({sub["tax"], sub["health"], sub["public"]}) == 3
    assert citizen.id not in (sub["tax"], sub["health"])
    # Stable: a later sign-in (new session, new grant) gives the same sub; userinfo agrees.
    later = app.test_client()
    _, t2 = sign_in(later, citizen, tax)
    assert jose_jwt.get_unverified_claims(t2["id_token"])["sub"] == sub["tax"]
    info = later.get("/userinfo", headers={"Authorization": f"Bearer {t2['access_token']}"})
    assert info.get_json()["sub"] == sub["tax"]


def test_item50_same_sector_same_pairwise_sub(app, client, citizen):
    # Two clients of one department share a sector: they may correlate, by design (OIDC §8.1).
    a = _pairwise(app, "svc.tax.gov.example")
    b = RegisteredClient.create(
        app,
        name="Tax app 2",
        redirect_uris=["https://svc.tax.gov.example/app2"],
        subject_type="pairwise",
    )
    _, ba = sign_in(client, citizen, a)
    _, bb = sign_in(client, citizen, b)
    assert (
        jose_jwt.get_unverified_claims(ba["id_token"])["sub"]
        == jose_jwt.get_unverified_claims(bb["id_token"])["sub"]
    )


def test_item50_deleted_accounts_subjects_are_never_reused(app, services):
    tax = _pairwise(app, "tax.gov.example")
    public = RegisteredClient.create(
        app, name="Public", redirect_uris=["https://pub.gov.example/cb"]
    )
    x = Citizen.create(app, index=7)
    x_subs = [
        jose_jwt.get_unverified_claims(sign_in(app.test_client(), x, rp)[1]["id_token"])["sub"]
        for rp in (tax, public)
    ]
    with services.db.transaction() as session:
        session.delete(session.get(User, x.id))
    # Same person data (same ID number, phone, e-mail) registered again: a new account.
    y = Citizen.create(app, index=7)
    assert y.id != x.id and y.id_number == x.id_number
    y_subs = [
        jose_jwt.get_unverified_claims(sign_in(app.test_client(), y, rp)[1]["id_token"])["sub"]
        for rp in (tax, public)
    ]
    assert not set(x_subs) & set(y_subs)
    assert len(y.id) == 32  # 128 random bits, not a sequence


# ------------------------------------------------------------------ 51-52 token confusion, userinfo
def test_item51_token_types_are_not_confused(app, client, citizen):
    jwt_rp = RegisteredClient.create(app, name="JWT access tokens", access_token_format="jwt")
    _, body = sign_in(client, citizen, jwt_rp)
    assert jose_jwt.get_unverified_header(body["access_token"])["typ"] == "at+jwt"
    assert jose_jwt.get_unverified_header(body["id_token"]).get("typ", "JWT") == "JWT"
    resp = client.get("/userinfo", headers={"Authorization": f"Bearer {body['id_token']}"})
    assert resp.status_code == 401
    assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]
    # And an access token is no id_token_hint (test_authorize covers the authorization side).
    flow = Flow(client, jwt_rp)
    resp = flow.authorize(id_token_hint=body["access_token"], prompt="none")
    assert "error=invalid_request" in resp.headers["Location"]


def test_item52_userinfo_methods_and_failures(client, citizen, rp, services):
    _, body = sign_in(client, citizen, rp)
    at = body["access_token"]
    ok = [
        client.get("/userinfo", headers={"Authorization": f"Bearer {at}"}),
        client.post("/userinfo", headers={"Authorization": f"Bearer {at}"}),
        client.post("/userinfo", data={"access_token": at}),
    ]
    for resp in ok:
        assert resp.status_code == 200 and resp.get_json()["sub"] == citizen.id
    query = client.get(f"/userinfo?access_token={at}")
    assert query.status_code in (400, 401)
    garbage = client.get("/userinfo", headers={"Authorization": "Bearer nope"})
    assert (
        garbage.status_code == 401
        and 'error="invalid_token"' in garbage.headers["WWW-Authenticate"]
    )
    from idp.storage import repo

    with services.db.transaction() as session:
        row = repo.query_token(session, at, "access")
        repo.revoke_grant(session, row.grant_id, "test")
    revoked = client.get("/userinfo", headers={"Authorization": f"Bearer {at}"})
    assert (
        revoked.status_code == 401
        and 'error="invalid_token"' in revoked.headers["WWW-Authenticate"]
    )


def test_claims_parameter_releases_only_what_consent_covers(client, citizen, rp):
    # OIDC Core §5.5: claims named in the claims parameter are returned when the consented
    # scopes cover them (Yitong returns every claim of those scopes in both places); a claim
    # outside the consented scopes is not released, even when asked for as essential.
    claims = {
        "id_token": {"email": None, "phone_number": {"essential": True}},
        "userinfo": {"phone_number": {"essential": True}},
    }
    flow, body = sign_in(client, citizen, rp, scope="openid email", claims=json.dumps(claims))
    id_claims = check_id_token(
        client, body["id_token"], rp, nonce=flow.nonce, access_token=body["access_token"]
    )
    assert id_claims["email"] == citizen.email
    assert "phone_number" not in id_claims
    info = client.get(
        "/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"}
    ).get_json()
    assert info["email"] == citizen.email and "phone_number" not in info


# ------------------------------------------------------------------ issue 9 defect 4
def test_python_jose_verifies_with_the_whole_published_jwks(
    client: Any, citizen: Citizen, rp: RegisteredClient
) -> None:
    # python-jose's documented way: hand decode() the JWKS as published.  It builds every key
    # in order with the requested algorithm and gives up at the first of another type, so the
    # keys for the default ID-token algorithm (RS256) must come before the EC keys.
    _, body = sign_in(client, citizen, rp)
    jwks = client.get("/jwks").get_json()
    assert {"RSA", "EC"} <= {k["kty"] for k in jwks["keys"]}  # as in the default deployment
    claims = jose_jwt.decode(
        body["id_token"],
        jwks,
        algorithms=["RS256"],
        audience=rp.client_id,
        issuer=ISSUER,
        access_token=body["access_token"],
    )
    assert claims["aud"] == rp.client_id
    # Libraries that pick the key by kid are unaffected by the order (joserfc is Authlib's
    # JOSE implementation).
    assert joserfc_jwt.decode(body["id_token"], KeySet.import_key_set(jwks)).claims == claims


def docs_recipe(heading: str) -> dict[str, Any]:
    """Run the first Python block under ``heading`` in docs/integrating.md; its namespace."""
    text = (Path(__file__).parents[2] / "docs" / "integrating.md").read_text(encoding="utf-8")
    section = text.split(f"\n{heading}\n", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, Any] = {}
    exec(compile(code, "docs/integrating.md", "exec"), namespace)
    return namespace


def test_python_jose_kid_recipe_from_the_docs(all_algs_app: Any) -> None:
    # Where the JWKS holds several key types and the token is not RS256, python-jose needs the
    # key picked by kid first; docs/integrating.md shows how, and that code must work.
    verified_claims = docs_recipe("### Verifying with python-jose")["verified_claims"]
    http = all_algs_app.test_client()
    citizen = Citizen.create(all_algs_app)
    jwks = http.get("/jwks").get_json()
    assert {"RSA", "EC", "OKP"} <= {k["kty"] for k in jwks["keys"]}
    for alg in ("ES256", "RS256"):
        rp = RegisteredClient.create(
            all_algs_app,
            name=f"{alg} recipe",
            id_token_alg=alg,
            redirect_uris=[f"https://{alg.lower()}.recipe.gov.example/cb"],
        )
        flow, body = sign_in(http, citizen, rp)
        claims = verified_claims(
            body["id_token"], jwks, alg, rp.client_id, ISSUER, body["access_token"]
        )
        assert claims["nonce"] == flow.nonce and claims["sub"] == citizen.id
    with pytest.raises(ValueError, match="unknown kid"):
        verified_claims(body["id_token"], {"keys": []}, alg, rp.client_id, ISSUER)

"""DPoP (RFC 9449): proofs, nonces, bound access and refresh tokens, userinfo, introspection,
``dpop_jkt`` at authorization and PAR (checklist 2.2.1 and 45)."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from jose import jwt as jose_jwt
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey, RSAKey

from tests.helpers import ISSUER, Citizen, Flow, RegisteredClient, query_of
from tests.oauth.tokenkit import create_client

TOKEN_URL = ISSUER + "/token"
USERINFO_URL = ISSUER + "/userinfo"


def ath(token: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(token.encode()).digest()).rstrip(b"=").decode()


class Holder:
    """A client's DPoP key, and the nonce the server last handed it."""

    def __init__(self, key: Any = None, alg: str = "ES256") -> None:
        self.key = key or ECKey.generate_key("P-256")
        self.alg = alg
        self.nonce: str | None = None

    @property
    def jkt(self) -> str:
        return str(self.key.thumbprint())

    def proof(self, method: str, target: str, /, *, token: str | None = None, **change: Any) -> str:
        header: dict[str, Any] = {
            "typ": "dpop+jwt",
            "alg": self.alg,
            "jwk": self.key.as_dict(private=False),
        }
        claims: dict[str, Any] = {
            "jti": secrets.token_urlsafe(12),
            "htm": method,
            "htu": target,
            "iat": int(time.time()),
        }
        if self.nonce:
            claims["nonce"] = self.nonce
        if token is not None:
            claims["ath"] = ath(token)
        for name, value in change.items():
            target = header if name in ("typ", "alg", "jwk") else claims
            if value is None:
                target.pop(name, None)
            else:
                target[name] = value
        return jwt.encode(header, claims, self.key, algorithms=[header["alg"]])

    def post(self, http: FlaskClient, url: str, data: dict[str, Any], **change: Any) -> Any:
        """POST with a proof, doing the nonce dance once (RFC 9449 §8)."""
        path = url.removeprefix(ISSUER)
        for _ in range(2):
            headers = {"DPoP": self.proof("POST", url, **change)}
            resp = http.post(path, data=data, headers=headers)
            if "DPoP-Nonce" in resp.headers:
                self.nonce = resp.headers["DPoP-Nonce"]
            if resp.status_code != 400 or resp.get_json().get("error") != "use_dpop_nonce":
                return resp
        return resp

    def get(self, http: FlaskClient, url: str, token: str, **change: Any) -> Any:
        path = url.removeprefix(ISSUER)
        headers = {
            "Authorization": f"DPoP {token}",
            "DPoP": self.proof("GET", url, token=token, **change),
        }
        return http.get(path, headers=headers)


def code_form(flow: Flow, code: str) -> dict[str, str]:
    return {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": flow.rp.redirect_uri,
        "code_verifier": flow.verifier,
        "client_id": flow.rp.client_id,
    }


@pytest.fixture
def flow(client: FlaskClient, public_rp: RegisteredClient) -> Flow:
    return Flow(client, public_rp, scope="openid profile offline_access")


def dpop_tokens(flow: Flow, citizen: Citizen, holder: Holder, **authorize: Any) -> dict[str, Any]:
    code = flow.run(citizen, **authorize)["code"]
    resp = holder.post(flow.http, TOKEN_URL, code_form(flow, code))
    assert resp.status_code == 200, resp.get_json()
    return dict(resp.get_json())


def test_discovery_lists_dpop_algorithms(client: FlaskClient) -> None:
    meta = client.get("/.well-known/openid-configuration").get_json()
    assert meta["dpop_signing_alg_values_supported"] == ["ES256", "EdDSA", "PS256", "RS256"]


def test_public_client_gets_bound_tokens_after_the_nonce_dance(
    app: Flask, flow: Flow, citizen: Citizen
) -> None:
    holder = Holder()
    code = flow.run(citizen)["code"]
    first = flow.http.post(
        "/token", data=code_form(flow, code), headers={"DPoP": holder.proof("POST", TOKEN_URL)}
    )
    # RFC 9449 §8: no nonce yet -> use_dpop_nonce with the nonce to use; the code survives.
    assert first.status_code == 400 and first.get_json()["error"] == "use_dpop_nonce"
    holder.nonce = first.headers["DPoP-Nonce"]
    resp = holder.post(flow.http, TOKEN_URL, code_form(flow, code))
    body = resp.get_json()
    assert resp.status_code == 200, body
    assert body["token_type"] == "DPoP" and resp.headers["DPoP-Nonce"]
    access, refresh = body["access_token"], body["refresh_token"]

    # userinfo: with a proof of the same key and ath
    ok = holder.get(flow.http, USERINFO_URL, access)
    assert ok.status_code == 200, ok.get_json()
    # the bound token as a Bearer token: refused
    as_bearer = flow.http.get("/userinfo", headers={"Authorization": f"Bearer {access}"})
    assert as_bearer.status_code == 401
    assert as_bearer.get_json()["error"] == "invalid_token"
    # a proof by another key: refused
    thief = Holder()
    thief.nonce = holder.nonce
    stolen = thief.get(flow.http, USERINFO_URL, access)
    assert stolen.status_code == 401 and stolen.headers["WWW-Authenticate"].startswith("DPoP")

    # refresh: a public client's refresh token is bound to the key (RFC 9449 §5)
    form = {"grant_type": "refresh_token", "refresh_token": refresh, "client_id": flow.rp.client_id}
    no_proof = flow.http.post("/token", data=form)
    assert no_proof.get_json()["error"] == "invalid_dpop_proof"
    other_key = thief.post(flow.http, TOKEN_URL, form)
    assert other_key.get_json()["error"] == "invalid_dpop_proof"
    renewed = holder.post(flow.http, TOKEN_URL, form)
    assert renewed.status_code == 200, renewed.get_json()
    assert renewed.get_json()["token_type"] == "DPoP"
    assert (
        holder.get(flow.http, USERINFO_URL, renewed.get_json()["access_token"]).status_code == 200
    )


def test_userinfo_answers_use_dpop_nonce_with_a_fresh_nonce(
    app: Flask, flow: Flow, citizen: Citizen
) -> None:
    holder = Holder()
    access = dpop_tokens(flow, citizen, holder)["access_token"]
    stale = holder.get(flow.http, USERINFO_URL, access, nonce="0.AAAA")
    assert stale.status_code == 401
    assert stale.headers["WWW-Authenticate"].startswith('DPoP error="use_dpop_nonce"')
    assert stale.headers["DPoP-Nonce"]


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"htm": "POST"}, "wrong htm"),
        ({"htu": ISSUER + "/token"}, "wrong htu"),
        ({"iat": int(time.time()) - 3600}, "iat too old"),
        ({"iat": int(time.time()) + 3600}, "iat in the future"),
        ({"typ": "JWT"}, "typ is not dpop+jwt"),
        ({"ath": "A" * 43}, "ath for another token"),
        ({"ath": None}, "no ath"),
        ({"jti": None}, "no jti"),
    ],
)
def test_checklist_45_userinfo_refuses_bad_proofs(
    app: Flask, flow: Flow, citizen: Citizen, change: dict[str, Any], why: str
) -> None:
    holder = Holder()
    access = dpop_tokens(flow, citizen, holder)["access_token"]
    resp = holder.get(flow.http, USERINFO_URL, access, **change)
    assert resp.status_code == 401, why
    assert resp.get_json()["error"] == "invalid_dpop_proof", why


def test_checklist_45_proof_key_material_and_replay(
    app: Flask, flow: Flow, citizen: Citizen
) -> None:
    holder = Holder()
    access = dpop_tokens(flow, citizen, holder)["access_token"]

    def userinfo(proof: str) -> Any:
        return flow.http.get(
            "/userinfo", headers={"Authorization": f"DPoP {access}", "DPoP": proof}
        )

    # a reused jti is refused the second time
    proof = holder.proof("GET", USERINFO_URL, token=access)
    assert userinfo(proof).status_code == 200
    replay = userinfo(proof)
    assert replay.status_code == 401 and replay.get_json()["error"] == "invalid_dpop_proof"
    # a private key inside the jwk header
    private = holder.proof("GET", USERINFO_URL, token=access, jwk=holder.key.as_dict(private=True))
    assert userinfo(private).get_json()["error"] == "invalid_dpop_proof"
    # HMAC and "none" are never DPoP algorithms
    oct_key = OctKey.generate_key(256)
    claims = {"jti": "x1", "htm": "GET", "htu": USERINFO_URL, "iat": int(time.time())}
    hs = jwt.encode(
        {"typ": "dpop+jwt", "alg": "HS256", "jwk": holder.key.as_dict(private=False)},
        claims,
        oct_key,
    )
    assert userinfo(hs).get_json()["error"] == "invalid_dpop_proof"
    head = base64.urlsafe_b64encode(b'{"typ":"dpop+jwt","alg":"none"}').rstrip(b"=").decode()
    body = base64.urlsafe_b64encode(b'{"jti":"x2"}').rstrip(b"=").decode()
    assert userinfo(f"{head}.{body}.").get_json()["error"] == "invalid_dpop_proof"
    # two DPoP headers, and none at all
    two = flow.http.get(
        "/userinfo",
        headers=[
            ("Authorization", f"DPoP {access}"),
            ("DPoP", holder.proof("GET", USERINFO_URL, token=access)),
            ("DPoP", holder.proof("GET", USERINFO_URL, token=access)),
        ],
    )
    assert two.get_json()["error"] == "invalid_dpop_proof"
    none = flow.http.get("/userinfo", headers={"Authorization": f"DPoP {access}"})
    assert none.status_code == 401 and none.get_json()["error"] == "invalid_dpop_proof"
    # garbage in the header is a protocol error, never a 500
    assert userinfo("not a jwt").status_code == 401


def test_checklist_45_bound_client_without_proof_is_refused(
    app: Flask, client: FlaskClient, citizen: Citizen
) -> None:
    rp = create_client(
        app,
        public=True,
        redirect_uris=["http://127.0.0.1/cb"],
        grant_types=["authorization_code", "refresh_token"],
        dpop_bound_access_tokens=True,
    )
    flow = Flow(client, rp)
    code = flow.run(citizen)["code"]
    resp = client.post("/token", data=code_form(flow, code))
    assert resp.status_code == 400 and resp.get_json()["error"] == "invalid_dpop_proof"


def test_rsa_proof_key_works(app: Flask, flow: Flow, citizen: Citizen) -> None:
    holder = Holder(RSAKey.generate_key(2048), alg="PS256")
    access = dpop_tokens(flow, citizen, holder)["access_token"]
    assert holder.get(flow.http, USERINFO_URL, access).status_code == 200


def test_authorize_dpop_jkt_binds_the_code(app: Flask, flow: Flow, citizen: Citizen) -> None:
    holder, other = Holder(), Holder()
    code = flow.run(citizen, dpop_jkt=holder.jkt)["code"]
    # RFC 9449 §10: the code is redeemed only with a proof of that key.
    assert flow.http.post("/token", data=code_form(flow, code)).status_code == 400
    code = flow.run(citizen, dpop_jkt=holder.jkt)["code"]
    wrong = other.post(flow.http, TOKEN_URL, code_form(flow, code))
    assert wrong.status_code == 400 and wrong.get_json()["error"] == "invalid_dpop_proof"
    code = flow.run(citizen, dpop_jkt=holder.jkt)["code"]
    assert holder.post(flow.http, TOKEN_URL, code_form(flow, code)).status_code == 200
    # a dpop_jkt that is no thumbprint: an error sent back to the client
    resp = flow.authorize(dpop_jkt="not-a-thumbprint")
    assert query_of(resp.headers["Location"])["error"] == "invalid_request"


def test_checklist_45_par_dpop_jkt_must_match_the_proof(
    app: Flask, client: FlaskClient, citizen: Citizen, rp: RegisteredClient
) -> None:
    holder, other = Holder(), Holder()
    flow = Flow(client, rp)
    params = flow.params()
    par_url = ISSUER + "/par"
    headers = rp.basic()
    first = client.post(
        "/par",
        data={**params, "dpop_jkt": other.jkt},
        headers={**headers, "DPoP": holder.proof("POST", par_url)},
    )
    holder.nonce = first.headers.get("DPoP-Nonce")
    mismatched = client.post(
        "/par",
        data={**params, "dpop_jkt": other.jkt},
        headers={**headers, "DPoP": holder.proof("POST", par_url)},
    )
    assert mismatched.status_code == 400
    assert mismatched.get_json()["error"] == "invalid_dpop_proof"
    pushed = client.post(
        "/par", data=params, headers={**headers, "DPoP": holder.proof("POST", par_url)}
    )
    assert pushed.status_code == 201, pushed.get_json()
    code = flow.run(
        citizen,
        request_uri=pushed.get_json()["request_uri"],
        client_id=rp.client_id,
        **{k: None for k in params if k != "client_id"},
    )["code"]
    # the code pushed with a proof is bound to its key: a Bearer redemption is refused
    form = {k: v for k, v in code_form(flow, code).items() if k != "client_id"}
    assert client.post("/token", data=form, headers=headers).status_code == 400


def test_jwt_access_token_and_introspection_carry_cnf_jkt(
    app: Flask, client: FlaskClient, citizen: Citizen
) -> None:
    rp = create_client(
        app,
        redirect_uris=["https://c1.gov.example/cb"],
        grant_types=["authorization_code", "refresh_token"],
        access_token_format="jwt",
    )
    flow = Flow(client, rp, scope="openid offline_access")
    holder = Holder()
    code = flow.run(citizen)["code"]
    form = {k: v for k, v in code_form(flow, code).items() if k != "client_id"}
    path = TOKEN_URL
    resp = None
    for _ in range(2):
        resp = client.post(
            "/token", data=form, headers={**rp.basic(), "DPoP": holder.proof("POST", path)}
        )
        holder.nonce = resp.headers.get("DPoP-Nonce", holder.nonce)
        if resp.status_code == 200:
            break
    assert resp is not None and resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    claims = jose_jwt.get_unverified_claims(body["access_token"])
    assert claims["cnf"] == {"jkt": holder.jkt}
    seen = client.post("/introspect", data={"token": body["access_token"]}, headers=rp.basic())
    assert seen.get_json()["cnf"] == {"jkt": holder.jkt}
    assert seen.get_json()["token_type"] == "DPoP"
    # a confidential client's refresh token is not bound (RFC 9449 §5): introspection says so
    refresh = client.post("/introspect", data={"token": body["refresh_token"]}, headers=rp.basic())
    assert refresh.get_json()["active"] is True and "cnf" not in refresh.get_json()


def test_token_endpoint_refuses_a_proof_for_another_endpoint(
    app: Flask, flow: Flow, citizen: Citizen
) -> None:
    holder = Holder()
    code = flow.run(citizen)["code"]
    resp = holder.post(flow.http, TOKEN_URL, code_form(flow, code), htu=USERINFO_URL)
    assert resp.status_code == 400 and resp.get_json()["error"] == "invalid_dpop_proof"

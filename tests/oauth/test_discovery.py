"""Discovery lists exactly what works (issue 3 item 12): every advertised endpoint answers,
every advertised value of the authorization side is exercised here.

Token-side values (grant types, client authentication methods and algorithms) have their
own tests in ``test_token_endpoint.py``, ``test_client_auth.py`` and friends; this file
checks that each endpoint named in the document exists and speaks the protocol.
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, OKPKey, RSAKey

from keys.software import JWS_REGISTRY
from tests.helpers import ISSUER, Flow, RegisteredClient, query_of


@pytest.fixture
def meta(client) -> dict[str, Any]:
    resp = client.get("/.well-known/openid-configuration")
    assert resp.status_code == 200 and resp.is_json
    assert "max-age=" in resp.headers["Cache-Control"]
    return resp.get_json()  # type: ignore[no-any-return]


def path(url: str) -> str:
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == ISSUER, url  # every endpoint on the issuer
    return parts.path


def test_issuer_and_both_metadata_documents(client, meta):
    assert meta["issuer"] == ISSUER
    other = client.get("/.well-known/oauth-authorization-server").get_json()
    assert (
        other["issuer"] == ISSUER
        and other["authorization_endpoint"] == meta["authorization_endpoint"]
    )


def test_item108_host_headers_do_not_change_the_document(client, meta):
    forged = client.get(
        "/.well-known/openid-configuration",
        headers={
            "Host": "evil.example",
            "X-Forwarded-Host": "evil.example",
            "X-Forwarded-Proto": "https",
        },
    ).get_json()
    assert forged == meta


# What a request without credentials must get from each endpoint: it exists and speaks.
PROBES: dict[str, tuple[str, set[int]]] = {
    "authorization_endpoint": ("GET", {400}),  # no client_id: error page
    "token_endpoint": ("POST", {400, 401}),
    "userinfo_endpoint": ("GET", {401}),
    "jwks_uri": ("GET", {200}),
    "pushed_authorization_request_endpoint": ("POST", {400, 401}),
    "device_authorization_endpoint": ("POST", {400, 401}),
    "revocation_endpoint": ("POST", {400, 401}),
    "introspection_endpoint": ("POST", {400, 401}),
    "end_session_endpoint": ("GET", {302, 303}),  # not signed in: straight to "signed out"
    "registration_endpoint": ("POST", {400, 401, 403}),
    "service_documentation": ("GET", {200}),
}


def test_every_advertised_endpoint_answers(client, meta):
    advertised = [
        k for k in meta if k.endswith("_endpoint") or k in ("jwks_uri", "service_documentation")
    ]
    assert {
        "authorization_endpoint",
        "token_endpoint",
        "jwks_uri",
        "end_session_endpoint",
        "pushed_authorization_request_endpoint",
    } <= set(advertised)
    for key in advertised:
        assert key in PROBES, f"{key} is advertised but this test does not know how to probe it"
        method, expected = PROBES[key]
        resp = client.open(path(meta[key]), method=method, data={} if method == "POST" else None)
        assert resp.status_code in expected, (key, resp.status_code)
        assert resp.status_code != 404 and resp.status_code < 500


def test_json_endpoints_answer_json_errors(client, meta):
    for key in ("token_endpoint", "pushed_authorization_request_endpoint"):
        resp = client.post(path(meta[key]), data={})
        assert resp.is_json and "error" in resp.get_json()
        assert resp.headers["Cache-Control"] == "no-store"


def test_response_types_and_modes(client, citizen, rp, meta):
    assert meta["response_types_supported"] == ["code"]
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["authorization_response_iss_parameter_supported"] is True
    Flow(client, rp).run(citizen)  # remembers the session and consent
    for mode in meta["response_modes_supported"]:
        flow = Flow(client, rp)
        resp = flow.authorize(response_mode=mode, prompt="none")
        if mode == "query":
            assert "code" in query_of(resp.headers["Location"])
        else:
            assert mode == "form_post" and resp.status_code == 200
            assert 'name="code"' in resp.get_data(as_text=True)


def test_prompt_and_display_values(client, citizen, rp, meta):
    Flow(client, rp).run(citizen)
    for prompt in meta["prompt_values_supported"]:
        resp = Flow(client, rp).authorize(prompt=prompt)
        assert resp.status_code == 302
        assert "error" not in query_of(resp.headers["Location"])
    for display in meta["display_values_supported"]:
        resp = Flow(client, rp).authorize(display=display)
        assert "error" not in query_of(resp.headers["Location"])


def test_ui_locales(client, rp, meta):
    langs = {}
    for tag in meta["ui_locales_supported"]:
        resp = Flow(client, rp).authorize(ui_locales=tag)
        html = client.get(resp.headers["Location"]).get_data(as_text=True)
        langs[tag] = html.split('<html lang="')[1].split('"')[0]
    assert langs == {"zh-CN": "zh-CN", "en": "en"}


def test_subject_types(app, client, citizen, meta):
    from jose import jwt as jose_jwt

    subs = set()
    for n, kind in enumerate(meta["subject_types_supported"]):
        rp = RegisteredClient.create(
            app, name=kind, subject_type=kind, redirect_uris=[f"https://s{n}.gov.example/cb"]
        )
        flow = Flow(client, rp)
        body = flow.token(flow.run(citizen)["code"]).get_json()
        subs.add(jose_jwt.get_unverified_claims(body["id_token"])["sub"])
    assert len(subs) == len(meta["subject_types_supported"]) == 2


def test_id_token_algorithms_listed_are_the_ones_with_keys(app, client, citizen, meta):
    from jose import jwt as jose_jwt

    assert set(meta["id_token_signing_alg_values_supported"]) == set(
        app.extensions["yitong"].settings.signing_algorithms
    )
    for n, alg in enumerate(meta["id_token_signing_alg_values_supported"]):
        rp = RegisteredClient.create(
            app, name=alg, id_token_alg=alg, redirect_uris=[f"https://a{n}.gov.example/cb"]
        )
        flow = Flow(client, rp)
        body = flow.token(flow.run(citizen)["code"]).get_json()
        assert jose_jwt.get_unverified_header(body["id_token"])["alg"] == alg


def test_claims_parameter(client, citizen, rp, meta):
    assert meta["claims_parameter_supported"] is True
    claims = {
        "id_token": {"acr": {"essential": True, "values": ["urn:yitong:acr:pwd"]}, "email": None}
    }
    assert "code" in Flow(client, rp).run(citizen, claims=json.dumps(claims))


KEYS = {
    "RS256": lambda: RSAKey.generate_key(2048, parameters={"kid": "k"}),
    "PS256": lambda: RSAKey.generate_key(2048, parameters={"kid": "k"}),
    "ES256": lambda: ECKey.generate_key("P-256", parameters={"kid": "k"}),
    "EdDSA": lambda: OKPKey.generate_key("Ed25519", parameters={"kid": "k"}),
}


def test_request_objects_with_every_advertised_algorithm(app, client, citizen, meta):
    assert meta["request_parameter_supported"] is True
    algs = meta["request_object_signing_alg_values_supported"]
    assert "none" not in algs
    for n, alg in enumerate(algs):
        key = KEYS[alg]()
        rp = RegisteredClient.create(
            app,
            name=f"JAR {alg}",
            redirect_uris=[f"https://j{n}.gov.example/cb"],
            jwks={"keys": [key.as_dict(private=False)]},
        )
        flow = Flow(client, rp)
        now = int(time.time())
        body = {**flow.params(), "iss": rp.client_id, "aud": ISSUER, "iat": now, "exp": now + 60}
        token = jwt.encode({"alg": alg, "kid": "k"}, body, key, registry=JWS_REGISTRY)
        resp = client.get("/authorize?" + urlencode({"client_id": rp.client_id, "request": token}))
        if "/login" in resp.headers.get("Location", ""):
            resp = flow.login(resp, citizen.email, citizen.password)
        assert "code" in flow.follow_to_code(resp), alg


def test_par_as_advertised(client, citizen, rp, meta):
    assert meta["request_uri_parameter_supported"] is True
    assert meta["require_pushed_authorization_requests"] is False
    flow = Flow(client, rp)
    data = flow.params()
    data.pop("client_id")
    pushed = client.post(
        path(meta["pushed_authorization_request_endpoint"]), data=data, headers=rp.basic()
    )
    assert pushed.status_code == 201
    resp = client.get(
        "/authorize?"
        + urlencode({"client_id": rp.client_id, "request_uri": pushed.get_json()["request_uri"]})
    )
    resp = flow.login(resp, citizen.email, citizen.password)
    assert "code" in flow.follow_to_code(resp)


def test_logout_support_is_as_advertised(meta):
    # The behaviour itself is tested in test_logout.py (RP-initiated, back- and front-channel).
    assert meta["end_session_endpoint"] == ISSUER + "/logout"
    for key in (
        "frontchannel_logout_supported",
        "frontchannel_logout_session_supported",
        "backchannel_logout_supported",
        "backchannel_logout_session_supported",
    ):
        assert meta[key] is True


def test_no_implicit_or_hybrid_leftovers(meta):
    assert not {"token", "id_token", "code id_token", "code token"} & set(
        meta["response_types_supported"]
    )
    assert "fragment" not in meta["response_modes_supported"]
    assert "implicit" not in meta["grant_types_supported"]
    assert "password" not in meta["grant_types_supported"]

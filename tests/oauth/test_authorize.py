"""The authorization endpoint: SECURITY-CHECKLIST items 1-21 and issue 3 item 6.

Every test drives the real endpoint through the Flask test client.  "Error page" means a 4xx
HTML page at the provider with no ``Location`` header; "redirect error" means a 302 to the
verified redirect URI carrying ``error``, ``state`` and ``iss``.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from jose import jwt as jose_jwt
from sqlalchemy import select, update

from idp.storage.models import AuthorizationCode, Grant, SsoSession
from tests.helpers import ISSUER, Citizen, Flow, RegisteredClient, csrf_token, hidden, query_of


# ------------------------------------------------------------------ helpers
def assert_error_page(resp: Any, error: str | None = None) -> None:
    assert 400 <= resp.status_code < 500, (resp.status_code, resp.headers.get("Location"))
    assert "Location" not in resp.headers
    assert resp.mimetype == "text/html"
    if error is not None:
        assert f'id="error-code">{error}<' in resp.get_data(as_text=True)


def assert_redirect_error(
    resp: Any, rp: RegisteredClient, error: str, state: str | None
) -> dict[str, str]:
    assert resp.status_code in (302, 303), (resp.status_code, resp.get_data(as_text=True)[:400])
    location = resp.headers["Location"]
    assert location.startswith(rp.redirect_uri + "?"), location
    params = query_of(location)
    assert params["error"] == error, params
    assert params["iss"] == ISSUER
    if state is None:
        assert "state" not in params
    else:
        assert params["state"] == state
    assert "code" not in params
    return params


def goes_to_login(resp: Any) -> bool:
    return resp.status_code in (302, 303) and urlsplit(resp.headers["Location"]).path == "/login"


def logged_in_flow(
    client: Any, citizen: Citizen, rp: RegisteredClient
) -> tuple[Flow, dict[str, str]]:
    """Run one full flow so that the browser has an SSO session and consent is remembered."""
    flow = Flow(client, rp)
    params = flow.run(citizen)
    assert "code" in params
    return flow, params


def id_token_for(flow: Flow, code: str) -> dict[str, Any]:
    resp = flow.token(code)
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()  # type: ignore[no-any-return]


def claims_of(id_token: str) -> dict[str, Any]:
    return jose_jwt.get_unverified_claims(id_token)


def age_session(services: Any, user_id: str, seconds: int) -> None:
    """Pretend the user logged in ``seconds`` ago (instead of sleeping)."""
    with services.db.transaction() as session:
        for row in session.scalars(select(SsoSession).where(SsoSession.user_id == user_id)):
            row.auth_time = row.auth_time - dt.timedelta(seconds=seconds)
            row.created_at = row.created_at - dt.timedelta(seconds=seconds)


# ------------------------------------------------------------------ 1-5: the redirect URI
def test_item1_unregistered_redirect_uri_is_an_error_page(client, rp):
    resp = Flow(client, rp).authorize(redirect_uri="https://evil.example/cb")
    assert_error_page(resp, "invalid_request")


NEAR_MISSES = [
    "https://c1.gov.example/cb/",
    "https://C1.gov.example/cb",
    "https://c1.gov.example/CB",
    "https://c1.gov.example/cb?x=1",
    "https://c1.gov.example/cb#f",
    "https://c1.gov.example/c%62",
    "https://c1.gov.example%2Fcb",
    "https://c1.gov.example/cb%2F",
    "https://c1.gov.example/cb/../x",
    "https://c1.gov.example/cb/..;/x",
    "https://c1.gov.example.evil.example/cb",
    "https://c1.gov.example@evil.example/cb",
    "https://a@b@evil.example/cb",
    "https://evil.example\\@c1.gov.example/cb",
    "http://c1.gov.example/cb",
    " https://c1.gov.example/cb",
    "https://c1.gov.example/cb ",
    "https://c1.gov.example:443/cb",
    "https://c1.gov.example/cb\t",
]


@pytest.mark.parametrize("uri", NEAR_MISSES)
def test_item2_near_misses_of_the_registered_uri_are_refused(client, rp, uri):
    assert rp.redirect_uri == "https://c1.gov.example/cb"
    assert_error_page(Flow(client, rp).authorize(redirect_uri=uri))


def test_item3_two_registered_uris_and_none_sent_is_an_error_page(app, client):
    rp2 = RegisteredClient.create(
        app, redirect_uris=["https://c1.gov.example/cb", "https://c1.gov.example/other"]
    )
    assert_error_page(Flow(client, rp2).authorize(redirect_uri=None))


def test_item3_one_registered_uri_may_be_omitted(client, rp):
    resp = Flow(client, rp).authorize(redirect_uri=None)
    assert goes_to_login(resp)


def test_item4_loopback_port_may_vary_for_native_clients_only(app, client, public_rp):
    # RFC 8252 §7.3: native app registered http://127.0.0.1/callback, any port, exact path.
    flow = Flow(client, public_rp)
    assert goes_to_login(flow.authorize(redirect_uri="http://127.0.0.1:51234/callback"))
    assert_error_page(flow.authorize(redirect_uri="http://127.0.0.1:51234/callback/x"))
    assert_error_page(flow.authorize(redirect_uri="http://127.0.0.1:51234/callback?x=1"))
    assert_error_page(flow.authorize(redirect_uri="http://localhost.evil.example/callback"))
    assert_error_page(flow.authorize(redirect_uri="http://127.0.0.1.evil.example/callback"))
    assert_error_page(flow.authorize(redirect_uri="http://user@127.0.0.1:5000/callback"))
    # The same port freedom is not given to a web (confidential) client.
    web = RegisteredClient.create(
        app, redirect_uris=["http://127.0.0.1/cb"], name="Web on loopback"
    )
    assert goes_to_login(Flow(client, web).authorize())
    assert_error_page(Flow(client, web).authorize(redirect_uri="http://127.0.0.1:51234/cb"))


@pytest.mark.parametrize(
    "overrides",
    [
        {"response_type": "foo"},
        {"scope": "bogus"},
        {"response_type": "code id_token", "scope": "profile"},
        {"prompt": "none"},
        {"code_challenge": None},
        {"response_type": None},
        {"prompt": "none login"},
    ],
)
def test_item5_errors_never_go_to_an_unvalidated_uri(client, rp, overrides):
    resp = Flow(client, rp).authorize(redirect_uri="https://evil.example/cb", **overrides)
    assert_error_page(resp)
    assert "evil.example" not in resp.headers.get("Location", "")


def test_item5_unknown_client_is_an_error_page(client, rp):
    resp = Flow(client, rp).authorize(client_id="nobody", redirect_uri="https://evil.example/cb")
    assert_error_page(resp, "invalid_client")


# ------------------------------------------------------------------ 6-11: request shape
@pytest.mark.parametrize(
    ("response_type", "error"),
    [
        ("token", "unsupported_response_type"),
        ("id_token token", "unsupported_response_type"),
        ("code token", "unsupported_response_type"),
        ("code id_token", "unsupported_response_type"),
        ("id_token", "unsupported_response_type"),
        (None, "invalid_request"),
    ],
)
def test_item6_only_the_code_flow(client, rp, response_type, error):
    flow = Flow(client, rp)
    assert_redirect_error(flow.authorize(response_type=response_type), rp, error, flow.state)


@pytest.mark.parametrize("which", ["public", "confidential"])
def test_item7_pkce_is_required_for_every_client(client, rp, public_rp, which):
    target = public_rp if which == "public" else rp
    flow = Flow(client, target)
    resp = flow.authorize(code_challenge=None, code_challenge_method=None)
    assert_redirect_error(resp, target, "invalid_request", flow.state)


@pytest.mark.parametrize("method", ["plain", None, "s256", "S512"])
def test_item8_only_s256(client, rp, method):
    flow = Flow(client, rp)
    resp = flow.authorize(code_challenge_method=method)
    assert_redirect_error(resp, rp, "invalid_request", flow.state)


@pytest.mark.parametrize(
    "challenge", ["a" * 42, "a" * 129, "a" * 44, "+" * 43, "/" * 43, "=" * 43, "a" * 42 + "="]
)
def test_item9_malformed_code_challenge(client, rp, challenge):
    flow = Flow(client, rp)
    assert_redirect_error(
        flow.authorize(code_challenge=challenge), rp, "invalid_request", flow.state
    )


def test_item9_code_challenge_sent_twice(client, rp):
    flow = Flow(client, rp)
    resp = flow.authorize(code_challenge=[flow.challenge, flow.challenge])
    assert_redirect_error(resp, rp, "invalid_request", flow.state)


REPEATABLE = [
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "response_type",
    "nonce",
    "prompt",
    "code_challenge_method",
    "response_mode",
    "max_age",
    "claims",
    "acr_values",
    # Every other single-valued parameter (a mutation run dropped these from
    # SINGLE_VALUED one at a time and the suite did not notice).
    "code_challenge",
    "id_token_hint",
    "login_hint",
    "ui_locales",
    "display",
    "request",
    "request_uri",
]


@pytest.mark.parametrize("name", REPEATABLE)
def test_item10_every_repeated_parameter_is_invalid_request(client, rp, name):
    flow = Flow(client, rp)
    extra = {
        "max_age": "5",
        "claims": "{}",
        "acr_values": "x",
        "response_mode": "query",
        "prompt": "login",
        "id_token_hint": "x",
        "login_hint": "alice",
        "ui_locales": "en",
        "display": "page",
        "request": "x.y.z",
        "request_uri": "urn:ietf:params:oauth:request_uri:x",
    }
    params = flow.params(**{k: v for k, v in extra.items() if k == name})
    params[name] = [params[name], params[name]]
    resp = client.get("/authorize?" + urlencode(params, doseq=True))
    if resp.status_code == 400:
        # client_id, redirect_uri, response_mode and state decide where an answer may go;
        # request and request_uri decide which parameters count at all.
        assert name in (
            "client_id",
            "redirect_uri",
            "state",
            "response_mode",
            "request",
            "request_uri",
        )
        assert_error_page(resp, "invalid_request")
    else:
        assert_redirect_error(resp, rp, "invalid_request", flow.state)


def test_item11_unknown_parameters_are_ignored_and_nonce_is_optional(client, citizen, rp):
    flow = Flow(client, rp)
    flow.nonce = None  # type: ignore[assignment]
    params = flow.run(citizen, nonce=None, foo="bar", x_unknown="1")
    assert "code" in params
    body = id_token_for(flow, params["code"])
    assert "nonce" not in claims_of(body["id_token"])


def test_post_to_the_authorization_endpoint_works(client, citizen, rp):
    # OIDC Core §3.1.2.1: GET and POST must both be supported.
    logged_in_flow(client, citizen, rp)
    flow = Flow(client, rp)
    resp = client.post("/authorize", data=flow.params(prompt="none"))
    assert resp.status_code == 303
    assert "code" in query_of(resp.headers["Location"])


# ------------------------------------------------------------------ 12: iss and state everywhere
def test_item12_long_state_and_iss_on_success_and_error(client, citizen, rp):
    state = ("s" * 1000) + "-_.~%20é" + ("t" * 995)
    assert len(state) >= 2000
    flow = Flow(client, rp, state=state)
    params = flow.run(citizen)
    assert params["state"] == state and params["iss"] == ISSUER
    resp = flow.authorize(scope="bogus")
    assert_redirect_error(resp, rp, "invalid_scope", state)
    resp = flow.authorize(prompt="none", max_age="0")
    assert_redirect_error(resp, rp, "login_required", state)
    meta = client.get("/.well-known/openid-configuration").get_json()
    assert meta["authorization_response_iss_parameter_supported"] is True


def test_item12_error_without_state_has_iss_only(client, rp):
    flow = Flow(client, rp)
    assert_redirect_error(flow.authorize(state=None, scope="bogus"), rp, "invalid_scope", None)


def test_item12_state_is_echoed_byte_for_byte(client, rp):
    flow = Flow(client, rp, state="a+b c&d=e/f?g#h")
    resp = flow.authorize(scope="bogus")
    assert_redirect_error(resp, rp, "invalid_scope", "a+b c&d=e/f?g#h")


# ------------------------------------------------------------------ 13-17: prompt and hints
def test_item13_prompt_none_without_session_is_login_required(client, rp):
    flow = Flow(client, rp)
    resp = flow.authorize(prompt="none")
    assert_redirect_error(resp, rp, "login_required", flow.state)
    assert resp.get_data(as_text=True).count("<form") == 0


def test_item14_prompt_none_with_session_is_silent(client, citizen, rp):
    first, params = logged_in_flow(client, citizen, rp)
    before = claims_of(id_token_for(first, params["code"])["id_token"])
    flow = Flow(client, rp)
    resp = flow.authorize(prompt="none")
    assert resp.status_code == 302
    again = query_of(resp.headers["Location"])
    assert "code" in again and again["state"] == flow.state and again["iss"] == ISSUER
    after = claims_of(id_token_for(flow, again["code"])["id_token"])
    assert after["sub"] == before["sub"] == citizen.id
    assert after["auth_time"] == before["auth_time"]


def test_item14_id_token_hint_for_the_same_user_is_silent(client, citizen, rp):
    first, params = logged_in_flow(client, citizen, rp)
    hint = id_token_for(first, params["code"])["id_token"]
    flow = Flow(client, rp)
    resp = flow.authorize(prompt="none", id_token_hint=hint)
    assert "code" in query_of(resp.headers["Location"])


def test_item15_prompt_login_forces_a_new_login(client, citizen, rp, services):
    first, params = logged_in_flow(client, citizen, rp)
    before = claims_of(id_token_for(first, params["code"])["id_token"])
    age_session(services, citizen.id, 5)
    flow = Flow(client, rp)
    resp = flow.authorize(prompt="login")
    assert goes_to_login(resp)
    resp = flow.login(resp, citizen.email, citizen.password)
    again = flow.follow_to_code(resp)
    after = claims_of(id_token_for(flow, again["code"])["id_token"])
    assert after["auth_time"] > before["auth_time"] - 5
    assert after["sub"] == before["sub"]


@pytest.mark.parametrize("max_age", ["0", "1"])
def test_item15_max_age_forces_login_and_auth_time_is_present(
    client, citizen, rp, services, max_age
):
    logged_in_flow(client, citizen, rp)
    age_session(services, citizen.id, 2)  # "max_age=1 after 2 s" without sleeping
    with services.db.session() as session:
        old_auth_time = session.scalars(
            select(SsoSession.auth_time).where(SsoSession.user_id == citizen.id)
        ).first()
    flow = Flow(client, rp)
    resp = flow.authorize(max_age=max_age)
    assert goes_to_login(resp)
    again = flow.follow_to_code(flow.login(resp, citizen.email, citizen.password))
    claims = claims_of(id_token_for(flow, again["code"])["id_token"])
    assert claims["auth_time"] > int(old_auth_time.timestamp())


def test_item15_generous_max_age_does_not_force_login(client, citizen, rp):
    logged_in_flow(client, citizen, rp)
    flow = Flow(client, rp)
    resp = flow.authorize(max_age="10000")
    params = query_of(resp.headers["Location"])
    assert "code" in params
    # OIDC Core §3.1.2.1: with max_age, auth_time MUST be in the ID token.
    assert "auth_time" in claims_of(id_token_for(flow, params["code"])["id_token"])


def test_item15_max_age_with_prompt_none_is_login_required(client, citizen, rp, services):
    logged_in_flow(client, citizen, rp)
    age_session(services, citizen.id, 30)
    flow = Flow(client, rp)
    assert_redirect_error(
        flow.authorize(prompt="none", max_age="10"), rp, "login_required", flow.state
    )


@pytest.mark.parametrize("max_age", ["-1", "abc", "1.5", "99999999999"])
def test_max_age_must_be_a_non_negative_integer(client, rp, max_age):
    flow = Flow(client, rp)
    assert_redirect_error(flow.authorize(max_age=max_age), rp, "invalid_request", flow.state)


@pytest.mark.parametrize(
    "prompt", ["none login", "none consent", "login none", "none select_account"]
)
def test_item16_prompt_none_with_anything_else(client, rp, prompt):
    flow = Flow(client, rp)
    assert_redirect_error(flow.authorize(prompt=prompt), rp, "invalid_request", flow.state)


def test_unknown_prompt_value_is_invalid_request(client, rp):
    flow = Flow(client, rp)
    assert_redirect_error(flow.authorize(prompt="create"), rp, "invalid_request", flow.state)


def test_prompt_select_account_shows_the_login_page(client, citizen, rp):
    logged_in_flow(client, citizen, rp)
    assert goes_to_login(Flow(client, rp).authorize(prompt="select_account"))


def test_item17_hint_of_another_user_with_prompt_none(app, client, citizen, rp):
    other = Citizen.create(app)
    other_browser = app.test_client()
    other_flow, other_params = logged_in_flow(other_browser, other, rp)
    other_hint = id_token_for(other_flow, other_params["code"])["id_token"]
    logged_in_flow(client, citizen, rp)
    flow = Flow(client, rp)
    with app.extensions["yitong"].db.session() as session:
        codes_before = len(session.scalars(select(AuthorizationCode)).all())
    resp = flow.authorize(prompt="none", id_token_hint=other_hint)
    assert_redirect_error(resp, rp, "login_required", flow.state)
    # Without prompt=none the user is asked to log in; logging in as someone else is refused.
    resp = flow.authorize(id_token_hint=other_hint)
    assert goes_to_login(resp)
    resp = flow.login(resp, citizen.email, citizen.password)
    resp = client.get(resp.headers["Location"])
    assert_redirect_error(resp, rp, "login_required", flow.state)
    with app.extensions["yitong"].db.session() as session:
        assert len(session.scalars(select(AuthorizationCode)).all()) == codes_before


def test_item17_logging_in_as_the_hinted_user_succeeds(app, client, citizen, rp):
    other = Citizen.create(app)
    first, params = logged_in_flow(app.test_client(), other, rp)
    hint = id_token_for(first, params["code"])["id_token"]
    logged_in_flow(client, citizen, rp)  # this browser is citizen's
    flow = Flow(client, rp)
    resp = flow.authorize(id_token_hint=hint)
    assert goes_to_login(resp)
    got = flow.follow_to_code(flow.login(resp, other.email, other.password))
    assert claims_of(id_token_for(flow, got["code"])["id_token"])["sub"] == other.id


@pytest.mark.parametrize("kind", ["garbage", "alg_none", "wrong_aud", "other_key", "access_token"])
def test_bad_id_token_hints_are_refused(app, client, citizen, rp, kind):
    first, params = logged_in_flow(client, citizen, rp)
    real = id_token_for(first, params["code"])
    claims = claims_of(real["id_token"])
    if kind == "garbage":
        hint = "not-a-jwt"
    elif kind == "alg_none":
        hint = jose_jwt.encode(claims, "", algorithm="HS256")
        head = json.dumps({"alg": "none", "typ": "JWT"}).encode()
        import base64

        b64 = base64.urlsafe_b64encode(head).rstrip(b"=").decode()
        hint = b64 + "." + hint.split(".")[1] + "."
    elif kind == "wrong_aud":
        other = RegisteredClient.create(app, name="Other department")
        flow2, p2 = logged_in_flow(client, citizen, other)
        hint = id_token_for(flow2, p2["code"])["id_token"]
    elif kind == "other_key":
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        kid = jose_jwt.get_unverified_header(real["id_token"])["kid"]
        hint = jose_jwt.encode(claims, pem.decode(), algorithm="RS256", headers={"kid": kid})
    else:
        jwt_rp = RegisteredClient.create(app, name="JWT access tokens", access_token_format="jwt")
        flow3, p3 = logged_in_flow(client, citizen, jwt_rp)
        hint = id_token_for(flow3, p3["code"])["access_token"]
        assert jose_jwt.get_unverified_header(hint)["typ"] == "at+jwt"  # checklist 51
    flow = Flow(client, rp)
    assert_redirect_error(flow.authorize(id_token_hint=hint), rp, "invalid_request", flow.state)


# ------------------------------------------------------------------ 18: acr and claims
def _capture_acr_hook(monkeypatch: Any, required: str | None) -> list[Any]:
    """Replace the level decision (idp.interaction.levels) and record what it was asked."""
    from idp.oauth import authorization

    seen: list[Any] = []

    def decide(ctx: Any, _user: Any) -> str | None:
        seen.append((list(ctx.requested_acr), ctx.acr_essential, ctx.claims, list(ctx.acr_values)))
        return required

    monkeypatch.setattr(authorization, "required_acr_for", decide)
    return seen


def test_item18_acr_values_reach_the_interaction_layer(client, citizen, rp, monkeypatch):
    logged_in_flow(client, citizen, rp)
    seen = _capture_acr_hook(monkeypatch, None)
    flow = Flow(client, rp)
    resp = flow.authorize(prompt="none", acr_values="urn:yitong:acr:mfa urn:yitong:acr:phr")
    assert "code" in query_of(resp.headers["Location"])
    assert seen[-1][0] == ["urn:yitong:acr:mfa", "urn:yitong:acr:phr"]
    assert seen[-1][1] is False


def test_item18_essential_acr_claim_reaches_the_interaction_layer(client, citizen, rp, monkeypatch):
    logged_in_flow(client, citizen, rp)
    seen = _capture_acr_hook(monkeypatch, None)
    claims = {"id_token": {"acr": {"essential": True, "value": "urn:yitong:acr:mfa"}}}
    flow = Flow(client, rp)
    flow.authorize(prompt="none", claims=json.dumps(claims), acr_values="urn:yitong:acr:pwd")
    assert seen[-1][0] == ["urn:yitong:acr:mfa"]  # the claims request wins over acr_values
    assert seen[-1][1] is True
    assert seen[-1][2] == claims


def test_item18_step_up_with_prompt_none_is_interaction_required(client, citizen, rp, monkeypatch):
    logged_in_flow(client, citizen, rp)
    _capture_acr_hook(monkeypatch, "urn:yitong:acr:mfa")  # password session, MFA demanded
    flow = Flow(client, rp)
    resp = flow.authorize(prompt="none", acr_values="urn:yitong:acr:mfa")
    assert_redirect_error(resp, rp, "interaction_required", flow.state)


def test_item18_step_up_requirement_survives_the_interaction(client, citizen, rp, monkeypatch):
    # A password session asked for MFA is sent to the step-up page, never given a code.
    logged_in_flow(client, citizen, rp)
    _capture_acr_hook(monkeypatch, "urn:yitong:acr:mfa")
    flow = Flow(client, rp)
    resp = flow.authorize(acr_values="urn:yitong:acr:mfa")
    assert resp.status_code == 302
    assert urlsplit(resp.headers["Location"]).path == "/login/step-up"


@pytest.mark.parametrize(
    "claims",
    [
        "not json",
        "[]",
        '"x"',
        '{"id_token": []}',
        '{"id_token": {"acr": 5}}',
        '{"id_token": {"acr": {"essential": "yes"}}}',
        '{"userinfo": {"email": {"values": "x"}}}',
    ],
)
def test_malformed_claims_parameter_is_invalid_request(client, rp, claims):
    flow = Flow(client, rp)
    assert_redirect_error(flow.authorize(claims=claims), rp, "invalid_request", flow.state)


def test_claims_parameter_with_unknown_members_is_accepted(client, citizen, rp):
    claims = {
        "id_token": {"email": None, "acr": {"values": ["urn:yitong:acr:pwd"]}},
        "userinfo": {"name": {"essential": True}},
        "x-unknown": {"a": 1},
    }
    flow = Flow(client, rp)
    params = flow.run(citizen, claims=json.dumps(claims))
    assert "code" in params


def test_requested_claims_are_kept_on_the_grant(client, citizen, rp, services):
    claims = {"id_token": {"email": None}, "userinfo": {"phone_number": {"essential": True}}}
    flow = Flow(client, rp)
    flow.run(citizen, claims=json.dumps(claims))
    with services.db.session() as session:
        grant = session.scalars(select(Grant)).one()
        assert grant.claims == claims


# ------------------------------------------------------------------ 19-20: cancel and consent
def test_item19_cancel_at_login_is_access_denied(client, rp):
    flow = Flow(client, rp)
    resp = flow.authorize()
    page = client.get(resp.headers["Location"])
    html = page.get_data(as_text=True)
    resp = client.post(
        "/login",
        data={"csrf_token": csrf_token(html), "ix": hidden(html, "ix"), "action": "cancel"},
    )
    params = assert_redirect_error(resp, rp, "access_denied", flow.state)
    assert resp.status_code == 303
    assert params["iss"] == ISSUER


def test_item19_deny_at_consent_is_access_denied(client, citizen, rp, services):
    flow = Flow(client, rp)
    resp = flow.login(flow.authorize(), citizen.email, citizen.password)
    resp = client.get(resp.headers["Location"])  # resume -> consent
    assert "/consent" in resp.headers["Location"]
    resp = flow.consent(resp, action="deny")
    assert_redirect_error(resp, rp, "access_denied", flow.state)
    with services.db.session() as session:
        assert session.scalars(select(AuthorizationCode)).first() is None


def test_item20_prompt_none_for_a_new_client_is_consent_required(app, client, citizen, rp):
    logged_in_flow(client, citizen, rp)
    newcomer = RegisteredClient.create(
        app, name="New department", redirect_uris=["https://new.gov.example/cb"]
    )
    flow = Flow(client, newcomer)
    assert_redirect_error(flow.authorize(prompt="none"), newcomer, "consent_required", flow.state)


def test_prompt_consent_asks_again(client, citizen, rp):
    logged_in_flow(client, citizen, rp)
    resp = Flow(client, rp).authorize(prompt="consent")
    assert "/consent" in resp.headers["Location"]


def test_wider_scope_than_consented_asks_again(client, citizen, rp):
    logged_in_flow(client, citizen, rp)
    flow = Flow(client, rp, scope="openid profile email phone")
    assert_redirect_error(flow.authorize(prompt="none"), rp, "consent_required", flow.state)


# ------------------------------------------------------------------ 21 and headers
@pytest.mark.parametrize("method", ["GET", "OPTIONS"])
def test_item21_no_cors_on_the_authorization_endpoint(client, rp, method):
    flow = Flow(client, rp)
    headers = {"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"}
    resp = client.open("/authorize?" + urlencode(flow.params()), method=method, headers=headers)
    assert not [h for h, _v in resp.headers.items() if h.lower().startswith("access-control-")]


def test_authorization_pages_have_frame_and_referrer_protection(client, rp):
    # checklist 101, 103 on the endpoint itself and its error page.
    for resp in (
        Flow(client, rp).authorize(),
        Flow(client, rp).authorize(redirect_uri="https://x.example/"),
    ):
        assert resp.headers["X-Frame-Options"] == "DENY"
        assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
        assert resp.headers["Referrer-Policy"] == "no-referrer"
        assert resp.headers["Cache-Control"] == "no-store"


# ------------------------------------------------------------------ response_mode=form_post
def test_form_post_success_is_an_auto_submitting_page(client, citizen, rp):
    logged_in_flow(client, citizen, rp)
    flow = Flow(client, rp, state='"><script>alert(1)</script>')
    resp = flow.authorize(response_mode="form_post", prompt="none")
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    assert f'action="{rp.redirect_uri}"' in html
    assert re.search(r'name="code" value="[^"]+"', html)
    assert f'name="iss" value="{ISSUER}"' in html
    assert "<script>alert(1)</script>" not in html  # state is escaped
    assert 'name="state" value="&#34;&gt;&lt;script&gt;' in html
    csp = resp.headers["Content-Security-Policy"]
    nonce = re.search(r"'nonce-([^']+)'", csp).group(1)
    assert f'<script nonce="{nonce}">' in html
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert "form-action https://c1.gov.example" in csp
    assert "unsafe-inline" not in csp
    assert resp.headers["Cache-Control"] == "no-store"


def test_form_post_error_is_posted_too(client, rp):
    flow = Flow(client, rp)
    resp = flow.authorize(response_mode="form_post", scope="bogus")
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    assert 'name="error" value="invalid_scope"' in html
    assert f'name="state" value="{flow.state}"' in html
    assert "Location" not in resp.headers


def test_unsupported_response_mode_is_an_error_page(client, rp):
    for mode in ("fragment", "web_message", "jwt", "query.jwt"):
        assert_error_page(Flow(client, rp).authorize(response_mode=mode), "invalid_request")


# ------------------------------------------------------------------ hints, locales, display
def test_login_hint_prefills_the_login_page(client, rp):
    resp = Flow(client, rp).authorize(login_hint="zhang@example.cn")
    page = client.get(resp.headers["Location"])
    assert 'value="zhang@example.cn"' in page.get_data(as_text=True)


def test_login_hint_is_escaped(client, rp):
    resp = Flow(client, rp).authorize(login_hint='"><img src=x>')
    html = client.get(resp.headers["Location"]).get_data(as_text=True)
    assert "<img src=x>" not in html


def test_ui_locales_sets_the_page_language(client, rp):
    resp = Flow(client, rp).authorize(ui_locales="en-US zh-CN")
    assert "ui_locales=" in resp.headers["Location"]
    english = client.get(resp.headers["Location"]).get_data(as_text=True)
    assert '<html lang="en">' in english
    resp = Flow(client, rp).authorize(ui_locales="zh-CN")
    chinese = client.get(resp.headers["Location"]).get_data(as_text=True)
    assert '<html lang="zh-CN">' in chinese


@pytest.mark.parametrize("display", ["page", "popup", "touch", "wap"])
def test_display_values_are_accepted(client, rp, display):
    assert goes_to_login(Flow(client, rp).authorize(display=display))


def test_unknown_display_is_invalid_request(client, rp):
    flow = Flow(client, rp)
    assert_redirect_error(flow.authorize(display="tv"), rp, "invalid_request", flow.state)


# ------------------------------------------------------------------ robustness (checklist 111)
@pytest.mark.parametrize(
    "query",
    [
        "client_id=%ff%fe&redirect_uri=%00",
        "client_id=%",
        "client_id=%25252F",
        "client_id=" + "a" * 5000,
        "redirect_uri=%E2%80%AEhttps://c1.gov.example/cb",
        "claims=%7B%22id_token%22%3A%7B%7D%7D",
        "request_uri=file:///etc/passwd",
    ],
)
def test_malformed_input_is_a_4xx_never_a_500(client, rp, query):
    resp = client.get("/authorize?" + query)
    assert 400 <= resp.status_code < 500


def test_tampered_interaction_token_is_refused(client, rp):
    resp = Flow(client, rp).authorize(prompt="login")
    ix = query_of(resp.headers["Location"])["ix"]
    assert client.get("/authorize/resume?ix=" + ix[:-3] + "AAA").status_code == 400
    assert client.get("/authorize/resume").status_code == 400


def test_browser_cannot_claim_a_pushed_request(app, client):
    # The internal "pushed" marker is stripped from outside input (RFC 9126 §6 bypass attempt).
    par_rp = RegisteredClient.create(app, name="PAR only", require_par=True)
    flow = Flow(client, par_rp)
    resp = flow.authorize(_yitong_pushed="1")
    assert_redirect_error(resp, par_rp, "invalid_request", flow.state)


def test_code_is_bound_to_the_verified_redirect_uri(client, citizen, rp, services):
    flow = Flow(client, rp)
    flow.run(citizen)
    with services.db.session() as session:
        code = session.scalars(select(AuthorizationCode)).one()
        assert code.redirect_uri == rp.redirect_uri and code.redirect_uri_sent
        assert code.code_challenge == flow.challenge and code.code_challenge_method == "S256"
        grant = session.get(Grant, code.grant_id)
        sso = session.scalars(select(SsoSession)).one()
        assert grant.sid == sso.id and grant.auth_time == sso.auth_time


def test_expired_interaction_restarts_cleanly(client, rp, services, monkeypatch):
    from idp.interaction import flow as flow_mod

    resp = Flow(client, rp).authorize()
    monkeypatch.setattr(flow_mod, "INTERACTION_MAX_AGE", -1)
    page = client.get(resp.headers["Location"])
    assert page.status_code == 400


def test_disabled_session_is_not_used(client, citizen, rp, services):
    logged_in_flow(client, citizen, rp)
    with services.db.transaction() as session:
        session.execute(update(SsoSession).values(ended_at=dt.datetime.now(dt.UTC)))
    flow = Flow(client, rp)
    assert_redirect_error(flow.authorize(prompt="none"), rp, "login_required", flow.state)
    time.sleep(0)  # keep the import used on every platform

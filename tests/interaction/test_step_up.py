"""Step-up and its bypass attempts (SECURITY-CHECKLIST items 18 and 75).

A session authenticated with a password only meets a request that needs more: ``acr_values``,
an essential ``acr`` claim, the client's ``default_acr_values`` or a policy.  The user must be
asked for the missing factor only, the ID token must tell the truth about the factors, and no
URL (consent, resume, a second tab, a restarted login, the token endpoint) may skip the step.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask

from idp.storage.models import Client
from tests.helpers import Flow, csrf_token, hidden, query_of
from tests.interaction.mfa_kit import (
    ACR_MFA,
    ACR_PHR,
    ACR_PWD,
    code,
    enrol_totp,
    page,
    services,
    session_row,
    set_policy,
    submit,
)
from tests.oauth.test_code_flow import verify_id_token


@pytest.fixture
def pwd_session(app: Flask, citizen: Any, rp: Any) -> tuple[Flow, str]:
    """A browser signed in with the password only, for a user who has a TOTP."""
    set_policy(app, "mfa.always_when_enrolled", False)
    secret = enrol_totp(app, citizen.id)
    flow = Flow(app.test_client(), rp)
    params = flow.run(citizen)
    assert "code" in params
    row = session_row(app, citizen.id)
    assert row is not None and row.acr == ACR_PWD
    return flow, secret


def _id_token(flow: Flow, params: dict[str, str]) -> dict[str, Any]:
    token = flow.token(params["code"]).get_json()
    return verify_id_token(
        flow.http, token["id_token"], flow.rp.client_id, access_token=token["access_token"]
    )


def _step_up_page(flow: Flow, resp: Any) -> str:
    assert resp.status_code in (302, 303), resp.status_code
    assert "/login/step-up" in resp.headers["Location"], resp.headers["Location"]
    html = page(flow.http, resp)
    assert 'id="step-up-reason"' in html
    assert 'name="password"' not in html  # only the missing factor is asked for
    return html


# ----------------------------------------------------------------------------- item 18
def test_item18_acr_values_steps_up_with_totp_and_the_id_token_tells(
    app: Flask, citizen: Any, pwd_session: tuple[Flow, str]
) -> None:
    flow, secret = pwd_session
    before = session_row(app, citizen.id)
    assert before is not None
    old_cookie = flow.http.get_cookie("yitong_sso")
    assert old_cookie is not None
    html = _step_up_page(flow, flow.authorize(acr_values=ACR_MFA))
    params = flow.follow_to_code(submit(flow.http, html, "totp", code(secret)))
    claims = _id_token(flow, params)
    assert claims["acr"] == ACR_MFA
    assert sorted(claims["amr"]) == ["mfa", "otp", "pwd"]
    after = session_row(app, citizen.id)
    assert after is not None and after.id == before.id  # same SSO session, raised
    assert set(after.factors) == {"pwd", "otp"}
    assert after.factors["pwd"] == before.factors["pwd"]
    # The raised session has a new cookie value; the old one is worthless.
    other = app.test_client()
    other.set_cookie("yitong_sso", old_cookie.value)
    assert "/login" in Flow(other, flow.rp).authorize().headers["Location"]


def test_item18_an_essential_acr_claim_steps_up(pwd_session: tuple[Flow, str]) -> None:
    flow, secret = pwd_session
    claims = {"id_token": {"acr": {"essential": True, "values": [ACR_MFA, ACR_PHR]}}}
    html = _step_up_page(flow, flow.authorize(claims=json.dumps(claims)))
    params = flow.follow_to_code(submit(flow.http, html, "totp", code(secret)))
    assert _id_token(flow, params)["acr"] == ACR_MFA


def test_item18_a_voluntary_acr_claim_or_unknown_acr_value_does_not(
    pwd_session: tuple[Flow, str],
) -> None:
    flow, _secret = pwd_session
    voluntary = {"id_token": {"acr": {"values": [ACR_MFA]}}}
    assert "code" in query_of(flow.authorize(claims=json.dumps(voluntary)).headers["Location"])
    assert "code" in query_of(flow.authorize(acr_values="urn:other:gold").headers["Location"])


def test_item18_client_default_acr_values_cannot_be_edited_away(
    app: Flask, pwd_session: tuple[Flow, str]
) -> None:
    flow, _secret = pwd_session
    with services(app).db.transaction() as s:
        row = s.get(Client, flow.rp.client_id)
        assert row is not None
        row.default_acr_values = [ACR_MFA]
    # The user removes the client's wish from the URL, or asks for less: still stepped up.
    _step_up_page(flow, flow.authorize())
    _step_up_page(flow, flow.authorize(acr_values=ACR_PWD))


def test_item18_policy_for_chosen_clients_steps_up(
    app: Flask, pwd_session: tuple[Flow, str]
) -> None:
    flow, _secret = pwd_session
    set_policy(app, "mfa.required_clients", [flow.rp.client_id])
    _step_up_page(flow, flow.authorize())


def test_item18_prompt_none_answers_interaction_required(pwd_session: tuple[Flow, str]) -> None:
    flow, _secret = pwd_session
    resp = flow.authorize(acr_values=ACR_MFA, prompt="none")
    params = query_of(resp.headers["Location"])
    assert resp.headers["Location"].startswith(flow.rp.redirect_uri)
    assert params["error"] == "interaction_required" and params["state"] == flow.state
    assert "code" not in params


def test_item18_restarting_the_login_keeps_the_requirement(
    citizen: Any, pwd_session: tuple[Flow, str]
) -> None:
    flow, secret = pwd_session
    resp = flow.authorize(acr_values=ACR_MFA)
    ix = query_of(resp.headers["Location"])["ix"]
    # "Restart login" mid-flow: back to the login page with the same interaction.
    html = flow.http.get(f"/login?ix={ix}").get_data(as_text=True)
    again = flow.http.post(
        "/login",
        data={
            "csrf_token": csrf_token(html),
            "ix": hidden(html, "ix"),
            "login": citizen.email,
            "password": citizen.password,
        },
    )
    assert again.status_code == 303 and "/login/mfa" in again.headers["Location"]
    challenge = page(flow.http, again)
    params = flow.follow_to_code(submit(flow.http, challenge, "totp", code(secret)))
    assert _id_token(flow, params)["acr"] == ACR_MFA


# ----------------------------------------------------------------------------- item 75
def test_item75_consent_resume_second_tab_and_token_do_not_skip_the_factor(
    app: Flask, pwd_session: tuple[Flow, str]
) -> None:
    flow, _secret = pwd_session
    resp = flow.authorize(acr_values=ACR_MFA, prompt="consent")
    ix = query_of(resp.headers["Location"])["ix"]
    # Direct POST to consent with the interaction token: no code, back to the step-up.
    account = flow.http.get("/account").get_data(as_text=True)
    consent = flow.http.post(
        "/consent", data={"csrf_token": csrf_token(account), "ix": ix, "action": "approve"}
    )
    assert consent.status_code in (302, 303)
    assert "/login/step-up" in consent.headers["Location"]
    assert "code=" not in consent.headers["Location"]
    # The authorization continuation.
    resume = flow.http.get(f"/authorize/resume?ix={ix}")
    assert "/login/step-up" in resume.headers["Location"]
    # A second tab starting over.
    second = Flow(flow.http, flow.rp)
    assert "/login/step-up" in second.authorize(acr_values=ACR_MFA).headers["Location"]
    # The token endpoint has nothing to redeem: a made-up code is refused.
    assert flow.token("not-a-real-code").status_code == 400


def test_item75_after_the_password_step_nothing_is_signed_in(
    app: Flask, citizen: Any, rp: Any
) -> None:
    enrol_totp(app, citizen.id)
    flow = Flow(app.test_client(), rp)
    resp = flow.authorize()
    ix = query_of(resp.headers["Location"])["ix"]
    pending = flow.login(resp, citizen.email, citizen.password)
    assert "/login/mfa" in pending.headers["Location"]
    assert session_row(app, citizen.id) is None
    for attempt in (flow.http.get(f"/authorize/resume?ix={ix}"), flow.authorize()):
        assert "/login?" in attempt.headers["Location"]
    assert flow.http.get("/account").status_code == 302
    html = flow.http.get(f"/login?ix={ix}").get_data(as_text=True)
    consent = flow.http.post(
        "/consent", data={"csrf_token": csrf_token(html), "ix": ix, "action": "approve"}
    )
    assert "/login" in consent.headers["Location"]


def test_item75_staff_from_ldap_get_the_same_mfa_policy(
    make_app: Any, slapd_hrss: Any, ldap_test_ca: Any
) -> None:
    from tests.helpers import RegisteredClient
    from tests.services.slapd import hrss_table

    app = make_app(directories={"hrss": hrss_table(slapd_hrss, ldap_test_ca)})
    set_policy(app, "mfa.required_for", ["staff"])
    rp = RegisteredClient.create(app)
    flow = Flow(app.test_client(), rp)
    resp = flow.authorize()
    html = page(flow.http, resp)
    staff = flow.http.post(
        "/login",
        data={
            "csrf_token": csrf_token(html),
            "ix": hidden(html, "ix"),
            "login": "wang.fang",
            "password": "Wf-2017-secret!",
            "department": "hrss",
        },
    )
    assert staff.status_code == 303 and "/login/mfa" in staff.headers["Location"]
    assert 'id="enrol-required"' in page(flow.http, staff)


# ----------------------------------------------------------------------------- levels
def test_phishing_resistant_requirement_is_not_met_by_totp(
    pwd_session: tuple[Flow, str],
) -> None:
    flow, _secret = pwd_session
    resp = flow.authorize(acr_values=ACR_PHR)
    assert "/login/step-up" in resp.headers["Location"]
    got = flow.http.get(resp.headers["Location"])
    assert got.status_code == 403
    assert 'id="mfa-unavailable"' in got.get_data(as_text=True)


def test_discovery_advertises_the_acr_ladder(client: Any) -> None:
    doc = client.get("/.well-known/openid-configuration").get_json()
    assert doc["acr_values_supported"] == [ACR_PWD, ACR_MFA, ACR_PHR]


def test_step_up_without_a_session_goes_to_login(client: Any) -> None:
    resp = client.get("/login/step-up")
    assert resp.status_code == 302 and "/login" in resp.headers["Location"]


def test_step_up_with_a_forged_interaction_is_a_clean_error(
    pwd_session: tuple[Flow, str],
) -> None:
    flow, _secret = pwd_session
    resp = flow.http.get("/login/step-up?ix=forged")
    assert resp.status_code == 400


def test_the_password_step_sees_the_whole_request_even_with_an_id_token_hint(
    app: Flask, citizen: Any, rp: Any
) -> None:
    """The MFA decision after the password reads the request as /authorize does (hint and all),
    so the second factor is asked for right away rather than by a later step-up."""
    set_policy(app, "mfa.always_when_enrolled", False)
    enrol_totp(app, citizen.id)
    first = Flow(app.test_client(), rp)
    token = first.token(first.run(citizen)["code"]).get_json()
    later = Flow(app.test_client(), rp)
    resp = later.authorize(acr_values=ACR_MFA, id_token_hint=token["id_token"])
    pending = later.login(resp, citizen.email, citizen.password)
    assert pending.status_code == 303 and "/login/mfa" in pending.headers["Location"]

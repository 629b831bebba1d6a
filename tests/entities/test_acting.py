"""Acting for a company (issue 10): the picker, the ``authority`` claim, and its end.

A person signs in for a client that asked for the ``entity`` scope, chooses at the picker
whom they act for, and the tokens carry the person as ``sub`` plus ``authority``; ID token,
userinfo and introspection agree.  An expired or revoked mandate, or a suspended company,
stops the tokens at the next refresh, introspection or userinfo call.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from flask import Flask
from jose import jwt as jose_jwt

from admin.services import change_entity_status, revoke_mandate
from idp.storage.models import Grant, utcnow
from tests.entities.kit import company, mandate, person, set_mandate
from tests.helpers import Flow, RegisteredClient, query_of
from tests.oauth import tokenkit as kit

SCOPE = "openid profile entity offline_access"


@pytest.fixture
def entity_rp(app: Flask) -> RegisteredClient:
    return RegisteredClient.create(
        app, name="Tax service", scopes=["openid", "profile", "entity", "offline_access"]
    )


def tokens(http: Any, rp: RegisteredClient, who: Any, acting_for: str) -> dict[str, Any]:
    flow = Flow(http, rp, scope=SCOPE, acting_for=acting_for)
    params = flow.run(who)
    resp = flow.token(params["code"])
    assert resp.status_code == 200, resp.get_json()
    return dict(resp.get_json())


def id_claims(body: dict[str, Any]) -> dict[str, Any]:
    return dict(jose_jwt.get_unverified_claims(body["id_token"]))


def userinfo(http: Any, at: str) -> Any:
    return http.get("/userinfo", headers={"Authorization": f"Bearer {at}"})


def test_representative_acts_for_the_company(app: Flask, client: Any, entity_rp: Any) -> None:
    entity, rep, code = company(app)
    body = tokens(client, entity_rp, rep, entity.id)
    expected = {
        "applies_to": {"registration_number": code, "name": entity.name},
        "permission": {"role": "legal-representative"},
        "granted_by": "registry",
    }
    claims = id_claims(body)
    assert claims["sub"] == rep.id  # the person, not the company
    assert claims["authority"] == expected
    info = userinfo(client, body["access_token"]).get_json()
    assert info["sub"] == rep.id and info["authority"] == expected
    seen = kit.introspect(client, entity_rp, body["access_token"]).get_json()
    assert seen["active"] is True and seen["authority"] == expected
    with app.extensions["yitong"].db.session() as session:
        grants = session.query(Grant).filter(Grant.user_id == rep.id).all()
        assert [(g.entity_id, g.mandate_id) for g in grants] == [(entity.id, None)]


def test_picker_lists_companies_and_myself(app: Flask, client: Any, entity_rp: Any) -> None:
    entity, rep, _code = company(app)
    flow = Flow(client, entity_rp, scope=SCOPE)
    resp = flow.login(flow.authorize(), rep.email, rep.password)
    while "/entities/choose" not in resp.headers.get("Location", ""):
        resp = client.get(resp.headers["Location"])
    page = client.get(resp.headers["Location"]).get_data(as_text=True)
    assert entity.name in page and entity.credit_code_masked in page
    assert 'value="self"' in page and f'value="{entity.id}"' in page
    code = entity.credit_code_masked
    assert code[4:-4] == "*" * 10  # shown masked, never in full


def test_choosing_myself_carries_no_authority(app: Flask, client: Any, entity_rp: Any) -> None:
    _entity, rep, _code = company(app)
    body = tokens(client, entity_rp, rep, "self")
    assert "authority" not in id_claims(body)
    assert "authority" not in userinfo(client, body["access_token"]).get_json()


def test_person_without_companies_is_not_asked(app: Flask, client: Any, entity_rp: Any) -> None:
    someone = person(app)
    flow = Flow(client, entity_rp, scope=SCOPE, acting_for="never-asked")
    params = flow.run(someone)  # would fail at a picker: "never-asked" is no option
    body = flow.token(params["code"]).get_json()
    assert "authority" not in id_claims(body)


def test_agent_with_mandate_then_expiry_stops_tokens(
    app: Flask, client: Any, entity_rp: Any
) -> None:
    entity, rep, code = company(app)
    agent = person(app)
    mid = mandate(app, entity.id, rep.id, agent.id, role="finance", clients=(entity_rp.client_id,))
    body = tokens(client, entity_rp, agent, f"{entity.id}:{mid}")
    claims = id_claims(body)
    assert claims["sub"] == agent.id
    assert claims["authority"]["applies_to"] == {"registration_number": code, "name": entity.name}
    assert claims["authority"]["permission"]["role"] == "finance"
    assert claims["authority"]["permission"]["clients"] == [entity_rp.client_id]
    assert claims["authority"]["granted_by"] == "legal-representative"
    assert set(claims["authority"]["permission"]) >= {"valid_from", "valid_until"}
    refreshed = kit.refresh(client, entity_rp, body["refresh_token"])
    assert refreshed.status_code == 200
    assert id_claims(refreshed.get_json())["authority"] == claims["authority"]

    # The mandate runs out: nothing acting on it works any more.
    past = utcnow() - dt.timedelta(days=1)
    set_mandate(app, mid, valid_from=past - dt.timedelta(days=1), valid_until=past)
    at = refreshed.get_json()["access_token"]
    assert userinfo(client, at).status_code == 401
    assert kit.introspect(client, entity_rp, at).get_json() == {"active": False}
    again = kit.refresh(
        client, entity_rp, refreshed.get_json().get("refresh_token") or body["refresh_token"]
    )
    assert again.status_code == 400 and again.get_json()["error"] == "invalid_grant"


def test_revoked_mandate_stops_tokens(app: Flask, client: Any, entity_rp: Any) -> None:
    entity, rep, _code = company(app)
    agent = person(app)
    mid = mandate(app, entity.id, rep.id, agent.id)
    body = tokens(client, entity_rp, agent, f"{entity.id}:{mid}")
    assert userinfo(client, body["access_token"]).status_code == 200
    services = app.extensions["yitong"]
    with app.app_context(), services.db.session() as session:
        revoke_mandate(session, services, entity.id, agent.email, "test")
    assert userinfo(client, body["access_token"]).status_code == 401
    assert kit.introspect(client, entity_rp, body["access_token"]).get_json() == {"active": False}
    assert kit.refresh(client, entity_rp, body["refresh_token"]).status_code == 400


def test_mandate_not_yet_accepted_is_no_option(app: Flask, client: Any, entity_rp: Any) -> None:
    entity, rep, _code = company(app)
    agent = person(app)
    mid = mandate(app, entity.id, rep.id, agent.id, accept=False)
    flow = Flow(client, entity_rp, scope=SCOPE, acting_for=f"{entity.id}:{mid}")
    params = flow.run(agent)  # the only option is "myself": no picker, no authority
    assert "authority" not in id_claims(flow.token(params["code"]).get_json())


def test_client_not_covered_cannot_act(app: Flask, client: Any, entity_rp: Any) -> None:
    entity, rep, _code = company(app)
    other = RegisteredClient.create(app, name="Other", scopes=["openid", "entity"])
    agent = person(app)
    mid = mandate(app, entity.id, rep.id, agent.id, clients=(other.client_id,))
    # A second company the agent represents makes the picker appear.
    company_b, _rep_b, _ = company(app, 1)
    mandate(app, company_b.id, _rep_b.id, agent.id)
    flow = Flow(client, entity_rp, scope=SCOPE)
    resp = flow.login(flow.authorize(), agent.email, agent.password)
    while "/entities/choose" not in resp.headers.get("Location", ""):
        resp = client.get(resp.headers["Location"])
    page = client.get(resp.headers["Location"]).get_data(as_text=True)
    assert entity.name not in page and company_b.name in page
    # Forcing the uncovered mandate into the form is refused.
    refused = flow.choose(resp, f"{entity.id}:{mid}")
    assert refused.status_code == 400
    assert "picker-error" in refused.get_data(as_text=True)


def test_suspended_company_ends_acting(app: Flask, client: Any, entity_rp: Any) -> None:
    entity, rep, _code = company(app)
    agent = person(app)
    mid = mandate(app, entity.id, rep.id, agent.id)
    rep_body = tokens(client, entity_rp, rep, entity.id)
    other = app.test_client()
    agent_body = tokens(other, entity_rp, agent, f"{entity.id}:{mid}")
    services = app.extensions["yitong"]
    with app.app_context(), services.db.session() as session:
        result = change_entity_status(session, services, entity.id, "suspended", "test")
    assert result["status"] == "suspended" and result["sessions_ended"] == 2
    for http, body in ((client, rep_body), (other, agent_body)):
        assert userinfo(http, body["access_token"]).status_code == 401
        assert kit.refresh(http, entity_rp, body["refresh_token"]).status_code == 400
    # The representative signs in again: no company to act for, so no picker.
    flow = Flow(client, entity_rp, scope=SCOPE, acting_for="never-asked")
    params = flow.run(rep)
    assert "authority" not in id_claims(flow.token(params["code"]).get_json())


def test_prompt_none_with_companies_needs_interaction(
    app: Flask, client: Any, entity_rp: Any
) -> None:
    entity, rep, _code = company(app)
    tokens(client, entity_rp, rep, entity.id)  # signed in, consented
    flow = Flow(client, entity_rp, scope=SCOPE)
    resp = flow.authorize(prompt="none")
    assert resp.status_code in (302, 303)
    assert query_of(resp.headers["Location"])["error"] == "interaction_required"


def test_switching_company_yields_new_tokens_without_login(
    app: Flask, client: Any, entity_rp: Any
) -> None:
    entity, rep, _code = company(app)
    first = tokens(client, entity_rp, rep, entity.id)
    flow = Flow(client, entity_rp, scope=SCOPE, acting_for="self")
    resp = flow.authorize()
    assert "/login" not in resp.headers["Location"]  # no new login
    params = flow.follow_to_code(resp)
    second = flow.token(params["code"]).get_json()
    assert "authority" in id_claims(first) and "authority" not in id_claims(second)
    assert id_claims(first)["sub"] == id_claims(second)["sub"]


def test_account_page_accepts_and_ends_mandates(app: Flask, client: Any, entity_rp: Any) -> None:
    from tests.helpers import csrf_token

    entity, rep, _code = company(app)
    agent = person(app)
    mid = mandate(app, entity.id, rep.id, agent.id, role="social-security", accept=False)
    Flow(client, entity_rp, scope="openid").run(agent)  # signed in
    page = client.get("/account/companies")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and entity.name in html and f"accept-{mid}" in html
    token = csrf_token(html)
    post = client.post(f"/account/mandates/{mid}", data={"csrf_token": token, "action": "accept"})
    assert post.status_code == 303
    # Now live: the agent may act for the company (the picker offers it).
    body = tokens(client, entity_rp, agent, f"{entity.id}:{mid}")
    assert id_claims(body)["authority"]["permission"]["role"] == "social-security"
    # The representative sees it on their side, and ends it there.
    rep_http = app.test_client()
    Flow(rep_http, entity_rp, scope="openid").run(rep)
    rep_html = rep_http.get("/account/companies").get_data(as_text=True)
    assert agent.id in rep_html
    ended = rep_http.post(
        f"/account/mandates/{mid}", data={"csrf_token": csrf_token(rep_html), "action": "end"}
    )
    assert ended.status_code == 303
    assert userinfo(client, body["access_token"]).status_code == 401
    # Someone else cannot touch it.
    stranger_http = app.test_client()
    Flow(stranger_http, entity_rp, scope="openid").run(person(app))
    s_html = stranger_http.get("/account/companies").get_data(as_text=True)
    refused = stranger_http.post(
        f"/account/mandates/{mid}", data={"csrf_token": csrf_token(s_html), "action": "end"}
    )
    assert refused.status_code == 403


def test_token_exchange_keeps_authority_and_dies_with_the_mandate(app: Flask, client: Any) -> None:
    """RFC 8693 (issue 10 item 4) for a person acting for a company: the exchanged token
    carries the authority and stops when the mandate ends."""
    from idp.oauth.clients import TOKEN_EXCHANGE

    api = "https://api.tax.gov.example/"
    rp = RegisteredClient.create(
        app,
        name="Tax portal",
        scopes=["openid", "profile", "entity", "offline_access"],
        grant_types=["authorization_code", "refresh_token", TOKEN_EXCHANGE],
        resources=[api],
        exchange_targets=[api],
    )
    entity, rep, _code = company(app)
    agent = person(app)
    mid = mandate(app, entity.id, rep.id, agent.id)
    body = tokens(client, rp, agent, f"{entity.id}:{mid}")
    data = {
        "grant_type": TOKEN_EXCHANGE,
        "subject_token": body["access_token"],
        "subject_token_type": "urn:ietf:params:oauth:token-type:access_token",
        "resource": api,
        "scope": "profile entity",
    }
    got = kit.post(client, "/token", rp, data)
    assert got.status_code == 200, got.get_json()
    exchanged = got.get_json()["access_token"]
    seen = kit.introspect(client, rp, exchanged).get_json()
    assert seen["active"] is True and seen["act"]["sub"] == rp.client_id
    assert seen["authority"]["applies_to"]["name"] == entity.name
    services = app.extensions["yitong"]
    with app.app_context(), services.db.session() as session:
        revoke_mandate(session, services, entity.id, agent.email, "test")
    assert kit.introspect(client, rp, exchanged).get_json() == {"active": False}

"""The web side of companies (issue 10 items 1-3): the legal-person login (法人登录) next to
the personal one, and the "my companies" page where a representative registers a company
and gives mandates, a company admin gives them too, and the agent accepts."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from jose import jwt as jose_jwt
from sqlalchemy import select

from idp.storage.models import AuditEvent, Mandate
from tests.entities.kit import ACTIVE, RECORDS, company, mandate, person
from tests.helpers import Flow, RegisteredClient, csrf_token, hidden, query_of

SCOPE = "openid profile entity"


@pytest.fixture
def entity_rp(app: Flask) -> RegisteredClient:
    return RegisteredClient.create(app, name="Tax service", scopes=["openid", "profile", "entity"])


def _audit(app: Flask, action: str) -> list[AuditEvent]:
    with app.extensions["yitong"].db.session() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


def entity_login(
    flow: Flow, resp: Any, credit_code: str, who: Any, password: str | None = None
) -> Any:
    """From a redirect to the login page, switch to 法人登录 and submit it."""
    location = resp.headers["Location"]
    page = flow.http.get(location + "&mode=entity")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and 'id="entity-login-form"' in html
    return flow.http.post(
        "/login/entity",
        data={
            "csrf_token": csrf_token(html),
            "ix": hidden(html, "ix"),
            "credit_code": credit_code,
            "login": who.email,
            "password": password or who.password,
            "action": "login",
        },
    )


def authority(flow: Flow, params: dict[str, str]) -> Any:
    body = flow.token(params["code"]).get_json()
    return jose_jwt.get_unverified_claims(body["id_token"]).get("authority")


# ------------------------------------------------------------------ 法人登录
def test_login_page_offers_both_entries_only_where_companies_are_served(
    app: Flask, client: Any, entity_rp: Any, rp: Any
) -> None:
    resp = Flow(client, entity_rp, scope=SCOPE).authorize()
    html = client.get(resp.headers["Location"]).get_data(as_text=True)
    assert 'id="mode-person"' in html and 'id="mode-entity"' in html
    assert "个人登录" in html and "法人登录" in html  # Chinese by default
    assert 'id="login-form"' in html and 'id="entity-login-form"' not in html
    entity_page = client.get(resp.headers["Location"] + "&mode=entity").get_data(as_text=True)
    assert 'id="entity-login-form"' in entity_page and 'name="credit_code"' in entity_page
    assert 'id="login-form"' not in entity_page
    # A client that does not ask for `entity`: the personal login only.
    plain = Flow(client, rp).authorize()
    html = client.get(plain.headers["Location"] + "&mode=entity").get_data(as_text=True)
    assert 'id="mode-entity"' not in html and 'id="entity-login-form"' not in html
    # In English too.
    english = client.get(resp.headers["Location"] + "&ui_locales=en").get_data(as_text=True)
    assert "Legal-person login" in english or "法人登录" in english


def test_representative_signs_in_for_the_named_company(
    app: Flask, client: Any, entity_rp: Any
) -> None:
    entity, rep, code = company(app)
    # A second company (by mandate) would make the picker appear on a personal login.
    other, rep_b, _ = company(app, 1)
    mandate(app, other.id, rep_b.id, rep.id)
    flow = Flow(client, entity_rp, scope=SCOPE, acting_for="never-asked")
    resp = entity_login(flow, flow.authorize(), code.lower(), rep)  # case does not matter
    assert resp.status_code == 303
    params = flow.follow_to_code(resp)  # no picker: the company was named at login
    got = authority(flow, params)
    assert got["applies_to"] == {"registration_number": code, "name": entity.name}
    assert got["permission"]["role"] == "legal-representative"


def test_agent_signs_in_for_the_company_with_a_mandate(
    app: Flask, client: Any, entity_rp: Any
) -> None:
    entity, rep, code = company(app)
    agent = person(app)
    mandate(app, entity.id, rep.id, agent.id, role="finance", clients=(entity_rp.client_id,))
    flow = Flow(client, entity_rp, scope=SCOPE, acting_for="never-asked")
    params = flow.follow_to_code(entity_login(flow, flow.authorize(), code, agent))
    got = authority(flow, params)
    assert got["permission"]["role"] == "finance" and got["granted_by"] == "legal-representative"


def test_legal_person_login_refusals(app: Flask, client: Any, entity_rp: Any) -> None:
    entity, rep, code = company(app)
    stranger = person(app)
    agent = person(app)
    other_rp = RegisteredClient.create(app, name="Other", scopes=["openid", "entity"])
    mandate(app, entity.id, rep.id, agent.id, clients=(other_rp.client_id,))
    unregistered = ACTIVE[2]["credit_code"]  # valid and active at the registry, not here
    cases = [
        ("91210202T1KLDHN476", stranger, None, 400, "统一社会信用代码无效"),  # malformed
        (code, stranger, None, 403, "不是该企业的法定代表人"),  # neither rep nor agent
        (code, agent, None, 403, "不是该企业的法定代表人"),  # mandate not for this client
        (unregistered, rep, None, 403, "不是该企业的法定代表人"),  # not registered here
        (code, rep, "wrong-password-1", 401, None),  # wrong password
    ]
    before = len(_audit(app, "login.entity"))
    for credit_code, who, password, status, text in cases:
        http = app.test_client()
        flow = Flow(http, entity_rp, scope=SCOPE)
        resp = entity_login(flow, flow.authorize(), credit_code, who, password)
        html = resp.get_data(as_text=True)
        assert resp.status_code == status, (credit_code, html[:300])
        assert 'id="entity-login-form"' in html and 'id="login-error"' in html
        assert credit_code in html  # the code typed is kept (it is the company's, not a person's)
        if text:
            assert text in html
        # No session was started.
        assert http.get("/account").status_code in (302, 303)
    refused = _audit(app, "login.entity")[before:]
    assert len(refused) == 3 and {e.outcome for e in refused} == {"failure"}
    assert all(code not in str(e.details) for e in refused)  # the code is masked in the trail


def test_legal_person_login_at_a_client_without_entity_is_refused(
    app: Flask, client: Any, rp: Any
) -> None:
    _entity, rep, code = company(app)
    flow = Flow(client, rp)
    resp = flow.authorize()
    html = client.get(resp.headers["Location"]).get_data(as_text=True)
    posted = client.post(
        "/login/entity",
        data={
            "csrf_token": csrf_token(html),
            "ix": hidden(html, "ix"),
            "credit_code": code,
            "login": rep.email,
            "password": rep.password,
        },
    )
    assert posted.status_code == 200 and "不接受法人登录" in posted.get_data(as_text=True)
    assert client.get("/account").status_code in (302, 303)


def test_legal_person_login_without_a_client_goes_to_the_account(app: Flask, client: Any) -> None:
    _entity, rep, code = company(app)
    html = client.get("/login?mode=entity").get_data(as_text=True)
    assert 'id="entity-login-form"' in html
    resp = client.post(
        "/login/entity",
        data={
            "csrf_token": csrf_token(html),
            "ix": "",
            "credit_code": code,
            "login": rep.email,
            "password": rep.password,
        },
    )
    assert resp.status_code == 303 and resp.headers["Location"].endswith("/account")
    page = client.get("/account/companies")
    assert page.status_code == 200


def test_cancel_on_the_legal_person_login(app: Flask, client: Any, entity_rp: Any) -> None:
    flow = Flow(client, entity_rp, scope=SCOPE)
    resp = flow.authorize()
    html = client.get(resp.headers["Location"] + "&mode=entity").get_data(as_text=True)
    cancelled = client.post(
        "/login/entity",
        data={"csrf_token": csrf_token(html), "ix": hidden(html, "ix"), "action": "cancel"},
    )
    assert query_of(cancelled.headers["Location"])["error"] == "access_denied"


# ------------------------------------------------------------------ my companies
def _signed_in(app: Flask, rp: RegisteredClient, who: Any) -> Any:
    http = app.test_client()
    Flow(http, rp, scope="openid").run(who)
    return http


def _grant(http: Any, entity_id: str, **form: str) -> Any:
    html = http.get("/account/companies").get_data(as_text=True)
    data = {"csrf_token": csrf_token(html), "role": "agent", "until": "2099-12-31", **form}
    return http.post(f"/account/companies/{entity_id}/mandates", data=data)


def test_representative_grants_agent_accepts_both_see_it(app: Flask, entity_rp: Any) -> None:
    entity, rep, _code = company(app)
    agent = person(app, name="钱七")
    rep_http = _signed_in(app, entity_rp, rep)
    html = rep_http.get("/account/companies").get_data(as_text=True)
    assert f'id="grant-{entity.id}"' in html
    resp = _grant(
        rep_http, entity.id, agent=agent.id_number, role="finance", clients=entity_rp.client_id
    )
    assert resp.status_code == 303 and "done=granted" in resp.headers["Location"]
    with app.extensions["yitong"].db.session() as session:
        row = session.scalars(select(Mandate).where(Mandate.user_id == agent.id)).one()
        assert (row.role, row.client_ids, row.granted_as) == (
            "finance",
            [entity_rp.client_id],
            "legal-representative",
        )
        assert row.accepted_at is None
        # "until 2099-12-31" is inclusive, China time: ends at 2100-01-01 00:00 +08:00.
        assert row.valid_until.isoformat().startswith("2099-12-31T16:00")
    assert _audit(app, "mandate.grant")[-1].actor == rep.id
    rep_html = rep_http.get("/account/companies").get_data(as_text=True)
    assert "钱七" in rep_html and "2099-12-31" in rep_html
    # The agent sees the offer and accepts it.
    agent_http = _signed_in(app, entity_rp, agent)
    agent_html = agent_http.get("/account/companies").get_data(as_text=True)
    assert f"accept-{row.id}" in agent_html and entity.name in agent_html
    accepted = agent_http.post(
        f"/account/mandates/{row.id}",
        data={"csrf_token": csrf_token(agent_html), "action": "accept"},
    )
    assert accepted.status_code == 303
    assert _audit(app, "mandate.accept")[-1].actor == agent.id


def test_company_admin_grants_plain_agent_cannot(app: Flask, entity_rp: Any) -> None:
    entity, rep, _code = company(app)
    admin, plain, newcomer = person(app), person(app), person(app)
    mandate(app, entity.id, rep.id, admin.id, role="company-admin")
    mandate(app, entity.id, rep.id, plain.id, role="agent")
    admin_http = _signed_in(app, entity_rp, admin)
    assert f'id="grant-{entity.id}"' in admin_http.get("/account/companies").get_data(as_text=True)
    assert _grant(admin_http, entity.id, agent=newcomer.email).status_code == 303
    assert _audit(app, "mandate.grant")[-1].details["agent"] == newcomer.id
    plain_http = _signed_in(app, entity_rp, plain)
    html = plain_http.get("/account/companies").get_data(as_text=True)
    assert f'id="grant-{entity.id}"' not in html
    refused = _grant(plain_http, entity.id, agent=newcomer.email)
    assert refused.status_code == 400
    assert "只有法定代表人或企业管理员" in refused.get_data(as_text=True)


@pytest.mark.parametrize(
    ("form", "text"),
    [
        ({"agent": "nobody@example.cn"}, "没有与该身份证号"),
        ({"until": "31/12/2099"}, "请以日期形式"),
        ({"until": "2001-01-01"}, "截止日期不能早于今天"),
        ({"role": "boss"}, "请选择列出的角色"),
        ({"clients": "no-such-client"}, "未知的服务"),
        ({"agent": "SELF"}, "经办人必须是法定代表人以外"),
    ],
)
def test_grant_form_refusals(app: Flask, entity_rp: Any, form: dict[str, str], text: str) -> None:
    entity, rep, _code = company(app)
    agent = person(app)
    http = _signed_in(app, entity_rp, rep)
    data = {"agent": agent.email, **form}
    if data["agent"] == "SELF":
        data["agent"] = rep.email
    resp = _grant(http, entity.id, **data)
    assert resp.status_code == 400 and text in resp.get_data(as_text=True)
    with app.extensions["yitong"].db.session() as session:
        assert session.scalars(select(Mandate).where(Mandate.entity_id == entity.id)).all() == []


def test_grant_needs_a_session_and_a_known_company(app: Flask, client: Any, entity_rp: Any) -> None:
    entity, rep, _code = company(app)
    html = client.get("/login").get_data(as_text=True)
    resp = client.post(
        f"/account/companies/{entity.id}/mandates", data={"csrf_token": csrf_token(html)}
    )
    assert resp.status_code == 303 and "/login" in resp.headers["Location"]
    http = _signed_in(app, entity_rp, rep)
    assert _grant(http, "no-such-company", agent=rep.email).status_code == 404


def test_representative_registers_the_company_on_the_web(app: Flask, entity_rp: Any) -> None:
    record = ACTIVE[2]
    rep = person(app, record["representative_id_number"], name="孙八")
    http = _signed_in(app, entity_rp, rep)

    def register(code: str) -> Any:
        html = http.get("/account/companies").get_data(as_text=True)
        return http.post(
            "/account/companies", data={"csrf_token": csrf_token(html), "credit_code": code}
        )

    assert register("not-a-code").status_code == 400
    someone_elses = next(
        r for r in ACTIVE if r["representative_id_number"] != record["representative_id_number"]
    )
    refused = register(someone_elses["credit_code"])
    assert refused.status_code == 400 and "法定代表人不是您" in refused.get_data(as_text=True)
    assert _audit(app, "entity.register")[-1].outcome == "failure"
    inactive = next((r for r in RECORDS if r["status"] != "active"), None)
    if inactive is not None:
        assert register(inactive["credit_code"]).status_code == 400
    done = register(record["credit_code"])
    assert done.status_code == 303 and "done=registered" in done.headers["Location"]
    html = http.get("/account/companies").get_data(as_text=True)
    assert record["name"] in html and 'id="represented"' in html
    again = register(record["credit_code"])  # already registered
    assert again.status_code == 400


def test_checklist_105_company_forms_need_the_csrf_token(app: Flask, entity_rp: Any) -> None:
    """Checklist 105: cross-origin POSTs without a CSRF token to the legal-person login, the
    company registration and the mandate grant are refused and change nothing."""
    entity, rep, code = company(app)
    http = _signed_in(app, entity_rp, rep)
    evil = {"Origin": "https://evil.example"}
    attempts = [
        ("/login/entity", {"credit_code": code, "login": rep.email, "password": rep.password}),
        ("/account/companies", {"credit_code": ACTIVE[2]["credit_code"]}),
        (
            f"/account/companies/{entity.id}/mandates",
            {"agent": person(app).email, "role": "agent", "until": "2099-01-01"},
        ),
    ]
    for path, form in attempts:
        resp = http.post(path, data=form, headers=evil)
        assert resp.status_code in (400, 403), (path, resp.status_code)
    with app.extensions["yitong"].db.session() as session:
        assert session.scalars(select(Mandate).where(Mandate.entity_id == entity.id)).all() == []

"""The account page (issue 15 item 4): services by name with what they received and when,
withdrawing a consent (revoking the service's tokens), ending another session (its services
told by back-channel logout), times in Beijing time."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator

import pytest
from flask import Flask
from jose import jwt as jose_jwt
from sqlalchemy import select

from idp.storage.models import AuditEvent, Consent, SsoSession, Token
from tests.helpers import Citizen, RegisteredClient, bearer, csrf_token
from tests.oauth.test_logout import Receiver, _bcl_client, sign_in, verify_logout_token, wait_for


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    made = [Receiver().start()]
    yield made
    for r in made:
        r.stop()


@pytest.fixture
def bcl_app(make_app: Callable[..., Flask], receivers: list[Receiver]) -> Flask:
    return make_app(outbound_test_allowlist=tuple(r.host for r in receivers))


def test_services_listed_by_name_with_what_and_when(app: Flask, citizen: Citizen) -> None:
    rp = RegisteredClient.create(app, name="社保查询", scopes=["openid", "profile", "phone"])
    http = app.test_client()
    sign_in(http, citizen, rp, scope="openid profile phone")
    page = http.get("/account").get_data(as_text=True)
    assert "社保查询" in page and rp.client_id not in page.split('data-client="')[0]
    assert "姓名" in page and "手机号码" in page  # plain words, in the page's language
    with app.extensions["yitong"].db.session() as s:
        agreed = s.scalars(select(Consent.granted_at)).one()
    beijing = agreed.astimezone(dt.timezone(dt.timedelta(hours=8))).strftime("%Y-%m-%d %H:%M")
    assert beijing in page  # Beijing time, not UTC


def test_withdrawing_consent_revokes_the_services_tokens(app: Flask, citizen: Citizen) -> None:
    rp = RegisteredClient.create(app, name="Portal")
    http = app.test_client()
    tokens = sign_in(http, citizen, rp)
    assert http.get("/userinfo", headers=bearer(tokens["access_token"])).status_code == 200
    page = http.get("/account").get_data(as_text=True)
    resp = http.post(
        f"/account/services/{rp.client_id}/withdraw", data={"csrf_token": csrf_token(page)}
    )
    assert resp.status_code == 303
    assert http.get("/userinfo", headers=bearer(tokens["access_token"])).status_code == 401
    with app.extensions["yitong"].db.session() as s:
        assert s.scalars(select(Consent)).all() == []
        live = s.scalars(select(Token).where(Token.revoked_at.is_(None))).all()
        assert live == []
        assert s.scalars(select(AuditEvent).where(AuditEvent.action == "consent.withdraw")).one()
    # Nothing left to withdraw, and another person's service is not theirs to withdraw.
    again = http.post(
        f"/account/services/{rp.client_id}/withdraw", data={"csrf_token": csrf_token(page)}
    )
    assert again.status_code == 404


def test_ending_another_session_tells_its_services(
    bcl_app: Flask, receivers: list[Receiver]
) -> None:
    app = bcl_app
    citizen = Citizen.create(app)
    rp = _bcl_client(app, receivers[0], "Portal", "portal.gov.example")
    other, this = app.test_client(), app.test_client()
    sid = str(jose_jwt.get_unverified_claims(sign_in(other, citizen, rp)["id_token"])["sid"])
    sign_in(this, citizen, rp)
    page = this.get("/account").get_data(as_text=True)
    assert f'data-sid="{sid}"' in page
    resp = this.post(f"/account/sessions/{sid}/end", data={"csrf_token": csrf_token(page)})
    assert resp.status_code == 303
    app.extensions["yitong"].logout.wait()
    wait_for(lambda: bool(receivers[0].tokens))
    claims = verify_logout_token(app.test_client(), receivers[0].tokens[-1], rp.client_id)
    assert claims["sid"] == sid
    assert other.get("/account").status_code == 302
    assert this.get("/account").status_code == 200


def test_cannot_end_someone_elses_or_the_current_session(app: Flask, citizen: Citizen) -> None:
    rp = RegisteredClient.create(app, name="Portal")
    stranger = Citizen.create(app)
    theirs, mine = app.test_client(), app.test_client()
    sign_in(theirs, stranger, rp)
    sign_in(mine, citizen, rp)
    with app.extensions["yitong"].db.session() as s:
        rows = {r.user_id: r.id for r in s.scalars(select(SsoSession))}
    page = mine.get("/account").get_data(as_text=True)
    for sid in (rows[stranger.id], rows[citizen.id]):
        resp = mine.post(f"/account/sessions/{sid}/end", data={"csrf_token": csrf_token(page)})
        assert resp.status_code == 404
    assert theirs.get("/account").status_code == 200
    assert mine.get("/account").status_code == 200


def test_consent_page_in_plain_words_names_department_purpose_and_withdrawal(
    app: Flask, citizen: Citizen
) -> None:
    """Issue 15 item 4: no raw scope or claim names; the department, the stated purpose, that
    the choice is remembered and where to withdraw it."""
    from sqlalchemy import update

    from idp.storage.models import Client, Department
    from tests.helpers import Flow

    rp = RegisteredClient.create(app, name="社保查询", scopes=["openid", "profile", "phone"])
    with app.extensions["yitong"].db.transaction() as s:
        s.add(Department(id="hrss", name="省人力资源和社会保障厅"))
        s.flush()
        s.execute(
            update(Client)
            .where(Client.client_id == rp.client_id)
            .values(department_id="hrss", purpose="查询社保缴费记录")
        )
    http = app.test_client()
    flow = Flow(http, rp, scope="openid profile phone")
    resp = flow.login(flow.authorize(), citizen.email, citizen.password)
    while "/consent" not in resp.headers["Location"]:
        resp = http.get(resp.headers["Location"])
    page = http.get(resp.headers["Location"]).get_data(as_text=True)
    assert "省人力资源和社会保障厅" in page and "查询社保缴费记录" in page
    assert 'id="consent-remembered"' in page and "撤回" in page
    scopes = page.split('id="consent-scopes"')[1].split("</ul>")[0]
    assert "姓名" in scopes and "手机号码" in scopes
    for raw in ("openid", "given_name", "phone_number", ": sub"):
        assert raw not in scopes


def test_signing_out_all_other_sessions(bcl_app: Flask, receivers: list[Receiver]) -> None:
    app = bcl_app
    citizen = Citizen.create(app)
    rp = _bcl_client(app, receivers[0], "Portal", "portal.gov.example")
    first, second, this = app.test_client(), app.test_client(), app.test_client()
    for http in (first, second, this):
        sign_in(http, citizen, rp)
    page = this.get("/account").get_data(as_text=True)
    assert 'id="end-others"' in page
    resp = this.post("/account/sessions/end-others", data={"csrf_token": csrf_token(page)})
    assert resp.status_code == 303
    app.extensions["yitong"].logout.wait()
    wait_for(lambda: len(receivers[0].tokens) >= 2)
    assert first.get("/account").status_code == 302 and second.get("/account").status_code == 302
    assert this.get("/account").status_code == 200
    # Not signed in: nothing to end, to the login page.
    assert app.test_client().post("/account/sessions/end-others").status_code in (302, 303, 400)

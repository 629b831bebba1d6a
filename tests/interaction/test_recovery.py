"""Forgotten password (issue 15 item 1): reset by a confirmed phone or e-mail plus the ID
number; the same answer for unknown accounts (checklist 83); wrong codes and expired links
refused; a second factor required; every other session ended with back-channel logout."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from jose import jwt as jose_jwt
from sqlalchemy import select

from idp.interaction import recovery
from idp.interaction.outbox import read_outbox
from idp.storage.models import AuditEvent, SsoSession, Token, User
from tests.helpers import Citizen, csrf_token
from tests.interaction.mfa_kit import code as totp_code
from tests.interaction.mfa_kit import enrol_totp, login_page_post
from tests.oauth.test_logout import Receiver, _bcl_client, sign_in, verify_logout_token, wait_for

NEW_PASSWORD = "a brand new passphrase 2026"


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    made = [Receiver().start()]
    yield made
    for r in made:
        r.stop()


@pytest.fixture
def bcl_app(make_app: Callable[..., Flask], receivers: list[Receiver]) -> Flask:
    return make_app(outbound_test_allowlist=tuple(r.host for r in receivers))


def confirmed(app: Flask, phone: bool = True, email: bool = True) -> Citizen:
    citizen = Citizen.create(app)
    services = app.extensions["yitong"]
    with services.db.transaction() as session:
        row = session.get(User, citizen.id)
        assert row is not None
        row.phone_verified, row.email_verified = phone, email
    return citizen


def post_form(http: FlaskClient, path: str, data: dict[str, str], page: str | None = None) -> Any:
    html = http.get(page or path).get_data(as_text=True)
    return http.post(path, data={"csrf_token": csrf_token(html), **data})


def forgot(http: FlaskClient, login: str, id_number: str) -> Any:
    return post_form(http, "/password/forgot", {"login": login, "id_number": id_number})


def outbox(app: Flask, destination: str) -> list[str]:
    return [m.body for m in read_outbox(app.extensions["yitong"].db, destination=destination)]


def sms_code(app: Flask, phone: str) -> str:
    bodies = outbox(app, phone)
    assert bodies, "no SMS in the outbox"
    found = re.search(r"\b(\d{6})\b", bodies[-1])
    assert found
    return found.group(1)


def mailed_link(app: Flask, address: str) -> str:
    bodies = outbox(app, address)
    assert bodies, "no e-mail in the outbox"
    found = re.search(r"http://localhost(/password/reset/\S+)", bodies[-1])
    assert found
    return found.group(1)


def new_password(http: FlaskClient, **extra: str) -> Any:
    data = {"new_password": NEW_PASSWORD, "new_password_confirm": NEW_PASSWORD, **extra}
    return post_form(http, "/password/reset", data)


def can_log_in(app: Flask, login: str, password: str) -> bool:
    return bool(login_page_post(app.test_client(), login, password).status_code == 303)


def by_phone_to_step3(app: Flask, http: FlaskClient, citizen: Citizen) -> None:
    resp = forgot(http, citizen.phone, citizen.id_number)
    assert resp.status_code == 303 and resp.headers["Location"].endswith("/password/forgot/code")
    resp = post_form(http, "/password/forgot/code", {"code": sms_code(app, citizen.phone)})
    assert resp.status_code == 303 and resp.headers["Location"].endswith("/password/reset")


# ====================================================================== by phone
def test_reset_by_phone_end_to_end(app: Flask) -> None:
    citizen = confirmed(app)
    http = app.test_client()
    login_page = http.get("/login").get_data(as_text=True)
    assert "/password/forgot" in login_page and "忘记密码" in login_page
    by_phone_to_step3(app, http, citizen)
    page = http.get("/password/reset").get_data(as_text=True)
    assert 'id="reset-form"' in page and "reset-second-factor" not in page
    resp = new_password(http)
    assert resp.status_code == 303 and resp.headers["Location"].endswith("/password/done")
    assert "reset-done" in http.get(resp.headers["Location"]).get_data(as_text=True)
    assert can_log_in(app, citizen.phone, NEW_PASSWORD)
    assert not can_log_in(app, citizen.phone, citizen.password)
    with app.extensions["yitong"].db.session() as s:
        event = s.scalars(
            select(AuditEvent).where(AuditEvent.action == "user.password_reset")
        ).one()
    assert event.details["via"] == "sms"
    # The proof is spent: the reset page sends the browser back to the start.
    assert http.get("/password/reset").status_code == 302


def test_unknown_account_gets_the_same_answer(app: Flask) -> None:
    """Checklist 83: nothing tells whether the number, the ID number or the account exists."""
    citizen = confirmed(app)
    other = Citizen.create(app)  # a real ID number of another account
    answers = []
    for login, id_number in (
        (citizen.phone, citizen.id_number),  # matches
        ("+8613999990000", citizen.id_number),  # no such number
        (citizen.phone, other.id_number),  # wrong ID number
    ):
        http = app.test_client()
        resp = forgot(http, login, id_number)
        page = http.get(resp.headers["Location"])
        masked = re.sub(r"\+86\d{3}\*{4}\d{4}", "PHONE", page.get_data(as_text=True))
        masked = re.sub(r'name="csrf_token" value="[^"]*"', "CSRF", masked)
        answers.append((resp.status_code, resp.headers["Location"], page.status_code, masked))
    assert answers[0] == answers[1] == answers[2]
    assert len(outbox(app, citizen.phone)) == 1  # only the match got a code
    assert outbox(app, "+8613999990000") == []
    mail = [app.test_client() for _ in range(2)]
    known = forgot(mail[0], citizen.email, citizen.id_number)
    unknown = forgot(mail[1], "nobody@example.cn", citizen.id_number)
    assert (known.status_code, known.headers["Location"]) == (
        unknown.status_code,
        unknown.headers["Location"],
    )
    pages = [
        re.sub(r'value="[^"]*"', "", m.get(r.headers["Location"]).get_data(as_text=True))
        for m, r in zip(mail, (known, unknown), strict=True)
    ]
    assert pages[0] == pages[1]


def test_unconfirmed_phone_is_no_reset_channel(app: Flask) -> None:
    citizen = confirmed(app, phone=False)
    resp = forgot(app.test_client(), citizen.phone, citizen.id_number)
    assert resp.status_code == 303
    assert outbox(app, citizen.phone) == []


def test_wrong_code_is_refused_and_counted(app: Flask) -> None:
    citizen = confirmed(app)
    http = app.test_client()
    forgot(http, citizen.phone, citizen.id_number)
    right = sms_code(app, citizen.phone)
    wrong = "000000" if right != "000000" else "111111"
    resp = post_form(http, "/password/forgot/code", {"code": wrong})
    assert resp.status_code == 401
    assert http.get("/password/reset").status_code == 302  # nothing proven
    assert can_log_in(app, citizen.phone, citizen.password)  # the password is unchanged


def test_lockout_holds_as_for_login(app: Flask) -> None:
    """Wrong ID numbers count on the same counter as wrong passwords for that name."""
    citizen = confirmed(app)
    other = Citizen.create(app)
    services = app.extensions["yitong"]
    free = services.policies.get_int("lockout.free_attempts")
    http = app.test_client()
    statuses = [forgot(http, citizen.phone, other.id_number).status_code for _ in range(free + 1)]
    assert statuses[:free] == [303] * free
    assert statuses[free] == 429


# ====================================================================== by e-mail
def test_reset_by_email_end_to_end(app: Flask) -> None:
    citizen = confirmed(app, phone=False)
    http = app.test_client()
    resp = forgot(
        http, citizen.email.upper().replace("@EXAMPLE.CN", "@example.cn").lower(), citizen.id_number
    )
    assert resp.headers["Location"].endswith("/password/forgot/sent")
    link = mailed_link(app, citizen.email)
    opened = http.get(link)
    assert opened.status_code == 302 and opened.headers["Location"].endswith("/password/reset")
    assert new_password(http).status_code == 303
    assert can_log_in(app, citizen.email, NEW_PASSWORD)
    # The link works once: opening it again is refused.
    assert app.test_client().get(link).status_code == 400


def test_expired_link_is_refused(app: Flask) -> None:
    citizen = confirmed(app, phone=False)
    with app.test_request_context():
        user = app.extensions["yitong"].db.session().get(User, citizen.id)
        past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=recovery.LINK_TTL + 120)
        link = recovery.reset_link(user, now=past)
        fresh = recovery.reset_link(user)
    path = link.removeprefix("http://localhost")
    assert app.test_client().get(path).status_code == 400
    tampered = fresh.removeprefix("http://localhost")[:-2] + "xx"
    assert app.test_client().get(tampered).status_code == 400
    assert app.test_client().get(fresh.removeprefix("http://localhost")).status_code == 302


# ====================================================================== second factor
def test_second_factor_required(app: Flask) -> None:
    citizen = confirmed(app, phone=False)
    secret = enrol_totp(app, citizen.id)
    http = app.test_client()
    forgot(http, citizen.email, citizen.id_number)
    assert http.get(mailed_link(app, citizen.email)).status_code == 302
    assert "reset-second-factor" in http.get("/password/reset").get_data(as_text=True)
    assert new_password(http).status_code == 400  # no code: refused
    assert new_password(http, method="totp", code="000000").status_code in (400, 401)
    assert can_log_in(app, citizen.email, citizen.password)
    resp = new_password(http, method="totp", code=totp_code(secret))
    assert resp.status_code == 303, resp.get_data(as_text=True)
    with app.extensions["yitong"].db.session() as s:
        event = s.scalars(
            select(AuditEvent).where(AuditEvent.action == "user.password_reset")
        ).one()
    assert event.details["second_factor"] is True


def test_sms_second_factor_by_email(app: Flask) -> None:
    """An account whose second factor is its phone confirms an e-mail reset by SMS."""
    citizen = confirmed(app)
    http = app.test_client()
    forgot(http, citizen.email, citizen.id_number)
    http.get(mailed_link(app, citizen.email))
    assert new_password(http).status_code == 400
    assert post_form(http, "/password/reset", {"action": "sms_send"}).status_code == 200
    resp = new_password(http, method="sms", code=sms_code(app, citizen.phone))
    assert resp.status_code == 303


# ====================================================================== other sessions
def _sid_of(tokens: dict[str, Any]) -> str:
    return str(jose_jwt.get_unverified_claims(tokens["id_token"])["sid"])


def test_reset_ends_other_sessions_with_back_channel_logout(
    bcl_app: Flask, receivers: list[Receiver]
) -> None:
    app = bcl_app
    citizen = confirmed(app, phone=False)  # no SMS factor: the sign-in needs no second step
    rp = _bcl_client(app, receivers[0], "Portal", "portal.gov.example")
    other = app.test_client()
    tokens = sign_in(other, citizen, rp)
    sid = _sid_of(tokens)
    http = app.test_client()
    forgot(http, citizen.email, citizen.id_number)
    assert http.get(mailed_link(app, citizen.email)).status_code == 302
    assert new_password(http).status_code == 303
    app.extensions["yitong"].logout.wait()
    wait_for(lambda: bool(receivers[0].tokens))
    claims = verify_logout_token(app.test_client(), receivers[0].tokens[-1], rp.client_id)
    assert claims["sid"] == sid
    assert other.get("/account").status_code == 302
    with app.extensions["yitong"].db.session() as s:
        assert s.get(SsoSession, sid).ended_at is not None
        live = s.scalars(
            select(Token).where(Token.user_id == citizen.id, Token.revoked_at.is_(None))
        ).all()
    assert live == []

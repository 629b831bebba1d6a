"""The account's sign-in security page (SECURITY-CHECKLIST items 68, 105 and bad input)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select, update

from idp.storage.models import Grant, SsoSession
from tests.helpers import Flow, csrf_token
from tests.interaction.mfa_kit import (
    code,
    enrol_totp,
    login_page_post,
    services,
    session_row,
    submit,
    to_challenge,
)

POST_ENDPOINTS = [
    "/account/security/totp",
    "/account/security/totp/confirm",
    "/account/security/totp/delete",
    "/account/security/recovery",
    "/account/security/webauthn/delete",
    "/account/security/phone",
    "/account/security/phone/verify",
    "/account/security/password",
    "/account/security/reauth",
    "/login/mfa",
    "/login/mfa/enrol",
    "/login/step-up",
]
JSON_ENDPOINTS = [
    "/account/security/webauthn/options",
    "/account/security/webauthn",
    "/login/mfa/webauthn/options",
    "/login/mfa/webauthn",
    "/login/passkey/options",
    "/login/passkey",
]


def _signed_in(app: Flask, citizen: Any) -> Any:
    client = app.test_client()
    client.set_cookie("yitong_lang", "en")
    assert login_page_post(client, citizen.email, citizen.password).status_code == 303
    return client


def _age(app: Flask, user_id: str, minutes: int = 20) -> None:
    row = session_row(app, user_id)
    assert row is not None
    with services(app).db.transaction() as s:
        s.execute(
            update(SsoSession)
            .where(SsoSession.id == row.id)
            .values(auth_time=row.auth_time - dt.timedelta(minutes=minutes))
        )


def test_the_page_lists_factors_and_recent_sign_ins(app: Flask, citizen: Any, rp: Any) -> None:
    secret = enrol_totp(app, citizen.id)
    flow = Flow(app.test_client(), rp)
    flow.http.set_cookie("yitong_lang", "en")
    html = to_challenge(flow, citizen)
    flow.follow_to_code(submit(flow.http, html, "totp", code(secret)))
    page = flow.http.get("/account/security", environ_base={"REMOTE_ADDR": "192.0.2.5"})
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    body = page.get_data(as_text=True)
    assert 'id="totp-status">Set up.' in body
    signins = body.split('id="signins"')[1].split("</table>")[0]
    assert "authenticator app, password" in signins  # the amr in words (issue 15 item 6)
    assert "two-step verification" in body  # this session's level, in words


def test_item68_a_20_minute_old_session_must_reauthenticate_for_changes(
    app: Flask, citizen: Any
) -> None:
    client = _signed_in(app, citizen)
    _age(app, citizen.id)
    html = client.get("/account/security").get_data(as_text=True)
    assert 'id="reauth-note"' in html
    for path in ("/account/security/totp", "/account/security/recovery"):
        resp = client.post(path, data={"csrf_token": csrf_token(html)})
        assert resp.status_code == 303 and "/account/security/reauth" in resp.headers["Location"]
    js = client.post(
        "/account/security/webauthn/options", json={}, headers={"X-CSRFToken": csrf_token(html)}
    )
    assert js.status_code == 403 and js.get_json()["error"] == "access_denied"

    form = client.get("/account/security/reauth").get_data(as_text=True)
    wrong = client.post(
        "/account/security/reauth",
        data={"csrf_token": csrf_token(form), "password": "not the password at all"},
    )
    assert wrong.status_code == 401
    ok = client.post(
        "/account/security/reauth",
        data={
            "csrf_token": csrf_token(form),
            "password": citizen.password,
            "next": "//evil.example",
        },
    )
    assert ok.status_code == 303 and ok.headers["Location"].endswith("/account/security")
    assert (
        client.post("/account/security/totp", data={"csrf_token": csrf_token(html)}).status_code
        == 200
    )


def test_item68_password_change_signs_out_the_other_sessions(
    app: Flask, citizen: Any, rp: Any
) -> None:
    elsewhere = Flow(app.test_client(), rp)
    assert "code" in elsewhere.run(citizen)
    client = _signed_in(app, citizen)
    current = session_row(app, citizen.id)
    assert current is not None
    form = client.get("/account/security/password").get_data(as_text=True)
    assert 'id="sign_out_others"' in form
    resp = client.post(
        "/account/security/password",
        data={
            "csrf_token": csrf_token(form),
            "current_password": citizen.password,
            "new_password": "another long passphrase here",
            "new_password_confirm": "another long passphrase here",
            "sign_out_others": "1",
        },
    )
    assert resp.status_code == 303
    with services(app).db.session() as s:
        live = list(
            s.scalars(
                select(SsoSession.id).where(
                    SsoSession.user_id == citizen.id, SsoSession.ended_at.is_(None)
                )
            )
        )
        assert live == [current.id]
        assert all(
            g.revoked_at is not None
            for g in s.scalars(select(Grant).where(Grant.user_id == citizen.id))
        )
    assert "/login" in elsewhere.authorize().headers["Location"]
    assert client.get("/account/security").status_code == 200  # this one stays


# ----------------------------------------------------------------------------- item 105
@pytest.mark.parametrize("path", POST_ENDPOINTS + JSON_ENDPOINTS)
def test_item105_no_csrf_token_no_action(app: Flask, citizen: Any, path: str) -> None:
    client = _signed_in(app, citizen)
    resp = client.post(path, data={"code": "123456"}, headers={"Origin": "https://evil.example"})
    assert resp.status_code in (400, 403)
    assert client.get(path).status_code in (405, 200, 302, 401)
    if path in JSON_ENDPOINTS:
        assert client.get(path).status_code == 405


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("path", JSON_ENDPOINTS)
@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"null",
        b"[]",
        b'{"credential": "x"}',
        b'{"credential": {"id": 5}}',
        b'{"credential": {"id": "AAAA", "rawId": "AAAA", "response": {}}}',
        b"\xff\xfe",
    ],
)
def test_bad_json_never_gives_a_500(app: Flask, citizen: Any, path: str, body: bytes) -> None:
    client = _signed_in(app, citizen)
    token = csrf_token(client.get("/account/security").get_data(as_text=True))
    resp = client.post(
        path, data=body, headers={"X-CSRFToken": token, "Content-Type": "application/json"}
    )
    assert resp.status_code < 500, (path, body, resp.get_data(as_text=True)[:300])


@pytest.mark.parametrize("path", POST_ENDPOINTS)
def test_bad_forms_never_give_a_500(app: Flask, citizen: Any, path: str) -> None:
    client = _signed_in(app, citizen)
    token = csrf_token(client.get("/account/security").get_data(as_text=True))
    for data in (
        {"code": "%00" * 20, "method": "totp", "ix": "garbage"},
        {"code": "x" * 5000, "method": "nope", "phone": "+" * 50, "credential": "\x00"},
        {"method": "recovery", "code": "", "password": "x" * 300_000},
    ):
        resp = client.post(path, data={"csrf_token": token, **data})
        assert resp.status_code < 500, (path, data, resp.get_data(as_text=True)[:300])


@pytest.mark.parametrize("login", ["a\x00b@example.cn", "1380000\x000001", "\x00", "x\x1by"])
def test_item111_control_characters_in_login_names_are_a_clean_refusal(
    app: Flask, citizen: Any, login: str
) -> None:
    client = app.test_client()
    assert login_page_post(client, login, "some password 123456").status_code == 400
    # A NUL in any parameter is refused before the view (idp.request_guards, issue 14 item 1):
    # 400 for every account alike, so it tells nothing about the account either.
    assert login_page_post(client, citizen.email, "pass\x00word 1234567").status_code == 400

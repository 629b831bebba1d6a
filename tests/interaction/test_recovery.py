"""Recovery codes (SECURITY-CHECKLIST item 76; NIST SP 800-63B-4 §3.1.2 look-up secrets)."""

from __future__ import annotations

import threading
from typing import Any

from flask import Flask
from sqlalchemy import select

from idp.interaction import mfa
from idp.storage.models import RecoveryCode, SsoSession, TotpCredential
from tests.helpers import Flow, csrf_token
from tests.interaction.mfa_kit import (
    code,
    enrol_totp,
    login_page_post,
    page,
    services,
    session_row,
    submit,
    to_challenge,
)


def _codes(app: Flask, user_id: str) -> list[str]:
    with services(app).db.transaction() as s:
        return mfa.new_recovery_codes(s, services(app).code_secret, user_id)


def test_item76_ten_codes_stored_only_as_keyed_digests(app: Flask, citizen: Any) -> None:
    codes = _codes(app, citizen.id)
    assert len(codes) == len(set(codes)) == 10
    with services(app).db.session() as s:
        rows = list(s.scalars(select(RecoveryCode).where(RecoveryCode.user_id == citizen.id)))
    assert len(rows) == 10
    stored = {r.digest for r in rows}
    assert not stored & set(codes) and all(len(d) == 64 for d in stored)
    assert not any(c.replace("-", "") in d for c in codes for d in stored)


def test_item76_a_recovery_code_works_once_as_the_second_factor(
    app: Flask, citizen: Any, rp: Any
) -> None:
    enrol_totp(app, citizen.id)
    codes = _codes(app, citizen.id)
    flow = Flow(app.test_client(), rp)
    html = to_challenge(flow, citizen)
    assert 'id="recovery-section"' in html
    typed = codes[3].upper().replace("-", " ")  # as people type it
    params = flow.follow_to_code(submit(flow.http, html, "recovery", typed))
    assert "code" in params
    row = session_row(app, citizen.id)
    assert row is not None and set(row.factors) == {"pwd", "recovery"}
    assert sorted(row.amr) == ["mfa", "otp", "pwd"]

    again = Flow(app.test_client(), rp)
    html = to_challenge(again, citizen)
    assert submit(again.http, html, "recovery", codes[3]).status_code == 401


def test_item76_regenerating_invalidates_the_old_codes_and_shows_new_ones_once(
    app: Flask, citizen: Any, rp: Any
) -> None:
    secret = enrol_totp(app, citizen.id)
    old = _codes(app, citizen.id)
    flow = Flow(app.test_client(), rp)
    html = to_challenge(flow, citizen)
    flow.follow_to_code(submit(flow.http, html, "totp", code(secret)))
    flow.http.set_cookie("yitong_lang", "en")
    security = flow.http.get("/account/security").get_data(as_text=True)
    assert "10 unused codes" in security
    shown = flow.http.post(
        "/account/security/recovery", data={"csrf_token": csrf_token(security)}
    ).get_data(as_text=True)
    new = [c.split("</code>")[0] for c in shown.split("<li><code>")[1:]]
    assert len(new) == 10 and not set(new) & set(old)
    after = flow.http.get("/account/security").get_data(as_text=True)
    assert not any(c in after for c in new)  # never shown again
    secret_key = services(app).code_secret
    assert not mfa.recovery_code_valid(services(app).db, secret_key, citizen.id, old[0])
    assert mfa.recovery_code_valid(services(app).db, secret_key, citizen.id, new[0])


def test_item76_parallel_use_of_one_code_succeeds_once(app: Flask, citizen: Any) -> None:
    the_code = _codes(app, citizen.id)[0]
    secret_key = services(app).code_secret
    barrier = threading.Barrier(8)
    results: list[bool] = []

    def worker() -> None:
        barrier.wait()
        results.append(mfa.use_recovery_code(services(app).db, secret_key, citizen.id, the_code))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results.count(True) == 1 and len(results) == 8


def test_item76_changing_the_password_never_disables_the_second_factor(
    app: Flask, citizen: Any, rp: Any
) -> None:
    secret = enrol_totp(app, citizen.id)
    flow = Flow(app.test_client(), rp)
    html = to_challenge(flow, citizen)
    flow.follow_to_code(submit(flow.http, html, "totp", code(secret)))
    form = flow.http.get("/account/security/password").get_data(as_text=True)
    changed = flow.http.post(
        "/account/security/password",
        data={
            "csrf_token": csrf_token(form),
            "current_password": citizen.password,
            "new_password": "a completely new passphrase",
            "new_password_confirm": "a completely new passphrase",
        },
    )
    assert changed.status_code == 303
    with services(app).db.session() as s:
        assert s.get(TotpCredential, citizen.id) is not None
    other = app.test_client()
    resp = login_page_post(other, citizen.email, "a completely new passphrase")
    assert "/login/mfa" in resp.headers["Location"]  # the password alone is still not enough


def test_item76_the_factor_cannot_be_removed_with_the_password_alone(
    app: Flask, citizen: Any
) -> None:
    enrol_totp(app, citizen.id)
    client = app.test_client()
    resp = login_page_post(client, citizen.email, citizen.password)
    assert "/login/mfa" in resp.headers["Location"]
    page(client, resp)
    html = client.get("/login").get_data(as_text=True)
    removal = client.post("/account/security/totp/delete", data={"csrf_token": csrf_token(html)})
    assert removal.status_code in (302, 303) and "/login" in removal.headers["Location"]
    with services(app).db.session() as s:
        assert s.get(TotpCredential, citizen.id) is not None
        assert s.scalars(select(SsoSession).where(SsoSession.user_id == citizen.id)).first() is None

"""Cancelling an account closing (注销) needs every factor the account has, like a login
(issue 15 item 5): a stolen password alone must not undo a closing.

- password + TOTP: the closing page asks for the code; a wrong code is refused (counted on
  the account's second-factor counter and audited), the password is not asked again, the
  right code keeps the account and signs in at the two-factor level;
- no second factor: the password is enough (tests/interaction/test_citizen_rights.py);
- an SMS code login (one factor): the password and the second factor are both asked;
- a security key as the only second factor: the form cannot take it, the page says to sign
  in with the key; a verified passkey is a whole login and may keep the account;
- negative: no cancel without the page's proof in this browser, a forged ``method``, a
  request to send an SMS to an account without an SMS factor.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from idp.storage.models import AuditEvent, SsoSession, User, WebAuthnCredential, utcnow
from tests.helpers import Citizen, csrf_token
from tests.interaction.mfa_kit import code, enrol_totp, other_code, set_policy
from tests.interaction.test_citizen_rights import confirm_phone, find, login, sms_login
from tests.interaction.test_recovery import post_form, sms_code


def closing(app: Flask, citizen: Citizen) -> None:
    with app.extensions["yitong"].db.transaction() as s:
        s.execute(
            update(User)
            .where(User.id == citizen.id)
            .values(status="closing", close_after=utcnow() + dt.timedelta(days=3))
        )


def cancel(http: FlaskClient, page: Any, **form: str) -> Any:
    html = page.get_data(as_text=True)
    return http.post("/login/closing/cancel", data={"csrf_token": csrf_token(html), **form})


def sessions_of(app: Flask, user_id: str) -> list[SsoSession]:
    with app.extensions["yitong"].db.session() as s:
        return list(s.scalars(select(SsoSession).where(SsoSession.user_id == user_id)))


def failures(app: Flask, user_id: str) -> list[dict[str, Any]]:
    with app.extensions["yitong"].db.session() as s:
        rows = s.scalars(
            select(AuditEvent).where(
                AuditEvent.action == "mfa.failure", AuditEvent.actor == user_id
            )
        )
        return [dict(r.details or {}) for r in rows]


def test_password_alone_does_not_cancel_when_the_account_has_a_second_factor(
    app: Flask, citizen: Citizen
) -> None:
    secret = enrol_totp(app, citizen.id)
    closing(app, citizen)
    http = app.test_client()
    offer = login(http, citizen.email)
    html = offer.get_data(as_text=True)
    assert offer.status_code == 200 and 'id="closing-second-factor"' in html
    assert 'id="closing-password"' not in html  # the password was just proven
    # The button alone (what was enough before) is refused: nothing changes.
    bare = cancel(http, offer, action="cancel")
    assert bare.status_code == 400 and 'id="closing-error"' in bare.get_data(as_text=True)
    assert find(app, id=citizen.id).status == "closing" and sessions_of(app, citizen.id) == []
    # A method the account does not have is refused the same way.
    forged = cancel(http, offer, method="sms", code="123456")
    assert forged.status_code == 400 and find(app, id=citizen.id).status == "closing"
    # A wrong code: refused, counted and audited; the page still needs no password.
    wrong = cancel(http, offer, method="totp", code=other_code(secret))
    html = wrong.get_data(as_text=True)
    assert wrong.status_code == 401 and 'id="closing-password"' not in html
    assert [f.get("mode") for f in failures(app, citizen.id)] == ["closing_cancel"]
    assert find(app, id=citizen.id).status == "closing"
    # The right code keeps the account and signs in with both factors.
    kept = cancel(http, wrong, method="totp", code=code(secret))
    assert kept.status_code == 303
    assert find(app, id=citizen.id).status == "active"
    [session] = sessions_of(app, citizen.id)
    assert session.acr == "urn:yitong:acr:mfa" and {"pwd", "otp"} <= set(session.amr)
    assert http.get("/account").status_code == 200


def test_recovery_code_also_serves_and_is_used_up(app: Flask, citizen: Citizen) -> None:
    enrol_totp(app, citizen.id)
    services = app.extensions["yitong"]
    from idp.interaction import mfa

    with services.db.transaction() as s:
        codes = mfa.new_recovery_codes(s, services.code_secret, citizen.id)
    closing(app, citizen)
    http = app.test_client()
    offer = login(http, citizen.email)
    assert 'value="recovery"' in offer.get_data(as_text=True)
    kept = cancel(http, offer, method="recovery", code=codes[0])
    assert kept.status_code == 303 and find(app, id=citizen.id).status == "active"
    assert not mfa.recovery_code_valid(services.db, services.code_secret, citizen.id, codes[0])


def test_sms_code_login_must_add_the_password_and_a_second_factor(
    app: Flask, citizen: Citizen
) -> None:
    """A one-factor SMS login (where the policy lets it sign in alone): the page asks for
    the password too; the SMS code already is the possession factor."""
    confirm_phone(app, citizen)
    set_policy(app, "mfa.always_when_enrolled", False)  # the SMS code alone signs in
    closing(app, citizen)
    http = app.test_client()
    sms_login(http, citizen.phone)
    offer = post_form(http, "/login/sms/code", {"code": sms_code(app, citizen.phone)})
    html = offer.get_data(as_text=True)
    assert offer.status_code == 200 and 'id="closing-password"' in html
    assert 'id="closing-second-factor"' not in html  # the SMS code was the possession factor
    wrong = cancel(http, offer, password="not the password at all")
    assert wrong.status_code == 401 and find(app, id=citizen.id).status == "closing"
    assert 'id="closing-password"' in wrong.get_data(as_text=True)
    kept = cancel(http, wrong, password=citizen.password)
    assert kept.status_code == 303 and find(app, id=citizen.id).status == "active"


def test_sms_second_factor_is_sent_on_the_closing_page(app: Flask, citizen: Citizen) -> None:
    confirm_phone(app, citizen)  # the SMS second factor
    closing(app, citizen)
    http = app.test_client()
    offer = login(http, citizen.email)
    assert 'id="closing-sms-send"' in offer.get_data(as_text=True)
    sent = cancel(http, offer, action="sms_send")
    assert sent.status_code == 200 and 'id="closing-info"' in sent.get_data(as_text=True)
    kept = cancel(http, sent, method="sms", code=sms_code(app, citizen.phone))
    assert kept.status_code == 303 and find(app, id=citizen.id).status == "active"


def test_no_sms_to_an_account_without_an_sms_factor(app: Flask, citizen: Citizen) -> None:
    enrol_totp(app, citizen.id)
    closing(app, citizen)
    http = app.test_client()
    offer = login(http, citizen.email)
    refused = cancel(http, offer, action="sms_send")
    assert refused.status_code == 400 and find(app, id=citizen.id).status == "closing"


def test_security_key_only_account_is_sent_to_its_key(app: Flask, citizen: Citizen) -> None:
    with app.extensions["yitong"].db.transaction() as s:
        s.add(
            WebAuthnCredential(
                credential_id="Y2xvc2luZy10ZXN0",
                user_id=citizen.id,
                public_key=b"\x00",
                sign_count=0,
                name="key",
            )
        )
    closing(app, citizen)
    http = app.test_client()
    offer = login(http, citizen.email)
    html = offer.get_data(as_text=True)
    assert 'id="closing-passkey"' in html and 'id="closing-cancel"' not in html
    refused = cancel(http, offer, action="cancel")
    assert refused.status_code == 403 and find(app, id=citizen.id).status == "closing"


def test_cancel_needs_the_proof_kept_by_this_browser(app: Flask, citizen: Citizen) -> None:
    closing(app, citizen)
    http = app.test_client()
    offer = login(http, citizen.email)
    stranger = app.test_client()
    page = stranger.get("/login").get_data(as_text=True)
    resp = stranger.post("/login/closing/cancel", data={"csrf_token": csrf_token(page)})
    assert resp.status_code == 303 and "/login" in resp.headers["Location"]
    assert find(app, id=citizen.id).status == "closing"
    assert stranger.get("/login/closing").status_code == 302  # nothing to show
    assert http.get("/login/closing").status_code == 200  # the browser that proved it
    assert cancel(http, offer).status_code == 303  # no second factor: the password was all

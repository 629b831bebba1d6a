"""The citizen's flows of issue 15 items 2, 3 and 5, end to end through the pages:

- confirmed contact points: a phone by SMS code, an e-mail by its link (the GET only shows a
  button), a wrong code, an expired or reused link; an unconfirmed contact point is no login
  name and blocks nobody (checklist 81); ``email_verified`` tells the truth;
- the squatter released: an ID number claimed by an account below L3 does not refuse the
  real holder, whose L3+ verification (``yitong verify``) takes it, audited and told;
- SMS-code login: one possession factor (alone only where no second factor is needed, else
  with the password), the same answer for unknown numbers (checklist 83), wrong codes counted;
- PIPL: the data page, the JSON export, corrections, closing with cooling-off (sessions and
  tokens ended, services told by back-channel logout), cancel by signing in, completion by
  ``yitong users close-due``.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from idp.accounts.assurance import AssuranceError, record_verification
from idp.interaction import contacts
from idp.oauth.claims import available_claims
from idp.storage.models import AuditEvent, Consent, SsoSession, Token, User, utcnow
from tests import test_cli as _cli
from tests.helpers import IDS, PASSWORD, Citizen, RegisteredClient, bearer, csrf_token
from tests.interaction.mfa_kit import set_policy
from tests.interaction.test_recovery import outbox, post_form, sms_code
from tests.oauth.test_logout import Receiver, _bcl_client, sign_in, verify_logout_token, wait_for

run = _cli.run  # the CLI fixture of tests/test_cli.py, shared rather than copied


def user_row(app: Flask, user_id: str) -> User:
    with app.extensions["yitong"].db.session() as s:
        row = s.get(User, user_id)
        assert row is not None
        return row


def actions(app: Flask) -> list[str]:
    with app.extensions["yitong"].db.session() as s:
        return list(s.scalars(select(AuditEvent.action).order_by(AuditEvent.seq)))


def login(http: FlaskClient, name: str, password: str = PASSWORD) -> Any:
    return post_form(http, "/login", {"login": name, "password": password})


def register(http: FlaskClient, n: int, **fields: str) -> Any:
    data = {
        "name": "李四",
        "id_number": IDS["resident_ids"][n],
        "phone": f"1390000{n:04d}",
        "email": f"li{n}@example.cn",
        "password": PASSWORD,
        "password_confirm": PASSWORD,
        **fields,
    }
    return post_form(http, "/register", data)


def confirm_link(app: Flask, address: str) -> str:
    found = re.search(r"http://localhost(/account/email/confirm/\S+)", outbox(app, address)[-1])
    assert found, "no confirmation link in the mail"
    return found.group(1)


def find(app: Flask, **where: Any) -> User:
    with app.extensions["yitong"].db.session() as s:
        query = select(User)
        for column, value in where.items():
            query = query.where(getattr(User, column) == value)
        return s.scalars(query).one()


# ====================================================================== contact points
def test_registration_confirms_phone_by_code_and_email_by_link(app: Flask) -> None:
    http = app.test_client()
    resp = register(http, 3)
    assert resp.status_code == 303 and resp.headers["Location"].endswith("/register/confirm")
    user = find(app, email="li3@example.cn")
    assert not user.phone_verified and not user.email_verified
    assert available_claims(user)["email_verified"] is False  # the claim tells the truth
    # Unconfirmed: neither is a login name yet (the ID number is).
    assert login(app.test_client(), "+8613900000003").status_code == 401
    assert login(app.test_client(), "li3@example.cn").status_code == 401
    page = http.get("/register/confirm").get_data(as_text=True)
    assert 'id="confirm-code"' in page and 'id="confirm-email-note"' in page
    # A wrong code is refused next to the field; the right one confirms the phone.
    wrong = post_form(http, "/register/confirm", {"code": "000000", "action": "code"})
    assert wrong.status_code == 401 and 'id="confirm-error"' in wrong.get_data(as_text=True)
    right = post_form(
        http, "/register/confirm", {"code": sms_code(app, "+8613900000003"), "action": "code"}
    )
    assert right.status_code == 303 and right.headers["Location"].endswith("/account")
    assert user_row(app, user.id).phone_verified
    # The e-mail link: the GET shows a button and changes nothing (mail scanners fetch links).
    link = confirm_link(app, "li3@example.cn")
    stranger = app.test_client()
    shown = stranger.get(link)
    assert shown.status_code == 200 and "li3@example.cn" in shown.get_data(as_text=True)
    assert not user_row(app, user.id).email_verified
    done = post_form(stranger, link, {})
    assert done.status_code == 200 and 'id="email-confirmed"' in done.get_data(as_text=True)
    row = user_row(app, user.id)
    assert row.email_verified and available_claims(row)["email_verified"] is True
    assert login(app.test_client(), "LI3@example.cn").status_code == 303  # case-insensitive
    # The link is spent.
    assert stranger.get(link).status_code == 400
    assert "user.email_confirm" in actions(app) and "user.phone_change" in actions(app)


def test_expired_or_forged_email_link_is_refused(app: Flask, citizen: Citizen) -> None:
    with app.test_request_context():
        old = int((utcnow() - dt.timedelta(seconds=contacts.LINK_TTL + 5)).timestamp())
        token = contacts._serializer().dumps(
            {"u": citizen.id, "e": "new@example.cn", "n": "ab" * 16, "i": old}
        )
    http = app.test_client()
    for path in (f"/account/email/confirm/{token}", "/account/email/confirm/forged.token"):
        resp = http.get(path)
        assert resp.status_code == 400
        assert "过期" in resp.get_data(as_text=True)  # the page's language (Chinese)
    assert find(app, id=citizen.id).email == citizen.email


def test_unconfirmed_contact_points_block_nobody(app: Flask) -> None:
    """Checklist 81: a squatter's unconfirmed phone or e-mail goes to whoever registers it."""
    squatter = Citizen.create(app, email_confirmed=False)
    resp = register(app.test_client(), 4, phone=squatter.phone[3:], email=squatter.email.upper())
    assert resp.status_code == 303
    owner = find(app, email=squatter.email)
    assert owner.id != squatter.id and owner.phone == squatter.phone
    released = user_row(app, squatter.id)
    assert released.phone is None and released.email is None
    assert actions(app).count("user.contact_released") == 2


def test_changing_the_email_needs_the_new_link(app: Flask, citizen: Citizen) -> None:
    http = app.test_client()
    assert login(http, citizen.email).status_code == 303
    taken = Citizen.create(app)  # a confirmed address of another account: the same answer
    held = post_form(http, "/account/data/email", {"email": taken.email}, page="/account/data")
    assert held.status_code == 200 and 'id="data-info"' in held.get_data(as_text=True)
    assert not any("/account/email/confirm/" in m for m in outbox(app, taken.email))
    assert find(app, id=taken.id).email == taken.email  # its holder keeps it, and is told
    sent = post_form(http, "/account/data/email", {"email": "new@example.cn"}, page="/account/data")
    assert sent.status_code == 200 and 'id="data-info"' in sent.get_data(as_text=True)
    assert find(app, id=citizen.id).email == citizen.email  # not before the link
    post_form(http, confirm_link(app, "new@example.cn"), {})
    row = find(app, id=citizen.id)
    assert row.email == "new@example.cn" and row.email_verified


# ====================================================================== the squatter
def test_squatter_released_by_an_l3_verification(app: Flask, run: Callable[..., Any]) -> None:
    squatter = Citizen.create(app, index=1)  # took the real holder's ID number, never verified
    http = app.test_client()
    resp = register(http, 1, name="张三", phone="13900009999", email="real@example.cn")
    assert resp.status_code == 303  # not refused: the holder is below L3
    claimant = find(app, email="real@example.cn")
    assert claimant.id_number_digest is None and claimant.id_claim_digest is not None
    # Until verified, the claimed number signs the claimant in nowhere.
    http.get("/logout")
    result = run("verify", claimant.id, "--level", "L5", "--method", "counter", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["released"] == squatter.id
    holder, released = find(app, id=claimant.id), find(app, id=squatter.id)
    assert holder.id_number_digest is not None and holder.id_claim_digest is None
    assert released.id_number_digest is None and released.id_number_masked is None
    assert "identity.claim_released" in actions(app)
    # The squatter is told at its confirmed e-mail; the ID number now signs in the holder.
    assert any("ID number" in body or "身份证号" in body for body in outbox(app, squatter.email))
    assert login(app.test_client(), IDS["resident_ids"][1]).status_code == 303
    # A number verified at L3 or above is held for sure: a further registration gets the
    # same answer (checklist 83) but only claims it, and the holder is told.
    again = register(app.test_client(), 1, phone="13900008888", email="third@example.cn")
    assert again.status_code == 303
    assert find(app, email="third@example.cn").id_number_digest is None
    assert "user.contact_collision" in actions(app)


def test_two_verified_claims_are_left_to_a_counter(app: Flask) -> None:
    holder = Citizen.create(app, index=2)
    register(app.test_client(), 2, phone="13900007777", email="second@example.cn")
    claimant = find(app, email="second@example.cn")
    services = app.extensions["yitong"]
    with services.db.transaction() as s:
        record_verification(s, s.get(User, holder.id), "L5", "counter", verifier="test")
    with pytest.raises(AssuranceError), services.db.transaction() as s:
        record_verification(s, s.get(User, claimant.id), "L5", "counter", verifier="test")
    assert find(app, id=holder.id).id_number_digest is not None


# ====================================================================== SMS-code login
def confirm_phone(app: Flask, citizen: Citizen) -> None:
    with app.extensions["yitong"].db.transaction() as s:
        s.execute(update(User).where(User.id == citizen.id).values(phone_verified=True))


def sms_login(http: FlaskClient, phone: str) -> Any:
    return post_form(http, "/login/sms", {"phone": phone}, page="/login")


def test_sms_login_is_one_factor_and_asks_the_password_when_more_is_needed(
    app: Flask, citizen: Citizen
) -> None:
    confirm_phone(app, citizen)  # a confirmed phone is an SMS second factor: two are needed
    http = app.test_client()
    assert 'id="sms-login"' in http.get("/login").get_data(as_text=True)
    sent = sms_login(http, citizen.phone)
    assert sent.status_code == 303 and sent.headers["Location"].endswith("/login/sms/code")
    wrong = post_form(http, "/login/sms/code", {"code": "000000"})
    assert wrong.status_code == 401 and 'id="sms-error"' in wrong.get_data(as_text=True)
    code = post_form(http, "/login/sms/code", {"code": sms_code(app, citizen.phone)})
    assert code.status_code == 303 and code.headers["Location"].endswith("/login/sms/password")
    assert http.get("/account").status_code == 302  # the code alone made no session
    bad = post_form(http, "/login/sms/password", {"password": "not the password at all"})
    assert bad.status_code == 401
    ok = post_form(http, "/login/sms/password", {"password": citizen.password})
    assert ok.status_code == 303 and http.get("/account").status_code == 200
    with app.extensions["yitong"].db.session() as s:
        sso = s.scalars(select(SsoSession).where(SsoSession.ended_at.is_(None))).one()
    assert sso.amr == ["pwd", "sms", "mfa"] and sso.acr == "urn:yitong:acr:mfa"
    # The spent proof does not sign in a second time.
    assert http.get("/login/sms/password").status_code == 302


def test_sms_login_alone_where_no_second_factor_is_needed(app: Flask, citizen: Citizen) -> None:
    set_policy(app, "mfa.always_when_enrolled", False)
    confirm_phone(app, citizen)
    http = app.test_client()
    sms_login(http, citizen.phone)
    resp = post_form(http, "/login/sms/code", {"code": sms_code(app, citizen.phone)})
    assert resp.status_code == 303 and resp.headers["Location"].endswith("/account")
    with app.extensions["yitong"].db.session() as s:
        sso = s.scalars(select(SsoSession)).one()
    assert sso.amr == ["sms"] and sso.acr == "urn:yitong:acr:pwd"  # one factor, never two


def test_sms_login_same_answer_for_unknown_unconfirmed_and_disallowed(
    app: Flask, citizen: Citizen
) -> None:
    """Checklist 83: nothing tells whether the number may sign in; only a match gets a code."""
    answers = []
    for phone in ("+8613999990000", citizen.phone):  # unknown; known but unconfirmed
        http = app.test_client()
        resp = sms_login(http, phone)
        page = http.get(resp.headers["Location"]).get_data(as_text=True)
        page = re.sub(r"\+86\d{3}\*{4}\d{4}", "PHONE", page)
        page = re.sub(r'name="csrf_token" value="[^"]*"', "CSRF", page)
        answers.append((resp.status_code, resp.headers["Location"], page))
    assert answers[0] == answers[1]
    assert outbox(app, citizen.phone) == [] and outbox(app, "+8613999990000") == []
    confirm_phone(app, citizen)
    set_policy(app, "login.sms_allowed_for", [])
    assert 'id="sms-login"' not in app.test_client().get("/login").get_data(as_text=True)
    sms_login(app.test_client(), citizen.phone)
    assert outbox(app, citizen.phone) == []  # the policy forbids it: no code
    bad = sms_login(app.test_client(), "12345")
    assert bad.status_code == 400 and 'id="sms-error"' in bad.get_data(as_text=True)


# ====================================================================== PIPL rights
@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    made = [Receiver().start()]
    yield made
    for r in made:
        r.stop()


@pytest.fixture
def bcl_app(make_app: Callable[..., Flask], receivers: list[Receiver]) -> Flask:
    return make_app(outbound_test_allowlist=tuple(r.host for r in receivers))


def test_data_page_and_export_show_who_received_what(app: Flask, citizen: Citizen) -> None:
    rp = RegisteredClient.create(app, name="社保查询", scopes=["openid", "profile", "email"])
    http = app.test_client()
    sign_in(http, citizen, rp, scope="openid profile email")
    page = http.get("/account/data").get_data(as_text=True)
    assert "社保查询" in page and 'id="export-link"' in page and 'id="close-link"' in page
    resp = http.get("/account/data/export")
    assert resp.status_code == 200 and "attachment" in resp.headers["Content-Disposition"]
    assert resp.headers["Cache-Control"] == "no-store"
    data = json.loads(resp.get_data(as_text=True))
    assert data["profile"]["email"] == citizen.email and data["profile"]["email_verified"]
    assert data["profile"]["id_number_masked"] and citizen.id_number not in resp.get_data(
        as_text=True
    )
    service = next(s for s in data["services"] if s["client_id"] == rp.client_id)
    assert service["name"] == "社保查询" and "email" in service["scopes"]
    assert data["identity_verifications"][0]["level"] == "L2"
    assert "password_hash" not in json.dumps(data) and "user.data_export" in actions(app)
    # Not signed in: to the login page, no data.
    anonymous = app.test_client().get("/account/data/export")
    assert anonymous.status_code == 302 and "/login" in anonymous.headers["Location"]


def test_correcting_the_name_until_verified(app: Flask, citizen: Citizen) -> None:
    http = app.test_client()
    login(http, citizen.email)
    ok = post_form(http, "/account/data/name", {"name": " 张  三丰 "}, page="/account/data")
    assert ok.status_code == 303 and find(app, id=citizen.id).name == "张 三丰"
    empty = post_form(http, "/account/data/name", {"name": "  "}, page="/account/data")
    assert empty.status_code == 400
    with app.extensions["yitong"].db.transaction() as s:
        record_verification(s, s.get(User, citizen.id), "L5", "counter", verifier="test")
    verified = post_form(http, "/account/data/name", {"name": "王五"}, page="/account/data")
    assert verified.status_code == 409 and find(app, id=citizen.id).name == "张 三丰"


def test_closing_ends_everything_cooling_off_cancel_and_completion(
    bcl_app: Flask, receivers: list[Receiver], run: Callable[..., Any]
) -> None:
    app = bcl_app
    citizen = Citizen.create(app)
    rp = _bcl_client(app, receivers[0], "Portal", "portal.gov.example")
    other, this = app.test_client(), app.test_client()
    tokens = sign_in(other, citizen, rp)
    sign_in(this, citizen, rp)
    page = this.get("/account/close").get_data(as_text=True)
    assert "audit" in page.lower() or "审计" in page  # what is kept by law is said
    unticked = post_form(this, "/account/close", {}, page="/account/close")
    assert unticked.status_code == 400 and 'id="close-error"' in unticked.get_data(as_text=True)
    resp = post_form(this, "/account/close", {"confirm": "yes"}, page="/account/close")
    assert resp.status_code == 200 and 'id="closing-requested"' in resp.get_data(as_text=True)
    row = find(app, id=citizen.id)
    assert row.status == "closing" and row.close_after is not None
    assert (row.close_after - utcnow()).days in (14, 15)  # the default 15-day cooling-off
    # Every session and token ended; the service heard by back-channel logout.
    app.extensions["yitong"].logout.wait()
    wait_for(lambda: len(receivers[0].tokens) >= 2)
    verify_logout_token(app.test_client(), receivers[0].tokens[-1], rp.client_id)
    assert other.get("/account").status_code == 302 and this.get("/account").status_code == 302
    assert other.get("/userinfo", headers=bearer(tokens["access_token"])).status_code == 401
    with app.extensions["yitong"].db.session() as s:
        assert s.scalars(select(Token).where(Token.revoked_at.is_(None))).all() == []
    # Signing in during the cooling-off offers to cancel; cancelling keeps the account.
    http = app.test_client()
    offer = login(http, citizen.email)
    assert offer.status_code == 200 and 'id="closing-cancel"' in offer.get_data(as_text=True)
    assert http.get("/account").status_code == 302  # no session before the choice
    kept = http.post(
        "/login/closing/cancel", data={"csrf_token": csrf_token(offer.get_data(as_text=True))}
    )
    assert kept.status_code == 303 and http.get("/account").status_code == 200
    assert find(app, id=citizen.id).status == "active"
    # Closed again with no cooling-off; the cron command completes it.
    set_policy(app, "account.close_cooling_days", 0)
    post_form(http, "/account/close", {"confirm": "yes"}, page="/account/close")
    result = run("users", "close-due", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["closed"] == [citizen.id]
    gone = find(app, id=citizen.id)
    assert gone.status == "closed" and gone.name == "-" and gone.email is None
    assert gone.id_number_digest is None and gone.password_hash is None
    with app.extensions["yitong"].db.session() as s:
        assert s.scalars(select(Consent).where(Consent.user_id == citizen.id)).all() == []
    kept_actions = actions(app)
    for action in ("user.close_request", "user.close_cancel", "user.close_complete"):
        assert action in kept_actions  # the audit trail stays
    assert login(app.test_client(), citizen.email).status_code == 401
    assert run("users", "close-due", "--json").output.count(citizen.id) == 0  # nothing left


def test_a_claimant_can_reset_with_the_claimed_id_number(app: Flask) -> None:
    """Before the L3 verification the claimant's password reset works with the number it
    typed (the squatter's account is not the one reached)."""
    Citizen.create(app, index=6)  # the squatter holds the number
    http = app.test_client()
    register(http, 6, phone="13900006666", email="claimant@example.cn")
    post_form(http, confirm_link(app, "claimant@example.cn"), {})
    resp = post_form(
        app.test_client(),
        "/password/forgot",
        {"login": "claimant@example.cn", "id_number": IDS["resident_ids"][6]},
    )
    assert resp.status_code == 303
    assert any("/password/reset/" in body for body in outbox(app, "claimant@example.cn"))


def test_sms_login_of_an_account_being_closed_offers_the_cancel_after_both_factors(
    app: Flask, citizen: Citizen
) -> None:
    confirm_phone(app, citizen)  # an SMS factor: the password is needed as well
    with app.extensions["yitong"].db.transaction() as s:
        s.execute(
            update(User)
            .where(User.id == citizen.id)
            .values(status="closing", close_after=utcnow() + dt.timedelta(days=3))
        )
    http = app.test_client()
    sms_login(http, citizen.phone)
    code = post_form(http, "/login/sms/code", {"code": sms_code(app, citizen.phone)})
    assert code.headers["Location"].endswith("/login/sms/password")  # no offer on one factor
    offer = post_form(http, "/login/sms/password", {"password": citizen.password})
    assert offer.status_code == 200 and 'id="closing-cancel"' in offer.get_data(as_text=True)
    kept = http.post(
        "/login/closing/cancel", data={"csrf_token": csrf_token(offer.get_data(as_text=True))}
    )
    assert kept.status_code == 303 and http.get("/account").status_code == 200
    assert find(app, id=citizen.id).status == "active"

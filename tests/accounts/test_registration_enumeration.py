"""Registration does not tell whether an ID number, phone or e-mail belongs to someone
(checklist 83, issue 15): data held for sure by another account (a confirmed phone or
e-mail, an ID number verified at L3 or above) gets the answer of a new registration, and
the holder is told at their confirmed contact points instead (audited, rate limited).

The new account claims the ID number (settled only by an L3 verification) and is given
neither the phone nor the e-mail; no code or link exists that could confirm them.
"""

from __future__ import annotations

import json
import re
from typing import Any

from flask import Flask
from sqlalchemy import select

from idp.storage.models import AuditEvent
from tests.accounts.test_registration import confirm_everything
from tests.helpers import Citizen
from tests.interaction.mfa_kit import set_policy
from tests.interaction.test_citizen_rights import find, register, user_row
from tests.interaction.test_recovery import outbox, post_form


def collisions(app: Flask) -> list[AuditEvent]:
    with app.extensions["yitong"].db.session() as s:
        query = select(AuditEvent).where(AuditEvent.action == "user.contact_collision")
        return list(s.scalars(query.order_by(AuditEvent.seq)))


def confirm_page(http: Any, phone: str, email: str) -> str:
    """The confirmation page with what differs by nature (typed values, tokens) blanked."""
    html = str(http.get("/register/confirm").get_data(as_text=True))
    digits = phone[-4:]
    html = re.sub(r"\+86\d{3}\*{4}" + digits, "PHONE", html)
    html = html.replace(email, "EMAIL")
    return re.sub(r'name="csrf_token" value="[^"]*"', "CSRF", html)


def test_checklist_83_registration_answers_alike_for_a_holders_data(app: Flask) -> None:
    holder = Citizen.create(app, index=7)
    confirm_everything(app, holder)  # confirmed phone and e-mail, verified at L3
    fresh, probe = app.test_client(), app.test_client()
    new = register(fresh, 3)
    held = register(
        probe, 4, id_number=holder.id_number, phone=holder.phone, email=holder.email.upper()
    )
    assert (new.status_code, new.headers["Location"]) == (
        held.status_code,
        held.headers["Location"],
    )
    assert held.status_code == 303 and "already exists" not in held.get_data(as_text=True)
    assert confirm_page(fresh, "+8613900000003", "li3@example.cn") == confirm_page(
        probe, holder.phone, holder.email
    )
    # A code typed for the holder's number is wrong in the same words as any wrong code.
    wrong = [
        post_form(c, "/register/confirm", {"code": "000000", "action": "code"})
        for c in (fresh, probe)
    ]
    assert [w.status_code for w in wrong] == [401, 401]
    assert 'id="confirm-error"' in wrong[1].get_data(as_text=True)
    # The holder keeps everything and is told, at the confirmed phone and e-mail only.
    row = user_row(app, holder.id)
    assert row.phone == holder.phone and row.email == holder.email and row.id_number_digest
    told = outbox(app, holder.phone) + outbox(app, holder.email)
    assert told and not any(re.search(r"\b\d{6}\b|/confirm/", m) for m in told)
    events = collisions(app)
    assert sorted(e.details["field"] for e in events) == ["email", "id_number", "phone"]
    new_account = find(app, name="李四", id_number_masked=row.id_number_masked, phone=None)
    assert {e.target for e in events} == {holder.id} and {e.actor for e in events} == {"self"}
    assert {e.details["account"] for e in events} == {new_account.id}
    assert new_account.id_number_digest is None and new_account.id_claim_digest
    assert new_account.email is None
    # The new account's own data page and export say nothing of it either.
    for http in (fresh, probe):
        page = http.get("/account/data").get_data(as_text=True)
        assert "等待身份核验" in page or "waiting for identity verification" in page
    export = json.loads(probe.get("/account/data/export").get_data(as_text=True))
    assert "user.contact_collision" not in {a["action"] for a in export["activity"]}
    assert export["profile"]["id_number_pending_verification"] is True


def test_data_held_below_l3_or_unconfirmed_tells_nobody(app: Flask) -> None:
    """Unconfirmed contact points go to the registrant (tests/interaction/
    test_citizen_rights.py); an ID number held below L3 is only claimed: no notice."""
    squatter = Citizen.create(app, index=8, email_confirmed=False)
    resp = register(app.test_client(), 5, id_number=squatter.id_number)
    assert resp.status_code == 303 and collisions(app) == []
    assert outbox(app, squatter.phone) == []


def test_notices_to_one_holder_are_rate_limited(app: Flask) -> None:
    holder = Citizen.create(app, index=9)
    confirm_everything(app, holder)
    set_policy(app, "sms.per_phone_per_hour", 1)
    for n in (10, 11):
        assert register(app.test_client(), n, id_number=holder.id_number).status_code == 303
    events = collisions(app)
    assert len(events) == 2 and events[1].details["told"] == []  # audited, not sent again
    assert len(outbox(app, holder.phone)) == 1

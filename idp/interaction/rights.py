"""Personal-information rights (PIPL arts. 44-47; issue 15 item 5): see, copy, correct, close.

- **See and copy** (:func:`personal_data`): what Yitong holds about the person (profile,
  contact points and whether each is confirmed, identity verifications, second factors by
  kind, consents, sessions) and which services received what: the live grants and the
  release audit (``claims.release`` entries naming them).  The page shows it; the export is
  the same dictionary as a JSON file.  Secrets (password hash, TOTP seed, codes) and the full
  ID number are never part of it: the masked number is.
- **Correct** the name (here, while the identity is not verified at L3 or above: a verified
  name is corrected at a counter, with the proof), the phone and the e-mail (re-confirmed,
  :mod:`idp.interaction.contacts`, :mod:`idp.interaction.self_service`).
- **Close** (注销): :func:`request_closing` ends every session and revokes every grant and
  token through :func:`~idp.interaction.sessions.end_user_sessions` (so services hear by
  back-channel logout) and starts the cooling-off period (policy
  ``account.close_cooling_days``); signing in meanwhile offers :func:`cancel_closing`.
  :func:`complete_due_closings` (``yitong users close-due``, run from cron) then erases the
  personal data.  The audit trail is kept, as the law requires (网络安全法 art. 21: network
  logs at least six months), and says what happened without the erased data.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable
from typing import Any

from flask_babel import gettext as _
from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from idp import audit, context
from idp.accounts.assurance import id_holder_verified, verifications_of
from idp.interaction import mfa
from idp.interaction.contacts import N_, tell
from idp.interaction.levels import user_factors
from idp.interaction.login import Refused, attempt_second_factor, code_factor, verify_password
from idp.interaction.sessions import end_user_sessions, last_seen, live_sessions_of
from idp.services import Services
from idp.storage.models import (
    AuditEvent,
    Client,
    Consent,
    Grant,
    IdentityVerification,
    Mandate,
    RecoveryCode,
    TotpCredential,
    User,
    WebAuthnCredential,
    utcnow,
)

EXPORT_FORMAT = "yitong-personal-data/1"
AUDIT_SHOWN = 200  # the newest audit entries about the person in the page and the export
CLOSED_NAME = "-"


def _iso(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.UTC).isoformat(timespec="seconds") if value else None


def received_by_service(session: Session, user: User) -> list[dict[str, Any]]:
    """Per service: the scopes it was granted and the sensitive claims the release audit
    records, with first and last time (from grants and ``claims.release`` entries)."""
    found: dict[str, dict[str, Any]] = {}

    def entry(client_id: str) -> dict[str, Any]:
        return found.setdefault(
            client_id,
            {"client_id": client_id, "scopes": set(), "claims": set(), "times": []},
        )

    for grant in session.scalars(select(Grant).where(Grant.user_id == user.id)):
        e = entry(grant.client_id)
        e["scopes"] |= set((grant.scope or "").split())
        e["times"].append(grant.created_at)
    releases = session.scalars(
        select(AuditEvent).where(
            AuditEvent.target == user.id, AuditEvent.action == "claims.release"
        )
    )
    for event in releases:
        client_id = event.actor.removeprefix("client:")
        e = entry(client_id)
        e["claims"] |= set(event.details.get("claims") or [])
        e["times"].append(event.at)
    names = {
        c.client_id: c.name
        for c in session.scalars(select(Client).where(Client.client_id.in_(list(found))))
    }
    out = []
    for client_id, e in found.items():
        times = sorted(e["times"])
        out.append(
            {
                "client_id": client_id,
                "name": names.get(client_id, client_id),
                "scopes": sorted(e["scopes"]),
                "verified_claims": sorted(e["claims"]),
                "first": _iso(times[0]) if times else None,
                "last": _iso(times[-1]) if times else None,
            }
        )
    return sorted(out, key=lambda s: s["last"] or "", reverse=True)


def personal_data(user: User) -> dict[str, Any]:
    """Everything Yitong holds about ``user``, as the page shows it and the export writes it."""
    session = context.db_session()
    factors = user_factors(user)
    consents = session.scalars(select(Consent).where(Consent.user_id == user.id))
    events = session.scalars(
        select(AuditEvent)
        .where(or_(AuditEvent.actor == user.id, AuditEvent.target == user.id))
        .order_by(AuditEvent.seq.desc())
        .limit(AUDIT_SHOWN)
    )
    mandates = session.scalars(select(Mandate).where(Mandate.user_id == user.id))
    return {
        "format": EXPORT_FORMAT,
        "exported_at": _iso(utcnow()),
        "account": {
            "id": user.id,
            "kind": user.kind,
            "status": user.status,
            "created_at": _iso(user.created_at),
            "close_after": _iso(user.close_after),
        },
        "profile": {
            "name": user.name,
            "id_number_masked": user.id_number_masked,
            # Below L3 for everyone, not only for a contested claim: the page must not tell
            # a registrant that someone else holds the number (checklist 83).
            "id_number_pending_verification": not id_holder_verified(session, user.id),
            "phone": user.phone,
            "phone_verified": bool(user.phone_verified),
            "email": user.email,
            "email_verified": bool(user.email_verified),
            "locale": user.locale,
        },
        "identity_verifications": [
            {"level": v.level, "method": v.method, "verified_at": _iso(v.verified_at)}
            for v in verifications_of(session, user.id)
        ],
        "second_factors": {
            "totp": factors.totp,
            "security_keys": [
                {"name": c.name, "added": _iso(c.created_at)} for c in factors.webauthn
            ],
            "recovery_codes_left": factors.recovery_left,
            "sms": factors.sms_phone is not None,
        },
        "consents": [
            {"client_id": c.client_id, "scopes": list(c.scopes), "given": _iso(c.granted_at)}
            for c in consents
        ],
        "services": received_by_service(session, user),
        "mandates": [
            {"entity_id": m.entity_id, "role": m.role, "until": _iso(m.valid_until)}
            for m in mandates
        ],
        "sessions": [
            {
                "started": _iso(s.created_at),
                "last_seen": _iso(last_seen(s, context.services().hot)),
                "ip": s.ip,
            }
            for s in live_sessions_of(session, user.id)
        ],
        "activity": [
            {"at": _iso(e.at), "action": e.action, "outcome": e.outcome, "ip": e.ip} for e in events
        ],
    }


def export_was_made(user: User) -> None:
    """Audit the download (a copy of personal data left the system)."""
    audit.record_now(
        context.services().db,
        "user.data_export",
        actor=user.id,
        target=user.id,
        ip=context.client_ip(),
    )


# ---------------------------------------------------------------------- correct
def correct_name(user: User, raw: str) -> Refused | None:
    """Correct the name while the identity is unverified (L2); a verified one at a counter."""
    name = " ".join((raw or "").split())
    if not name or len(name) > 100 or not name.isprintable():
        return Refused(_("Enter your full name (at most 100 characters)."), 400)
    db_session = context.db_session()
    if id_holder_verified(db_session, user.id):
        return Refused(
            _("Your name was verified with your identity; correct it at a service counter."),
            409,
        )
    row = db_session.get(User, user.id)
    assert row is not None
    if row.name == name:
        return None
    row.name = name
    audit.record(
        db_session, "user.name_change", actor=user.id, target=user.id, ip=context.client_ip()
    )
    db_session.commit()
    return None


# ---------------------------------------------------------------------- close (注销)
CLOSING_SUBJECT = N_("Your Yitong account is being closed")
CLOSING_TEXT = N_(
    "Yitong: you asked to close your account. It will be closed when the cooling-off period "
    "ends. To keep it, sign in before then and cancel the closing."
)
CLOSED_SUBJECT = N_("Your Yitong account was closed")
CLOSED_TEXT = N_(
    "Yitong: your account was closed and your personal data erased. The audit trail is "
    "kept as the law requires."
)


def cooling_days() -> int:
    return context.services().policies.get_int("account.close_cooling_days")


def request_closing(user: User) -> dt.datetime:
    """Start closing the account: every session ended and every grant revoked (services told
    by back-channel logout), the cooling-off period begun; when it completes."""
    services = context.services()
    db_session = context.db_session()
    row = db_session.get(User, user.id)
    assert row is not None
    now = utcnow()
    row.status = "closing"
    row.close_requested_at = now
    row.close_after = now + dt.timedelta(days=cooling_days())
    ended = end_user_sessions(
        db_session, services, user.id, reason="account_closing", include_offline=True
    )
    audit.record(
        db_session,
        "user.close_request",
        actor=user.id,
        target=user.id,
        ip=context.client_ip(),
        details={
            "close_after": _iso(row.close_after),
            "sessions_ended": len(ended.sids),
            "grants_revoked": len(ended.revoked_grants),
        },
    )
    db_session.commit()
    ended.kick()
    tell(services, row, CLOSING_SUBJECT, CLOSING_TEXT)
    return row.close_after


@dataclasses.dataclass(frozen=True)
class CancelNeeds:
    """What a person must still show to keep an account being closed.

    Cancelling gives the account back and signs in, so it needs what a full login of the
    account needs: the password (or a passkey with user verification) and, when the account
    has a second factor, one of them.  A password alone must never undo a closing that a
    stolen password could otherwise reverse.
    """

    password: bool
    second_factor: bool
    methods: tuple[str, ...] = ()  # totp | sms | recovery: what the closing page can take

    @property
    def met(self) -> bool:
        return not (self.password or self.second_factor)

    @property
    def passkey_only(self) -> bool:
        """The only second factor is a security key: the person signs in with it instead."""
        return self.second_factor and not self.methods


def cancel_needs(user: User, proven: Iterable[str]) -> CancelNeeds:
    """What is missing from the factors ``proven`` so far (``pwd``, ``sms``, ``otp``...)."""
    have = set(proven)
    factors = user_factors(user)
    password = not have & {"pwd", "uv"}
    second = factors.any_second_factor and not have & mfa.POSSESSION
    methods: tuple[str, ...] = ()
    if second:
        methods = ("totp",) if factors.totp else ()
        methods += ("sms",) if factors.sms_phone else ()
        methods += ("recovery",) if factors.recovery_left else ()
    return CancelNeeds(password, second, methods)


def prove_for_cancel(
    user: User, proven: dict[str, int], *, password: str, method: str, code: str
) -> tuple[dict[str, int], Refused | None]:
    """Check what the closing page asked for: the factors proven now, and why not all.

    The password goes through the lockout gate (:func:`~idp.interaction.login.
    verify_password`); a code is counted on the account's second-factor counter like a
    login's (:func:`~idp.interaction.login.attempt_second_factor`).  A factor proven here
    is kept even when the other one fails, so the page does not ask for it again.
    """
    needs = cancel_needs(user, proven)
    have = dict(proven)
    now = int(utcnow().timestamp())
    if needs.passkey_only:
        return have, Refused(_("Sign in with your security key or passkey to keep it."), 403)
    if needs.password:
        if not verify_password(user, password):
            return have, Refused(_("The password is wrong."), 401)
        have["pwd"] = now
    if needs.second_factor:
        if method not in needs.methods:
            return have, Refused(_("Enter a code that confirms it is you."), 400)
        attempt = attempt_second_factor(
            None, user, lambda: code_factor(user, method, code[:64]), mode="closing_cancel"
        )
        if attempt.factor is None:
            assert attempt.refused is not None  # no pending login: never a restart
            return have, attempt.refused
        have[attempt.factor] = now
    return have, None


def cancel_closing(user: User) -> None:
    """The person signed in during the cooling-off period and keeps the account
    (with every factor :func:`cancel_needs` asked for)."""
    db_session = context.db_session()
    row = db_session.get(User, user.id)
    if row is None or row.status != "closing":
        return
    row.status = "active"
    row.close_requested_at = row.close_after = None
    audit.record(
        db_session, "user.close_cancel", actor=user.id, target=user.id, ip=context.client_ip()
    )
    db_session.commit()


def complete_due_closings(
    services: Services, *, now: dt.datetime | None = None, actor: str = "cli"
) -> list[str]:
    """Close every account whose cooling-off period has passed; their ids.

    Erased: name, ID number (and any claim to one), phone, e-mail, password, second factors,
    consents, identity verifications, mandates.  Kept: the row itself (its id is the subject
    identifier services knew and the audit trail names, never reused) and the audit trail.
    """
    now = now or utcnow()
    closed: list[str] = []
    with services.db.session() as session:
        due = list(
            session.scalars(
                select(User.id).where(User.status == "closing", User.close_after <= now)
            )
        )
    for user_id in due:
        with services.db.transaction() as session:
            row = session.get(User, user_id)
            if row is None or row.status != "closing" or row.close_after is None:
                continue
            if row.close_after > now:
                continue
            before = User(
                id=row.id, name=row.name, phone=row.phone, email=row.email, locale=row.locale
            )
            before.phone_verified, before.email_verified = row.phone_verified, row.email_verified
            ended = end_user_sessions(
                session, services, user_id, reason="account_closed", include_offline=True
            )
            for table in (
                TotpCredential,
                RecoveryCode,
                WebAuthnCredential,
                Consent,
                IdentityVerification,
                Mandate,
            ):
                session.execute(delete(table).where(table.user_id == user_id))
            row.name = CLOSED_NAME
            row.id_number_ciphertext = row.id_number_digest = row.id_number_masked = None
            row.id_claim_digest = None
            row.phone = row.email = None
            row.phone_verified = row.email_verified = False
            row.password_hash = None
            row.attributes, row.groups, row.roles = {}, [], []
            row.status = "closed"
            audit.record(
                session,
                "user.close_complete",
                actor=actor,
                target=user_id,
                details={"requested_at": _iso(row.close_requested_at)},
            )
        ended.kick()
        tell(services, before, CLOSED_SUBJECT, CLOSED_TEXT)
        closed.append(user_id)
    return closed

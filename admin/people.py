"""People administration for the console and the API: the helpdesk's tasks (issue 11).

Part of the admin service layer (with :mod:`admin.services`): every change checks who asks and
for whom, and writes its audit event in the same transaction.  A helpdesk agent or a security
admin may act on anyone; a department admin on the staff of the directories bound to its
departments only; an auditor may look, not act.  People are shown masked (ID number, phone,
e-mail), and found by a full identifier or by the masked ID number a caller reads out.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from admin.services import AdminInputError, Caller, mandate_summary
from idp import audit
from idp.accounts.entities import entity_summary, find_entity
from idp.accounts.entity_assurance import assurance_summary
from idp.accounts.lifecycle import disable_account, end_all_sessions
from idp.accounts.people import find_account
from idp.errors import InsufficientScopeError
from idp.interaction import mfa
from idp.interaction.self_service import mask_phone
from idp.services import Services
from idp.storage.models import (
    Department,
    LegalEntity,
    Mandate,
    RecoveryCode,
    UpstreamLink,
    User,
    WebAuthnCredential,
    utcnow,
)
from idp.storage.repo import new_secret

#: Roles that may act on anyone's account; department admins act on their staff only.
PEOPLE_WRITERS = frozenset({"security-admin", "helpdesk"})
PEOPLE_READERS = PEOPLE_WRITERS | {"auditor"}
MAX_RESULTS = 20
MAX_REASON = 500


def _mask_email(email: str | None) -> str | None:
    if not email or "@" not in email:
        return email
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}"


def person_summary(user: User) -> dict[str, Any]:
    """What an admin sees of a person: never a full ID number, phone or e-mail."""
    return {
        "id": user.id,
        "kind": user.kind,
        "name": user.name,
        "id_number": user.id_number_masked,
        "phone": mask_phone(user.phone),
        "email": _mask_email(user.email),
        "status": user.status,
        "directory": user.directory_id,
        "roles": sorted(user.roles or ()),
    }


def _staff_directories(session: Session, who: Caller) -> set[str]:
    """The staff directories bound to the caller's departments."""
    if not who.departments:
        return set()
    rows = session.scalars(select(Department).where(Department.id.in_(who.departments)))
    return {d for row in rows for d in (row.directories or ())}


def may_see(session: Session, who: Caller, user: User) -> bool:
    if who.roles & PEOPLE_READERS:
        return True
    return (
        "department-admin" in who.roles
        and user.directory_id is not None
        and user.directory_id in _staff_directories(session, who)
    )


def may_act(session: Session, who: Caller, user: User) -> bool:
    if who.roles & PEOPLE_WRITERS:
        return True
    return "department-admin" in who.roles and may_see(session, who, user)


def find_people(
    session: Session, services: Services, query: Any, who: Caller
) -> list[dict[str, Any]]:
    """People matching ``query``: an account id, e-mail, phone, full ID number, or the masked
    ID number (``2102**********3286``) read from a document; only those ``who`` may see."""
    if not isinstance(query, str) or not query.strip() or len(query) > 320:
        raise AdminInputError("give an account id, e-mail, phone or (masked) ID number")
    query = query.strip()
    found: list[User] = []
    if "*" in query:
        found = list(
            session.scalars(select(User).where(User.id_number_masked == query).limit(MAX_RESULTS))
        )
    else:
        user = find_account(session, query, vault=services.vault)
        found = [user] if user is not None else []
    return [person_summary(u) for u in found if may_see(session, who, u)]


def _person(session: Session, user_id: str, who: Caller, *, act: bool) -> User:
    user = session.get(User, user_id) if 0 < len(user_id) <= 64 else None
    if user is None:
        raise AdminInputError("no such account", status=404)
    if not (may_act if act else may_see)(session, who, user):
        raise AdminInputError(
            "this account is not yours to administer", error=InsufficientScopeError, status=403
        )
    return user


def person_for_action(session: Session, user_id: str, who: Caller) -> User:
    """The account ``who`` may act on (404 unknown, 403 outside their departments)."""
    return _person(session, user_id, who, act=True)


def show_person(session: Session, services: Services, user_id: str, who: Caller) -> dict[str, Any]:
    user = _person(session, user_id, who, act=False)
    factors = mfa.factors_of(session, services.policies, user)
    return {
        **person_summary(user),
        "totp": factors.totp,
        "security_keys": len(factors.webauthn),
        "recovery_codes_left": factors.recovery_left,
        "upstream_links": upstream_links(session, user.id),
    }


# ------------------------------------------------------------------ upstream federation (issue 13)
def upstream_links(session: Session, user_id: str) -> list[dict[str, Any]]:
    """The account's links to upstream identities (the national platform), oldest first."""
    rows = session.scalars(
        select(UpstreamLink).where(UpstreamLink.user_id == user_id).order_by(UpstreamLink.id)
    )
    return [
        {
            "id": row.id,
            "issuer": row.issuer,
            "subject": row.subject,
            "created_at": row.created_at.isoformat(),
        }
        for row in rows
    ]


def remove_upstream_link(
    session: Session, services: Services, user_id: str, link_id: Any, reason: Any, who: Caller
) -> dict[str, Any]:
    """Unlink an upstream identity (linked by mistake, or the person asks at the counter),
    with the reason recorded.  The next upstream login asks for the person's consent to link
    again; the account and its local sign-in are untouched."""
    why = _reason(reason)
    user = _person(session, user_id, who, act=True)
    try:
        wanted = int(link_id)
    except (TypeError, ValueError):
        raise AdminInputError("no such upstream link", status=404) from None
    row = session.get(UpstreamLink, wanted)
    if row is None or row.user_id != user.id:
        raise AdminInputError("no such upstream link", status=404)
    audit.record(
        session,
        "user.upstream_unlink",
        actor=who.actor,
        target=user.id,
        details={"issuer": row.issuer, "subject": row.subject, "reason": why},
    )
    session.delete(row)
    session.commit()
    return {**person_summary(user), "upstream_links": upstream_links(session, user.id)}


def _reason(reason: Any) -> str:
    if not isinstance(reason, str) or not reason.strip() or len(reason) > MAX_REASON:
        raise AdminInputError(f"give the reason (at most {MAX_REASON} characters)")
    return " ".join(reason.split())


def unlock_person(
    session: Session, services: Services, user_id: str, who: Caller
) -> dict[str, Any]:
    """Clear the failed-login and second-factor counters (a locked-out person calls in)."""
    user = _person(session, user_id, who, act=True)
    services.login_gate.unlock(user)
    audit.record(session, "user.unlock", actor=who.actor, target=user.id)
    session.commit()
    return person_summary(user)


def set_person_status(
    session: Session, services: Services, user_id: str, status: Any, who: Caller
) -> dict[str, Any]:
    """Lock (disable: every session and token ends) or enable an account again."""
    if status not in ("active", "disabled"):
        raise AdminInputError("status must be active or disabled")
    user = _person(session, user_id, who, act=True)
    if status == "disabled":
        ended = disable_account(session, services, user, actor=who.actor)
        session.commit()
        ended.kick()
    else:
        old, user.status = user.status, "active"
        audit.record(session, "user.enable", actor=who.actor, target=user.id, details={"old": old})
        session.commit()
    return person_summary(user)


def end_person_sessions(
    session: Session, services: Services, user_id: str, who: Caller
) -> dict[str, Any]:
    """End every session of the account; its services hear of it (back-channel logout)."""
    user = _person(session, user_id, who, act=True)
    ended = end_all_sessions(
        session,
        services,
        user,
        actor=who.actor,
        reason="sessions_terminated",
        include_offline=False,
    )
    session.commit()
    ended.kick()
    return {**person_summary(user), "sessions_ended": len(ended.sids)}


def reset_second_factor(
    session: Session, services: Services, user_id: str, reason: Any, who: Caller
) -> dict[str, Any]:
    """Remove every second factor (authenticator app, security keys, recovery codes) after the
    person lost them, with the reason recorded; their sessions end, so the next login enrols
    afresh under whatever policy applies."""
    why = _reason(reason)
    user = _person(session, user_id, who, act=True)
    totp = mfa.remove_totp(session, user.id)
    keys = session.execute(delete(WebAuthnCredential).where(WebAuthnCredential.user_id == user.id))
    codes = session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    audit.record(
        session,
        "user.mfa_reset",
        actor=who.actor,
        target=user.id,
        details={
            "reason": why,
            "totp": totp,
            "security_keys": keys.rowcount,  # type: ignore[attr-defined]
            "recovery_codes": codes.rowcount,  # type: ignore[attr-defined]
        },
    )
    ended = end_all_sessions(
        session,
        services,
        user,
        actor=who.actor,
        reason="sessions_terminated",
        include_offline=False,
    )
    session.commit()
    ended.kick()
    return person_summary(user)


def list_people(session: Session, who: Caller, *, limit: int = 100) -> list[dict[str, Any]]:
    """The most recent accounts ``who`` may see (the CLI's ``users list``, the console)."""
    rows = session.scalars(select(User).order_by(User.created_at.desc()).limit(limit * 4))
    return [person_summary(u) for u in rows if may_see(session, who, u)][:limit]


# ------------------------------------------------------------------ companies (issue 10)
COMPANY_READERS = frozenset({"security-admin", "department-admin", "auditor"})


def companies(
    session: Session, services: Services, query: Any, who: Caller
) -> list[dict[str, Any]]:
    """Companies by credit code, id or name (or the latest ones), with their mandates."""
    if not who.roles & COMPANY_READERS:
        raise AdminInputError(
            "your roles do not include companies", error=InsufficientScopeError, status=403
        )
    text = query.strip()[:200] if isinstance(query, str) else ""
    if text:
        entity = find_entity(session, services.vault, text)
        rows = (
            [entity]
            if entity is not None
            else list(session.scalars(select(LegalEntity).where(LegalEntity.name == text)))
        )
    else:
        rows = list(
            session.scalars(select(LegalEntity).order_by(LegalEntity.created_at.desc()).limit(50))
        )
    out = []
    now = utcnow()
    for entity in rows:
        mandates = session.scalars(
            select(Mandate).where(Mandate.entity_id == entity.id, Mandate.ended_at.is_(None))
        )
        out.append(
            {
                **entity_summary(entity),
                "mandates": [mandate_summary(m) for m in mandates],
                "assurance": assurance_summary(session, entity, now),
            }
        )
    return out


def reset_password(
    session: Session, services: Services, user_id: str, who: Caller
) -> dict[str, Any]:
    """Give a citizen a new random password (returned once, to hand over in person); every
    session and token ends, offline ones too, as after a self-service reset."""
    user = _person(session, user_id, who, act=True)
    if user.kind == "staff" or not user.password_hash:
        raise AdminInputError("staff passwords are changed in the department's directory")
    password = new_secret(12)  # 96 bits, 16 characters
    user.password_hash = services.passwords.hash(password)
    user.password_changed_at = utcnow()
    ended = end_all_sessions(
        session, services, user, actor=who.actor, reason="password_reset", include_offline=True
    )
    session.commit()
    ended.kick()
    return {**person_summary(user), "password": password}

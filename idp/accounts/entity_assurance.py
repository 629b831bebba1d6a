"""How well a company's identity was established (issue 10; docs/identity-assurance.md).

Companies hold levels of their own, on the same ladder as people but with the rungs a legal
person can stand on:

* ``L3`` the enterprise registry (the market regulator's register) lists the credit code as
  active, under this name, with this legal representative (method ``registry``); written at
  registration and at every successful re-verification;
* ``L5`` an electronic business licence (电子营业执照) presented for the company and verified
  by the licence service (method ``e-licence``, :class:`adapters.base.BusinessLicenceVerifier`).

L2 (self-declared) does not exist for companies (registration always asks the registry) and
L4 (a face) belongs to the person acting, not to the company.  Each record counts for
``entity_verification_valid_days``; a re-verification the registry no longer backs withdraws
them all; a company that is not active has no level at all (its records are kept).  The
company's level is the highest record that counts.  Only this module writes the records; the
decisions that call it (registration, re-verification, suspension) are
:mod:`idp.accounts.entities`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from adapters.base import EnterpriseRecord, LicenceCheck
from idp import audit
from idp.accounts.assurance import rank
from idp.storage.models import EntityVerification, LegalEntity, utcnow
from idp.storage.repo import new_id

#: The levels and the method that reaches each (docs/identity-assurance.md "Companies").
ENTITY_METHODS: dict[str, str] = {"L3": "registry", "L5": "e-licence"}
ENTITY_LEVELS: tuple[str, ...] = tuple(ENTITY_METHODS)


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def registry_evidence(record: EnterpriseRecord, when: dt.datetime) -> dict[str, Any]:
    """OIDC4IDA ``electronic_record`` evidence of an enterprise-registry match."""
    return {
        "type": "electronic_record",
        "check_details": [
            {
                "check_method": "data",
                "organization": record.source,
                "txn": record.reference or new_id()[:32],
                "time": record.checked_at or _iso(when),
            }
        ],
        "record": {"type": "enterprise_register", "source": {"name": record.source}},
    }


def licence_evidence(check: LicenceCheck, when: dt.datetime) -> dict[str, Any]:
    """OIDC4IDA ``electronic_record`` evidence of a verified electronic business licence:
    the licence is a record the regulator signed, checked cryptographically (``vcrypt``)."""
    return {
        "type": "electronic_record",
        "check_details": [
            {
                "check_method": "vcrypt",
                "organization": check.source,
                "txn": check.reference,
                "time": check.checked_at or _iso(when),
            }
        ],
        "record": {"type": "electronic_business_licence", "source": {"name": check.source}},
    }


def record_entity_verification(
    session: Session,
    entity: LegalEntity,
    level: str,
    evidence: dict[str, Any],
    *,
    verifier: str,
    valid_days: int,
    ip: str | None = None,
) -> EntityVerification:
    """Store one verification of ``entity`` and audit it (the caller commits)."""
    if level not in ENTITY_METHODS:
        raise ValueError(f"a company's level is one of {', '.join(ENTITY_LEVELS)}")
    now = utcnow()
    row = EntityVerification(
        entity_id=entity.id,
        level=level,
        method=ENTITY_METHODS[level],
        evidence=[evidence],
        txn=new_id()[:32],
        verifier=verifier,
        verified_at=now,
        expires_at=now + dt.timedelta(days=max(1, valid_days)),
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        "entity.verify",
        actor=verifier,
        target=entity.id,
        ip=ip,
        details={"level": level, "method": row.method, "txn": row.txn},
    )
    return row


def withdraw_verifications(
    session: Session, entity: LegalEntity, reason: str, *, actor: str, ip: str | None = None
) -> int:
    """Withdraw every record that still counts (the registry no longer backs them)."""
    now = utcnow()
    rows = list(
        session.scalars(
            select(EntityVerification).where(
                EntityVerification.entity_id == entity.id,
                EntityVerification.withdrawn_at.is_(None),
            )
        )
    )
    for row in rows:
        row.withdrawn_at, row.withdrawn_reason = now, reason[:64]
    audit.record(
        session,
        "entity.verify",
        actor=actor,
        target=entity.id,
        outcome="failure",
        ip=ip,
        details={"reason": reason, "withdrawn": len(rows)},
    )
    return len(rows)


def entity_verifications(session: Session, entity_id: str) -> list[EntityVerification]:
    """Every record of the company, strongest and newest first (the console's history)."""
    rows = list(
        session.scalars(select(EntityVerification).where(EntityVerification.entity_id == entity_id))
    )
    rows.sort(key=lambda r: (rank(r.level), r.verified_at), reverse=True)
    return rows


def counts(row: EntityVerification, now: dt.datetime) -> bool:
    """Not withdrawn and not expired."""
    return row.withdrawn_at is None and now < row.expires_at


def live_entity_verifications(
    session: Session, entity: LegalEntity, now: dt.datetime
) -> list[EntityVerification]:
    """The records that count now, strongest first; none while the company is not active."""
    if entity.status != "active":
        return []
    return [r for r in entity_verifications(session, entity.id) if counts(r, now)]


def entity_level(session: Session, entity: LegalEntity, now: dt.datetime) -> str | None:
    """The company's level now (None: not verified, expired, withdrawn or not active)."""
    rows = live_entity_verifications(session, entity, now)
    return rows[0].level if rows else None


def assurance_summary(session: Session, entity: LegalEntity, now: dt.datetime) -> dict[str, Any]:
    """What the admin API, the CLI, the console and the company page show of it."""
    rows = entity_verifications(session, entity.id)
    live = [r for r in rows if counts(r, now)] if entity.status == "active" else []
    return {
        "level": live[0].level if live else None,
        "valid_until": _iso(max(r.expires_at for r in live)) if live else None,
        "verifications": [
            {
                "level": r.level,
                "method": r.method,
                "verified_at": _iso(r.verified_at),
                "expires_at": _iso(r.expires_at),
                "verifier": r.verifier,
                "state": "withdrawn"
                if r.withdrawn_at is not None
                else ("valid" if now < r.expires_at else "expired"),
            }
            for r in rows
        ],
    }

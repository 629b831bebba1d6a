"""Companies as accounts and the mandates of the people acting for them (issue 10).

Registration is by (or for) the company's legal representative, checked against the
enterprise registry (:class:`adapters.base.EnterpriseRegistry`): the registry must know the
credit code, list the company as active, and name this citizen's ID number as its
representative.  The credit code is stored like an identity number (encrypted, found by keyed
digest, masked for display; :mod:`idp.accounts.privacy`).

A company's status changes (suspended, deregistered) end every mandate and every session
acting for it through :func:`idp.interaction.sessions.end_sessions`, the one way sessions end.
Mandates are offered by the representative or a company admin, accepted by the agent, ended
by either side or by an operator.  Every change is audited.  The reading side (is a mandate
live, the ``authority`` claim) is :mod:`idp.accounts.mandates`.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from adapters.base import AdapterError, AdapterUnavailable, EnterpriseRecord, EnterpriseRegistry
from idp import audit
from idp.accounts.entity_assurance import (
    licence_evidence,
    record_entity_verification,
    registry_evidence,
    withdraw_verifications,
)
from idp.accounts.identifiers import IdentifierError, normalize_credit_code
from idp.accounts.mandates import COMPANY_ADMIN, REPRESENTATIVE, mandate_is_live
from idp.accounts.privacy import IdentityVault, mask
from idp.interaction.sessions import Ended, end_sessions
from idp.services import Services
from idp.storage import repo
from idp.storage.models import Grant, LegalEntity, Mandate, SsoSession, User, utcnow

log = logging.getLogger(__name__)

STATUSES = ("active", "suspended", "deregistered")
#: A mandate's end date is inclusive, in China Standard Time (UTC+8): it ends at the
#: following midnight there.
CHINA_TIME = dt.timezone(dt.timedelta(hours=8))
KINDS = ("enterprise", "individual-business", "institution", "social-organization", "other")


class EntityError(ValueError):
    """A company or mandate change refused; ``field`` names the input, the message is ASCII."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class RegistryUnavailableError(EntityError):
    """The enterprise registry cannot be asked now (or none is configured): try later."""


# ------------------------------------------------------------------ companies
def find_entity(session: Session, vault: IdentityVault, ref: str) -> LegalEntity | None:
    """The company with id ``ref``, or whose unified social credit code ``ref`` is."""
    ref = (ref or "").strip()
    if not ref:
        return None
    if len(ref) <= 64:
        row = session.get(LegalEntity, ref)
        if row is not None:
            return row
    try:
        code = normalize_credit_code(ref)
    except IdentifierError:
        return None
    return session.scalars(
        select(LegalEntity).where(LegalEntity.credit_code_digest == vault.digest(code))
    ).first()


def credit_code_of(vault: IdentityVault, entity: LegalEntity) -> str:
    return vault.open(entity.credit_code_ciphertext)


def entity_summary(entity: LegalEntity) -> dict[str, object]:
    """What the CLI and the admin API show of a company (the credit code masked)."""
    return {
        "id": entity.id,
        "name": entity.name,
        "credit_code": entity.credit_code_masked,
        "kind": entity.kind,
        "region": entity.region,
        "status": entity.status,
        "representative": entity.representative_id,
    }


def register_entity(
    session: Session,
    *,
    vault: IdentityVault,
    registry: EnterpriseRegistry | None,
    credit_code: str,
    representative: User,
    name: str | None = None,
    kind: str = "enterprise",
    actor: str,
    ip: str | None = None,
    valid_days: int = 365,
) -> LegalEntity:
    """Register a company whose legal representative is ``representative`` (a citizen).

    Refused (:class:`EntityError`): a malformed credit code, a company already registered, a
    company the registry does not know or does not list as active, a representative who is not
    a citizen with an ID number or not the one the registry names.  The registry's match is
    stored as the company's L3 verification (valid ``valid_days``).
    """
    try:
        code = normalize_credit_code(credit_code)
    except IdentifierError as exc:
        raise EntityError("credit_code", str(exc)) from None
    if kind not in KINDS:
        raise EntityError("kind", f"kind must be one of {', '.join(KINDS)}")
    if representative.kind != "citizen" or representative.id_number_ciphertext is None:
        raise EntityError("representative", "the representative must be a citizen account")
    if not representative.is_active:
        raise EntityError("representative", "the representative's account is not active")
    digest = vault.digest(code)
    if session.scalars(
        select(LegalEntity.id).where(LegalEntity.credit_code_digest == digest)
    ).first():
        raise EntityError("credit_code", "this company is already registered")
    record = _ask_registry(registry, code)
    if record is None:
        raise EntityError("credit_code", "the enterprise registry does not know this company")
    if record.status != "active":
        raise EntityError("credit_code", f"the enterprise registry lists it as {record.status}")
    id_number = vault.open(representative.id_number_ciphertext)
    if record.representative_id_number != id_number:
        audit.record(
            session,
            "entity.register",
            actor=actor,
            target=representative.id,
            outcome="failure",
            ip=ip,
            details={"credit_code": mask(code), "reason": "not_representative"},
        )
        raise EntityError(
            "representative", "the registry names someone else as the legal representative"
        )
    now = utcnow()
    entity = LegalEntity(
        id=repo.new_id(),
        credit_code_ciphertext=vault.seal(code),
        credit_code_digest=digest,
        credit_code_masked=mask(code),
        name=(name or record.name).strip()[:200] or record.name,
        kind=kind,
        region=code[2:8],
        status="active",
        representative_id=representative.id,
        created_at=now,
    )
    session.add(entity)
    session.flush()
    audit.record(
        session,
        "entity.register",
        actor=actor,
        target=entity.id,
        ip=ip,
        details={"credit_code": entity.credit_code_masked, "representative": representative.id},
    )
    record_entity_verification(
        session,
        entity,
        "L3",
        registry_evidence(record, now),
        verifier=actor,
        valid_days=valid_days,
        ip=ip,
    )
    return entity


def _ask_registry(registry: EnterpriseRegistry | None, code: str) -> EnterpriseRecord | None:
    """The registry's record (None only when it says it does not know the company).

    An outage and an answer that cannot be used (an error status, no JSON, a record of
    another code) are both :class:`RegistryUnavailableError`: nothing may be decided on
    them, least of all "unknown company", which would suspend it at a re-verification.
    """
    if registry is None:
        raise RegistryUnavailableError("credit_code", "no enterprise registry is configured")
    try:
        return registry.lookup(code)
    except AdapterUnavailable as exc:
        log.warning("enterprise registry unavailable: %s", exc)
        raise RegistryUnavailableError(
            "credit_code", "the enterprise registry is unavailable"
        ) from None
    except AdapterError as exc:
        log.warning("enterprise registry answer unusable: %s", exc)
        raise RegistryUnavailableError(
            "credit_code", "the enterprise registry gave no usable answer"
        ) from None


def reverify_entity(
    session: Session,
    services: Services,
    entity: LegalEntity,
    *,
    actor: str,
    ip: str | None = None,
) -> Ended:
    """Ask the enterprise registry again (a company's L3 lapses after its validity period).

    The registry still backs the company: a new L3 record.  It lists the company as revoked
    (吊销) or deregistered (注销): every record is withdrawn and the company is suspended or
    deregistered here too, ending its mandates and acting sessions.  It names another legal
    representative: the records are withdrawn and the company suspended until an operator
    settles the case (the person here may no longer act for it).  Raises
    :class:`EntityError` for those two outcomes after making them, so the caller commits
    and says why; :class:`RegistryUnavailableError` changes nothing.
    """
    if entity.status != "active":
        raise EntityError("entity", "the company is not active")
    code = credit_code_of(services.vault, entity)
    record = _ask_registry(services.enterprises, code)
    problem: str | None = None
    new_status = "suspended"
    representative = session.get(User, entity.representative_id)
    if record is None or record.status != "active":
        problem = "registry_" + (record.status if record is not None else "unknown")
        new_status = (
            "deregistered"
            if record is not None and record.status == "deregistered"
            else "suspended"
        )
    elif (
        representative is None
        or representative.id_number_ciphertext is None
        or (
            services.vault.open(representative.id_number_ciphertext)
            != record.representative_id_number
        )
    ):
        problem = "representative_changed"
    if problem is None:
        assert record is not None
        record_entity_verification(
            session,
            entity,
            "L3",
            registry_evidence(record, utcnow()),
            verifier=actor,
            valid_days=services.settings.entity_verification_valid_days,
            ip=ip,
        )
        return Ended(services.logout)
    withdraw_verifications(session, entity, problem, actor=actor, ip=ip)
    ended = set_entity_status(session, services, entity, new_status, actor=actor, ip=ip)
    raise EntityChangedError(
        "entity", f"the enterprise registry no longer backs it: {problem}", ended
    )


class EntityChangedError(EntityError):
    """A re-verification failed and changed the company (withdrawn, suspended): commit it."""

    def __init__(self, field: str, message: str, ended: Ended) -> None:
        super().__init__(field, message)
        self.ended = ended


def verify_entity_licence(
    session: Session,
    services: Services,
    entity: LegalEntity,
    presentation: str,
    *,
    actor: str,
    ip: str | None = None,
) -> None:
    """Raise the company to L5 with an electronic business licence (电子营业执照) that the
    licence service confirms is this company's; an invalid one is refused and audited."""
    if entity.status != "active":
        raise EntityError("entity", "the company is not active")
    presentation = (presentation or "").strip()
    if not presentation or len(presentation) > 8192:
        raise EntityError("presentation", "give the licence presentation")
    if services.licences is None:
        raise RegistryUnavailableError(
            "presentation", "no electronic business licence service is configured"
        )
    code = credit_code_of(services.vault, entity)
    try:
        check = services.licences.check_licence(code, presentation)
    except AdapterUnavailable:
        raise RegistryUnavailableError(
            "presentation", "the electronic business licence service is unavailable"
        ) from None
    if not check.valid or check.credit_code.upper() != code:
        audit.record(
            session,
            "entity.verify",
            actor=actor,
            target=entity.id,
            outcome="failure",
            ip=ip,
            details={"method": "e-licence", "reason": "licence_not_valid"},
        )
        raise EntityError("presentation", "the licence service did not confirm this licence")
    record_entity_verification(
        session,
        entity,
        "L5",
        licence_evidence(check, utcnow()),
        verifier=actor,
        valid_days=services.settings.entity_verification_valid_days,
        ip=ip,
    )


def end_acting_sessions(
    session: Session, services: Services, entity_id: str, *, reason: str
) -> Ended:
    """End every SSO session with a live grant acting for the company, then revoke any such
    grant left (offline ones, not bound to a session)."""
    found = list(
        session.execute(
            select(Grant.id, Grant.sid).where(
                Grant.entity_id == entity_id, Grant.revoked_at.is_(None)
            )
        )
    )
    sids = {sid for _gid, sid in found if sid is not None}
    rows: list[SsoSession] = []
    if sids:
        rows = list(
            session.scalars(
                select(SsoSession).where(SsoSession.id.in_(sids), SsoSession.ended_at.is_(None))
            )
        )
    ended = end_sessions(session, services, rows, reason=reason)
    for gid, _sid in found:
        repo.revoke_grant(session, gid, reason)
        if gid not in ended.revoked_grants:
            ended.revoked_grants.append(gid)
    return ended


def revoke_mandate_grants(session: Session, mandate_id: str, reason: str) -> list[str]:
    """Revoke every grant (and so every token) acting on a mandate."""
    ids = list(
        session.scalars(
            select(Grant.id).where(Grant.mandate_id == mandate_id, Grant.revoked_at.is_(None))
        )
    )
    for gid in ids:
        repo.revoke_grant(session, gid, reason)
    return ids


def set_entity_status(
    session: Session,
    services: Services,
    entity: LegalEntity,
    status: str,
    *,
    actor: str,
    ip: str | None = None,
) -> Ended:
    """Change a company's status; leaving ``active`` ends its mandates and acting sessions."""
    if status not in STATUSES:
        raise EntityError("status", f"status must be one of {', '.join(STATUSES)}")
    if entity.status == "deregistered" and status != "deregistered":
        raise EntityError("status", "a deregistered company cannot be reactivated")
    old = entity.status
    now = utcnow()
    entity.status = status
    entity.status_changed_at = now
    ended = Ended(services.logout)
    mandates_ended = 0
    if status != "active":
        for mandate in session.scalars(
            select(Mandate).where(Mandate.entity_id == entity.id, Mandate.ended_at.is_(None))
        ):
            mandate.ended_at, mandate.ended_by, mandate.end_reason = now, actor, f"entity_{status}"
            mandates_ended += 1
        session.flush()
        ended = end_acting_sessions(session, services, entity.id, reason=f"entity_{status}")
    audit.record(
        session,
        f"entity.{status}" if status != "active" else "entity.reactivate",
        actor=actor,
        target=entity.id,
        ip=ip,
        details={
            "from": old,
            "mandates": mandates_ended,
            "sessions": len(ended.sids),
            "grants": len(ended.revoked_grants),
        },
    )
    return ended


# ------------------------------------------------------------------ mandates
def end_of_day(day: dt.date) -> dt.datetime:
    """The moment a mandate "until ``day``" (inclusive, China time) ends, in UTC."""
    midnight = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), CHINA_TIME)
    return midnight.astimezone(dt.UTC)


def managed_by(session: Session, user: User, now: dt.datetime) -> list[LegalEntity]:
    """The active companies whose mandates ``user`` may grant and end (as representative or
    company admin), by name."""
    admin_of = {
        m.entity_id
        for m in session.scalars(
            select(Mandate).where(
                Mandate.user_id == user.id,
                Mandate.role == COMPANY_ADMIN,
                Mandate.ended_at.is_(None),
            )
        )
        if mandate_is_live(m, now)
    }
    return list(
        session.scalars(
            select(LegalEntity)
            .where(
                LegalEntity.status == "active",
                (LegalEntity.representative_id == user.id) | LegalEntity.id.in_(admin_of),
            )
            .order_by(LegalEntity.name)
        )
    )


@dataclass(frozen=True)
class MandateOffer:
    """What a mandate gives: a role, optionally some clients, from when until when."""

    role: str
    valid_until: dt.datetime
    valid_from: dt.datetime | None = None
    client_ids: tuple[str, ...] | None = None


def may_manage(session: Session, entity: LegalEntity, user: User, now: dt.datetime) -> str | None:
    """In what capacity ``user`` may grant and end mandates of ``entity`` (None: may not)."""
    if entity.representative_id == user.id:
        return REPRESENTATIVE
    for mandate in session.scalars(
        select(Mandate).where(
            Mandate.entity_id == entity.id,
            Mandate.user_id == user.id,
            Mandate.role == COMPANY_ADMIN,
        )
    ):
        if mandate_is_live(mandate, now):
            return COMPANY_ADMIN
    return None


def grant_mandate(
    session: Session,
    entity: LegalEntity,
    agent: User,
    offer: MandateOffer,
    *,
    roles: Iterable[str],
    granter: User | None,
    actor: str,
    known_client: object = None,
    accepted: bool = False,
    ip: str | None = None,
) -> Mandate:
    """Offer ``agent`` a mandate for ``entity``; it works once the agent accepts it.

    ``granter`` is the representative or a company admin acting in person; None means an
    operator (CLI, admin API), who may also record the agent's acceptance (``accepted``:
    the agent signed the paper form at a counter).  ``known_client(client_id)`` says whether
    a client exists; unknown clients are refused.
    """
    now = utcnow()
    if entity.status != "active":
        raise EntityError("entity", "the company is not active")
    if offer.role not in tuple(roles):
        raise EntityError("role", f"role must be one of {', '.join(roles)}")
    if granter is None:
        granted_as = "operator"
    else:
        capacity = may_manage(session, entity, granter, now)
        if capacity is None:
            raise EntityError("entity", "only the representative or a company admin may do this")
        granted_as = capacity
    if agent.kind != "citizen" or not agent.is_active:
        raise EntityError("user", "an agent must be an active citizen account")
    if agent.id == entity.representative_id:
        raise EntityError("user", "the legal representative needs no mandate")
    valid_from = offer.valid_from or now
    if offer.valid_until <= max(valid_from, now):
        raise EntityError("valid_until", "the mandate must end in the future, after it starts")
    clients = None
    if offer.client_ids is not None:
        clients = sorted(set(offer.client_ids))
        if not clients:
            raise EntityError("client", "name at least one client, or none for all")
        unknown = [c for c in clients if callable(known_client) and not known_client(c)]
        if unknown:
            raise EntityError("client", f"unknown client: {', '.join(unknown)}")
    for live in session.scalars(
        select(Mandate).where(
            Mandate.entity_id == entity.id, Mandate.user_id == agent.id, Mandate.ended_at.is_(None)
        )
    ):
        # One standing mandate per agent and company: a new one replaces the old.
        live.ended_at, live.ended_by, live.end_reason = now, actor, "replaced"
        revoke_mandate_grants(session, live.id, "mandate_replaced")
    mandate = Mandate(
        id=repo.new_id(),
        entity_id=entity.id,
        user_id=agent.id,
        role=offer.role,
        client_ids=clients,
        valid_from=valid_from,
        valid_until=offer.valid_until,
        granted_by=granter.id if granter is not None else actor,
        granted_as=granted_as,
        created_at=now,
        accepted_at=now if accepted and granter is None else None,
    )
    session.add(mandate)
    session.flush()
    audit.record(
        session,
        "mandate.grant",
        actor=actor,
        target=mandate.id,
        ip=ip,
        details={
            "entity": entity.id,
            "agent": agent.id,
            "role": offer.role,
            "clients": clients,
            "valid_until": offer.valid_until.isoformat(),
            "accepted": mandate.accepted_at is not None,
        },
    )
    return mandate


def accept_mandate(
    session: Session, mandate: Mandate, agent: User, *, ip: str | None = None
) -> None:
    """The agent accepts an offered mandate (only they can)."""
    now = utcnow()
    if mandate.user_id != agent.id:
        raise EntityError("mandate", "this mandate was offered to someone else")
    if mandate.ended_at is not None or mandate.valid_until <= now:
        raise EntityError("mandate", "this mandate has ended")
    if mandate.accepted_at is not None:
        return
    entity = session.get(LegalEntity, mandate.entity_id)
    if entity is None or entity.status != "active":
        raise EntityError("entity", "the company is not active")
    mandate.accepted_at = now
    audit.record(
        session,
        "mandate.accept",
        actor=agent.id,
        target=mandate.id,
        ip=ip,
        details={"entity": mandate.entity_id},
    )


def end_mandate(
    session: Session,
    mandate: Mandate,
    *,
    by: User | None,
    actor: str,
    reason: str = "revoked",
    ip: str | None = None,
) -> list[str]:
    """End a mandate: by the agent, the representative, a company admin, or an operator
    (``by`` None).  Tokens acting on it stop working at once: its grants are revoked (the
    agent's own sessions go on).  Returns the revoked grant ids."""
    entity = session.get(LegalEntity, mandate.entity_id)
    assert entity is not None
    now = utcnow()
    if by is not None and by.id != mandate.user_id and may_manage(session, entity, by, now) is None:
        raise EntityError("mandate", "only the agent, the representative or a company admin")
    if mandate.ended_at is None:
        mandate.ended_at, mandate.ended_by, mandate.end_reason = now, actor, reason
    revoked = revoke_mandate_grants(session, mandate.id, f"mandate_{reason}")
    audit.record(
        session,
        "mandate.end",
        actor=actor,
        target=mandate.id,
        ip=ip,
        details={
            "entity": entity.id,
            "agent": mandate.user_id,
            "reason": reason,
            "grants": len(revoked),
        },
    )
    return revoked


def standing_mandate(session: Session, entity: LegalEntity, agent: User) -> Mandate | None:
    """The agent's mandate for the company that has not ended (offered or accepted)."""
    return session.scalars(
        select(Mandate).where(
            Mandate.entity_id == entity.id, Mandate.user_id == agent.id, Mandate.ended_at.is_(None)
        )
    ).first()

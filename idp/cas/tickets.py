"""CAS service tickets: issued from the SSO session, validated once, and single logout.

- **Issue** (:func:`issue_ticket`): ``ST-`` and 256 random bits (CAS 3.0 §3.7: at least 32
  characters, unguessable); the database keeps the SHA-256 digest only, the service URL it
  was issued for, the SSO session (``sid``) and whether it came from fresh credentials
  (``renew``, §2.1.1).  Audited.
- **Validate** (:func:`validate_ticket`): the ticket is spent first, by an atomic
  compare-and-set (:func:`idp.storage.repo.consume_cas_ticket`), whatever follows (§3.1.1:
  a validation attempt always invalidates the ticket); then it must not be past
  ``cas_ticket_lifetime``, must name the exact same service URL (§2.5), must satisfy
  ``renew`` and its session must still be live.  Every attempt, good or bad, is audited.
- **Single logout** (:func:`queue_single_logout`): when the SSO session ends — through
  :func:`idp.interaction.sessions.end_sessions`, the one way sessions end — every service
  that validated a ticket of that session gets a SAML ``LogoutRequest`` POSTed to its
  service URL (Appendix C), queued in the same outbox as back-channel logout tokens and
  delivered off the request with retries.  The ``SessionIndex`` is the spent ticket: only a
  successful validation records it, and it is forgotten once queued.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from idp import audit
from idp.cas.xml import logout_request
from idp.errors import (
    CasError,
    CasInvalidRequestError,
    CasInvalidServiceError,
    CasInvalidTicketError,
    CasInvalidTicketSpecError,
)
from idp.oauth.claims import available_claims
from idp.storage import repo
from idp.storage.models import CasService, CasTicket, LogoutDelivery, SsoSession, User, utcnow

TICKET_PREFIX = "ST-"
MAX_TICKET = 256  # CAS 3.0 §3.7: services must accept tickets up to 256 characters
CAS_LOGOUT_PARAMETER = "logoutRequest"


def issue_ticket(
    session: Session,
    service_row: CasService,
    service: str,
    sso: SsoSession,
    *,
    primary: bool,
    lifetime: int,
    ip: str | None = None,
    now: dt.datetime | None = None,
) -> str:
    """A new service ticket for ``service`` in ``sso``; the caller commits."""
    now = now or utcnow()
    if secrets.randbelow(100) == 0:  # purge now and then: expired and never validated
        session.execute(
            delete(CasTicket)
            .where(CasTicket.expires_at < now, CasTicket.session_index.is_(None))
            .execution_options(synchronize_session=False)
        )
    raw = TICKET_PREFIX + repo.new_secret(32)
    session.add(
        CasTicket(
            digest=repo.digest(raw),
            service_id=service_row.id,
            service=service,
            user_id=sso.user_id,
            sid=sso.id,
            primary=primary,
            created_at=now,
            expires_at=now + dt.timedelta(seconds=lifetime),
        )
    )
    audit.record(
        session,
        "cas.ticket.issue",
        actor=sso.user_id,
        target=f"cas:{service_row.id}",
        ip=ip,
        details={"sid": sso.id, "primary": primary, "service": service[:300]},
    )
    return raw


def service_with_ticket(service: str, ticket: str) -> str:
    """The service URL with ``ticket`` appended to its query (CAS 3.0 §2.2.4)."""
    sep = "&" if urlsplit(service).query else "?"
    return service + sep + urlencode({"ticket": ticket})


@dataclass(frozen=True)
class Validated:
    """A ticket that passed: who, for which service, and how they signed in."""

    user: User
    service: CasService
    primary: bool
    auth_time: dt.datetime

    def attributes(self) -> dict[str, list[Any]]:
        """The service's released claims with a value, plus the CAS 3.0 standard ones."""
        claims = available_claims(self.user)
        out: dict[str, list[Any]] = {}
        for name in self.service.attributes or []:
            value = claims.get(name)
            if value is None:
                continue
            out[name] = list(value) if isinstance(value, list | tuple) else [value]
        out["isFromNewLogin"] = [self.primary]
        out["authenticationDate"] = [self.auth_time.astimezone(dt.UTC).isoformat()]
        return out


def _check(
    session: Session, ticket: str | None, service: str | None, *, renew: bool, now: dt.datetime
) -> tuple[CasTicket, Validated]:
    if not ticket or not service:
        raise CasInvalidRequestError("ticket and service are required")
    if not ticket.startswith(TICKET_PREFIX) or not repo.usable_identifier(ticket, MAX_TICKET):
        raise CasInvalidTicketError("ticket not recognized")
    row = session.get(CasTicket, repo.digest(ticket))
    if row is None:
        raise CasInvalidTicketError("ticket not recognized")
    if not repo.consume_cas_ticket(session, row, now):
        raise CasInvalidTicketError("ticket already used")
    if now >= row.expires_at:
        raise CasInvalidTicketError("ticket expired")
    if row.service != service:
        raise CasInvalidServiceError("ticket was not issued for this service")
    service_row = session.get(CasService, row.service_id)
    if service_row is None or not service_row.enabled:
        raise CasInvalidServiceError("service is no longer registered")
    if renew and not row.primary:
        raise CasInvalidTicketSpecError("renew requested; ticket came from single sign-on")
    sso = session.get(SsoSession, row.sid)
    user = session.get(User, row.user_id)
    if sso is None or sso.ended_at is not None or user is None or not user.is_active:
        raise CasInvalidTicketError("the sign-in session of this ticket has ended")
    return row, Validated(user, service_row, row.primary, sso.auth_time)


def validate_ticket(
    session: Session,
    ticket: str | None,
    service: str | None,
    *,
    renew: bool,
    protocol: str,
    ip: str | None = None,
    now: dt.datetime | None = None,
) -> Validated:
    """Spend and check ``ticket`` for ``service``; audit and commit either way.

    Raises a :class:`~idp.errors.CasError` subclass named by the CAS error code.
    """
    now = now or utcnow()
    details: dict[str, Any] = {"protocol": protocol, "service": (service or "")[:300]}
    try:
        row, validated = _check(session, ticket, service, renew=renew, now=now)
    except CasError as exc:
        audit.record(
            session,
            "cas.ticket.validate",
            actor="cas-service",
            outcome="failure",
            ip=ip,
            details={**details, "error": exc.code, "reason": exc.description},
        )
        session.commit()
        raise
    # Spent now; kept as the SessionIndex of single logout (it grants nothing any more).
    session.execute(
        update(CasTicket)
        .where(CasTicket.digest == row.digest)
        .values(session_index=ticket)
        .execution_options(synchronize_session=False)
    )
    audit.record(
        session,
        "cas.ticket.validate",
        actor=f"cas:{validated.service.id}",
        target=validated.user.id,
        ip=ip,
        details={**details, "sid": row.sid, "primary": row.primary},
    )
    session.commit()
    return validated


def queue_single_logout(session: Session, sid: str, now: dt.datetime) -> list[LogoutDelivery]:
    """Queue a ``LogoutRequest`` for each service that validated a ticket of session ``sid``.

    Called by :func:`idp.interaction.sessions.end_sessions` inside its transaction; the
    caller flushes, commits and kicks the dispatcher.
    """
    rows = list(
        session.scalars(
            select(CasTicket).where(CasTicket.sid == sid, CasTicket.session_index.is_not(None))
        )
    )
    deliveries: list[LogoutDelivery] = []
    for row in rows:
        service_row = session.get(CasService, row.service_id)
        if service_row is not None and service_row.enabled and row.session_index:
            delivery = LogoutDelivery(
                client_id=f"cas:{service_row.id}",
                uri=row.service,
                logout_token=logout_request(row.session_index, row.user_id, now),
                parameter=CAS_LOGOUT_PARAMETER,
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
            session.add(delivery)
            deliveries.append(delivery)
        row.session_index = None  # told once; the spent ticket is no longer kept
    return deliveries

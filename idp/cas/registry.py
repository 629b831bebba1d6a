"""Registered CAS services: who may receive a ticket, and which attributes they see.

A service is named either by its exact URL or by a regular expression an administrator
sets.  A pattern must be anchored (``^…$``) and must begin with a literal scheme and host
followed by ``/`` (``^https://portal\\.gov\\.example/.*$``), so no pattern can hand tickets to
another host: a bare wildcard such as ``^.*$`` or ``^https://.*$`` is refused.  The URL a
browser brings is checked like a redirect URI first (https, or http on loopback; no userinfo,
fragment or backslash), then matched in full.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from idp import audit
from idp.oauth.claims import SCOPE_CLAIMS
from idp.oauth.clients import ClientRegistrationError, validate_redirect_uri
from idp.storage.models import CasService
from idp.storage.repo import new_id

MAX_SERVICE = 2000
MAX_PATTERN = 500
#: Claims that can be released as CAS attributes (the OpenID Connect claim names).
RELEASABLE = frozenset(c for claims in SCOPE_CLAIMS.values() for c in claims) - {"sub"}
# ^ scheme :// literal host (letters, digits, hyphens, escaped dots) [:port] /
_PATTERN_HEAD = re.compile(r"^\^https?://(?:[A-Za-z0-9-]+\\\.)*[A-Za-z0-9-]+(?::[0-9]{1,5})?/")


class CasServiceError(ValueError):
    """Service registration refused; the message says which value and why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class CasServiceSpec:
    """What an administrator registers (CLI ``yitong cas services add`` or the admin API)."""

    name: str
    service_url: str | None = None
    service_pattern: str | None = None
    attributes: list[str] = field(default_factory=list)


def check_service_url(url: str, what: str = "service URL") -> str:
    """``url`` if a ticket may be sent there (the redirect-URI rules), else raise."""
    if len(url) > MAX_SERVICE:
        raise CasServiceError(f"{what} is longer than {MAX_SERVICE} characters")
    try:
        return validate_redirect_uri(url, public=False, what=what)
    except ClientRegistrationError as exc:
        raise CasServiceError(exc.message) from None


def check_pattern(pattern: str) -> re.Pattern[str]:
    """The compiled pattern if it is anchored and pins its scheme and host, else raise."""
    if len(pattern) > MAX_PATTERN:
        raise CasServiceError(f"service pattern is longer than {MAX_PATTERN} characters")
    if not pattern.endswith("$") or pattern.endswith("\\$"):
        raise CasServiceError("service pattern must be anchored: end it with $")
    if not _PATTERN_HEAD.match(pattern):
        raise CasServiceError(
            "service pattern must start with ^, a literal scheme and host (dots escaped) "
            r"and a slash, for example ^https://portal\.gov\.example/.*$"
        )
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise CasServiceError(f"service pattern is not a regular expression: {exc}") from None


def check_spec(spec: CasServiceSpec) -> CasServiceSpec:
    """Refuse anything but a named service with one URL or one pattern and known claims."""
    name = spec.name.strip()
    if not name or len(name) > 200 or not name.isprintable():
        raise CasServiceError("name must be 1 to 200 printable characters")
    if (spec.service_url is None) == (spec.service_pattern is None):
        raise CasServiceError("give exactly one of a service URL or a service pattern")
    if spec.service_url is not None:
        check_service_url(spec.service_url)
    if spec.service_pattern is not None:
        check_pattern(spec.service_pattern)
    unknown = sorted(set(spec.attributes) - RELEASABLE)
    if unknown:
        raise CasServiceError(
            f"unknown attribute(s) {', '.join(unknown)}; "
            f"releasable: {', '.join(sorted(RELEASABLE))}"
        )
    return CasServiceSpec(
        name=name,
        service_url=spec.service_url,
        service_pattern=spec.service_pattern,
        attributes=list(dict.fromkeys(spec.attributes)),
    )


def create_service(session: Session, spec: CasServiceSpec, *, actor: str) -> CasService:
    """Register a service and audit it (the caller commits)."""
    spec = check_spec(spec)
    row = CasService(
        id=new_id(),
        name=spec.name,
        service_url=spec.service_url,
        service_pattern=spec.service_pattern,
        attributes=list(spec.attributes),
        enabled=True,
        created_by=actor[:200],
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        "cas.service.create",
        actor=actor,
        target=row.id,
        details={"name": row.name, "attributes": list(row.attributes)},
    )
    return row


def list_services(session: Session) -> list[CasService]:
    return list(session.scalars(select(CasService).order_by(CasService.created_at)))


def service_summary(row: CasService) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "service": row.service_url,
        "pattern": row.service_pattern,
        "attributes": list(row.attributes or []),
        "enabled": row.enabled,
    }


def find_service(session: Session, service: str | None) -> CasService | None:
    """The enabled registered service ``service`` belongs to, or None.

    An exact URL registration wins over a pattern; the URL must pass the redirect-URI
    checks whatever a pattern would allow.
    """
    if not service:
        return None
    try:
        check_service_url(service)
    except CasServiceError:
        return None
    rows = [r for r in list_services(session) if r.enabled]
    for row in rows:
        if row.service_url is not None and row.service_url == service:
            return row
    for row in rows:
        if row.service_pattern is not None and re.fullmatch(row.service_pattern, service):
            return row
    return None

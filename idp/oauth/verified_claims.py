"""OpenID Connect for Identity Assurance 1.0: ``verified_claims`` requests and responses.

Requests come through the ``claims`` parameter (OIDC Core §5.5) for ``id_token`` and
``userinfo``: one object or an array of them, each with a ``verification`` (constraints on
``trust_framework``, ``assurance_level``, ``time.max_age``, ``evidence[].type``) and the
``claims`` wanted.  Answers follow the omission rules (OIDC4IDA §6): an element whose
constraints no verification meets is left out, as are claims we do not know, claims the
client is not allowed (its release policy, :mod:`idp.oauth.release`) and claims without a
value; nothing of that is an error.  Only the request's *shape* can be an error
(``invalid_request``, checked at the authorization endpoint).

The trust framework, levels and evidence are defined in docs/identity-assurance.md.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from sqlalchemy.orm import Session

from idp import audit
from idp.accounts.assurance import LEVELS, TRUST_FRAMEWORK, rank, verifications_of
from idp.accounts.entity_assurance import live_entity_verifications
from idp.accounts.privacy import IdentityVault
from idp.errors import InvalidRequestError
from idp.storage.models import Client, Grant, LegalEntity, User, utcnow
from idp.storage.rows import GrantRow, UserRow

#: Claims that can be released inside ``verified_claims``.
VERIFIED_CLAIMS: tuple[str, ...] = ("name", "birthdate", "resident_id_number")
#: Claims whose every release is audited (identity numbers and what they encode).
SENSITIVE_CLAIMS = frozenset({"resident_id_number", "birthdate"})
EVIDENCE_SUPPORTED: tuple[str, ...] = ("document", "electronic_record", "electronic_signature")
DOCUMENTS_SUPPORTED: tuple[str, ...] = ("idcard",)
#: Levels whose records count as *verified* (L2 is self-declared).
VERIFIED_LEVELS: tuple[str, ...] = LEVELS[1:]
PURPOSE_MIN, PURPOSE_MAX = 3, 300


def discovery_metadata() -> dict[str, Any]:
    """The OIDC4IDA members of the provider metadata (one document: oauth/discovery.py)."""
    return {
        "verified_claims_supported": True,
        "trust_frameworks_supported": [TRUST_FRAMEWORK],
        "claims_in_verified_claims_supported": list(
            dict.fromkeys([*VERIFIED_CLAIMS, *ENTITY_VERIFIED_CLAIMS])
        ),
        "evidence_supported": list(EVIDENCE_SUPPORTED),
        "documents_supported": list(DOCUMENTS_SUPPORTED),
    }


# ------------------------------------------------------------------ the request's shape
def _check_purposes(node: Any, where: str) -> None:
    """Every ``purpose`` string anywhere in the request is 3 to 300 characters (OIDC4IDA)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "purpose":
                if not isinstance(value, str) or not PURPOSE_MIN <= len(value) <= PURPOSE_MAX:
                    raise InvalidRequestError(
                        f"claims: {where}.purpose must be 3 to 300 characters"
                    )
            else:
                _check_purposes(value, f"{where}.{key}")
    elif isinstance(node, list):
        for item in node:
            _check_purposes(item, where)


def validate_request(name: str, value: Any) -> None:
    """``verified_claims`` in the claims parameter: null, an object or an array of objects.

    Only the shape is refused; unknown members and unmet constraints are the response's
    business (omitted there).
    """
    if value is None:
        return
    elements = value if isinstance(value, list) else [value]
    for element in elements:
        if not isinstance(element, dict):
            raise InvalidRequestError(f"claims: {name} must be an object or an array of objects")
        for member in ("verification", "claims"):
            if element.get(member) is not None and not isinstance(element[member], dict):
                raise InvalidRequestError(f"claims: {name}.{member} must be an object")
        _check_purposes(element, name)


# ------------------------------------------------------------------ constraints
def _accepts(constraint: Any, actual: Any) -> bool:
    """A claim request (null or {value|values}) accepts ``actual``; no filter accepts all."""
    if not isinstance(constraint, dict):
        return True
    if "value" in constraint:
        return bool(constraint["value"] == actual)
    if "values" in constraint and isinstance(constraint["values"], list):
        return actual in constraint["values"]
    return True


def _evidence_matches(wanted: Any, evidence: list[Any]) -> list[dict[str, Any]] | None:
    """The record's evidence meeting the ``evidence`` constraints, or None when unmet."""
    if not isinstance(wanted, list) or not wanted:
        return [e for e in evidence if isinstance(e, dict)]
    picked: list[dict[str, Any]] = []
    for constraint in wanted:
        type_filter = constraint.get("type") if isinstance(constraint, dict) else None
        matching = [
            e for e in evidence if isinstance(e, dict) and _accepts(type_filter, e.get("type"))
        ]
        if not matching:
            return None
        picked.extend(e for e in matching if e not in picked)
    return picked


def _meets(verification: Mapping[str, Any], row: _Record, now: dt.datetime) -> bool:
    if not _accepts(verification.get("trust_framework"), TRUST_FRAMEWORK):
        return False
    if not _accepts(verification.get("assurance_level"), row.level):
        return False
    time = verification.get("time")
    max_age = time.get("max_age") if isinstance(time, dict) else None
    if isinstance(max_age, int) and (now - row.verified_at).total_seconds() > max_age:
        return False
    return _evidence_matches(verification.get("evidence"), list(row.evidence or [])) is not None


# ------------------------------------------------------------------ the answer
def _birthdate(number: str) -> str | None:
    digits = number[6:14]
    if len(number) != 18 or not digits.isdigit():
        return None
    return f"{digits[:4]}-{digits[4:6]}-{digits[6:]}"


def _claim_values(user: User | UserRow, names: list[str], vault: IdentityVault) -> dict[str, Any]:
    number: str | None = None
    if user.id_number_ciphertext and ({"resident_id_number", "birthdate"} & set(names)):
        number = vault.open(user.id_number_ciphertext)
    available: dict[str, Any] = {
        "name": user.name,
        "birthdate": _birthdate(number) if number else None,
        "resident_id_number": number,
    }
    return {n: available[n] for n in names if available.get(n) is not None}


class _Record(Protocol):
    """A verification record: a person's or a company's (same OIDC4IDA shape)."""

    level: str
    verified_at: dt.datetime
    evidence: list[Any]
    txn: str


def _element(
    request: Any,
    allowed: set[str],
    rows: Sequence[_Record],
    values_of: Callable[[list[str]], dict[str, Any]],
    floor: int,
    now: dt.datetime,
) -> dict[str, Any] | None:
    """One ``verified_claims`` answer element, or None when it must be omitted.

    ``allowed`` are the claim names this client may receive here, ``values_of`` gives their
    values, ``floor`` is the lowest rank a record may have to count.
    """
    if not isinstance(request, dict):
        return None
    wanted_claims = request.get("claims")
    verification = request.get("verification")
    if (
        not isinstance(wanted_claims, dict)
        or not wanted_claims
        or not isinstance(verification, dict)
    ):
        return None
    names = [n for n in wanted_claims if n in allowed]
    if not names:
        return None
    for row in rows:
        if row.level not in VERIFIED_LEVELS or rank(row.level) < floor:
            continue
        if not _meets(verification, row, now):
            continue
        values = values_of(names)
        values = {n: v for n, v in values.items() if _accepts(wanted_claims.get(n), v)}
        if not values:
            return None
        out: dict[str, Any] = {"trust_framework": TRUST_FRAMEWORK}
        if "assurance_level" in verification:
            out["assurance_level"] = row.level
        if "time" in verification:
            out["time"] = row.verified_at.isoformat(timespec="seconds").replace("+00:00", "Z")
        if "verification_process" in verification:
            out["verification_process"] = row.txn
        if "evidence" in verification:
            evidence = _evidence_matches(verification.get("evidence"), list(row.evidence or []))
            if evidence:
                out["evidence"] = evidence
        return {"verification": out, "claims": values}
    return None


def _answer(request: Any, element: Callable[[Any], dict[str, Any] | None]) -> Any:
    """One element for an object request, the met ones for an array (None: omit it all)."""
    if isinstance(request, list):
        return [e for e in (element(r) for r in request) if e is not None] or None
    return element(request)


def verified_claims_for(
    session: Session,
    user: User | UserRow,
    client: Client,
    claims_request: Mapping[str, Any] | None,
    target: str,
    vault: IdentityVault,
) -> dict[str, Any]:
    """``{"verified_claims": ...}`` for ``target`` (``id_token``/``userinfo``), or ``{}``.

    Each release of a sensitive claim is audited in ``session`` (the caller commits).
    """
    request = ((claims_request or {}).get(target) or {}).get("verified_claims")
    if request is None or not client.allowed_verified_claims:
        return {}
    rows = verifications_of(session, user.id)
    now = utcnow()
    allowed = set(VERIFIED_CLAIMS) & set(client.allowed_verified_claims)
    floor = rank(client.min_assurance)
    answer = _answer(
        request,
        lambda r: _element(r, allowed, rows, lambda n: _claim_values(user, n, vault), floor, now),
    )
    if not answer:
        return {}
    released = {
        name
        for element in (answer if isinstance(answer, list) else [answer])
        for name in element["claims"]
    }
    sensitive = sorted(released & SENSITIVE_CLAIMS)
    if sensitive:
        audit.record(
            session,
            "claims.release",
            actor=f"client:{client.client_id}",
            target=user.id,
            details={"claims": sensitive, "via": target},
        )
    return {"verified_claims": answer}


# ------------------------------------------------------------------ the company's assurance
#: Claims about the company acted for, released inside ``authority.applies_to``; a client's
#: release policy names them ``entity.<claim>`` in its verified claims.
ENTITY_VERIFIED_CLAIMS: tuple[str, ...] = ("name", "registration_number")
ENTITY_POLICY_NAMES: tuple[str, ...] = tuple(f"entity.{c}" for c in ENTITY_VERIFIED_CLAIMS)


def entity_request(claims_request: Mapping[str, Any] | None, target: str) -> Any:
    """``claims.<target>.authority.applies_to.verified_claims`` (the answer's own path)."""
    authority = ((claims_request or {}).get(target) or {}).get("authority")
    applies_to = authority.get("applies_to") if isinstance(authority, dict) else None
    return applies_to.get("verified_claims") if isinstance(applies_to, dict) else None


def validate_authority_request(name: str, value: Any) -> None:
    """The shape of a company ``verified_claims`` request nested in ``authority``."""
    if not isinstance(value, dict) or not isinstance(value.get("applies_to"), dict):
        return
    nested = value["applies_to"].get("verified_claims")
    validate_request(f"{name}.applies_to.verified_claims", nested)


def with_entity_verified_claims(
    session: Session,
    authority: dict[str, Any] | None,
    grant: Grant | GrantRow,
    client: Client,
    target: str,
    vault: IdentityVault,
) -> dict[str, Any] | None:
    """``authority`` with the company's ``verified_claims`` in ``applies_to`` when the client
    asked for them, may receive them, and the company's verifications meet the request.

    The company's records (:mod:`idp.accounts.entity_assurance`) count only while it is
    active and they are neither expired nor withdrawn; unmet requests are omitted, never an
    error (OIDC4IDA §6).  A release of the registration number is audited.
    """
    request = entity_request(grant.claims, target)
    if authority is None or request is None or grant.entity_id is None:
        return authority
    allowed = {
        c for c in ENTITY_VERIFIED_CLAIMS if f"entity.{c}" in (client.allowed_verified_claims or ())
    }
    entity = session.get(LegalEntity, grant.entity_id)
    if not allowed or entity is None:
        return authority
    now = utcnow()
    rows = live_entity_verifications(session, entity, now)
    values = {"name": entity.name, "registration_number": None}

    def values_of(names: list[str]) -> dict[str, Any]:
        if "registration_number" in names and values["registration_number"] is None:
            values["registration_number"] = vault.open(entity.credit_code_ciphertext)
        return {n: values[n] for n in names}

    answer = _answer(request, lambda r: _element(r, allowed, rows, values_of, 0, now))
    if not answer:
        return authority
    if values["registration_number"] is not None:
        audit.record(
            session,
            "claims.release",
            actor=f"client:{client.client_id}",
            target=grant.user_id,
            details={"claims": ["entity.registration_number"], "via": target, "entity": entity.id},
        )
    applies_to = {**authority.get("applies_to", {}), "verified_claims": answer}
    return {**authority, "applies_to": applies_to}

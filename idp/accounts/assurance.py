"""Identity assurance: how well the person behind an account was identified (issue 10 item 5).

Separate from authentication strength (``acr``).  The ladder (docs/identity-assurance.md):

* ``L2`` self-declared: name and resident ID number passed the format checks (registration);
* ``L3`` name and ID number matched against the population registry (``registry``);
* ``L4`` the real person matched: a face check against the registry photo (``face``);
* ``L5`` the strongest proof: a digital certificate (``certificate``) or in person at a
  counter (``counter``, ``in-person``).

Each verification is an :class:`IdentityVerification` row carrying OIDC4IDA ``evidence``;
the account's level is the highest recorded.  Only this module writes those rows.

An ID number held by an account below L3 never blocks its real holder (issue 15 item 2): a
registration with that number *claims* it, and a verification at L3 or above of a claimant
releases the unverified holder's hold (:func:`settle_id_claim`; audited, and the released
account is told at its confirmed contact point by the caller's ``on_release``).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from adapters.base import AdapterError, AdapterUnavailable, IdentityVerifier, RegistryCheck
from adapters.identity import HttpRegistry, LocalRegistry
from idp import audit
from idp.accounts.privacy import IdentityVault
from idp.config import Settings
from idp.storage.models import IdentityVerification, User, utcnow
from idp.storage.repo import new_id

#: From this level on, an account's hold on its ID number is settled (it cannot be released).
SETTLED_LEVEL = "L3"
#: The OIDC4IDA ``trust_framework`` value for this ladder (documented, not registered).
TRUST_FRAMEWORK = "cn_gov_rnv"
LEVELS: tuple[str, ...] = ("L2", "L3", "L4", "L5")
#: Methods that may establish each level (L2 comes from registration only).
METHODS: dict[str, tuple[str, ...]] = {
    "L2": ("self-declared",),
    "L3": ("registry",),
    "L4": ("face",),
    "L5": ("counter", "in-person", "certificate"),
}
#: The evidence type each method produces (OIDC4IDA 1.0 evidence ``type``).
EVIDENCE_TYPES: dict[str, str] = {
    "registry": "electronic_record",
    "face": "electronic_record",
    "counter": "document",
    "in-person": "document",
    "certificate": "electronic_signature",
}
#: OIDC4IDA predefined ``check_method`` values per method.
CHECK_METHODS: dict[str, str] = {
    "registry": "data",
    "face": "bvr",  # biometric verification against a reference image
    "counter": "pvp",  # physical verification by a person
    "in-person": "pvp",
    "certificate": "vcrypt",  # cryptographic validation of the signature
}


class AssuranceError(ValueError):
    """A verification cannot be recorded as asked; the message says why (ASCII)."""


class VerifierUnavailableError(AssuranceError):
    """The population registry cannot be asked now: try again later."""


def check_extra_evidence(data: object) -> dict[str, Any] | None:
    """The operator's additions to the evidence (``--evidence``, the admin API's
    ``evidence``): a JSON object, never carrying identity or document numbers (the record
    names the check, not the number)."""
    if data is None:
        return None
    if not isinstance(data, dict):
        raise AssuranceError("evidence must be a JSON object")
    if "id_number" in data or "document_number" in json.dumps(data, default=str):
        raise AssuranceError("evidence must not carry identity or document numbers")
    return data


def registry_check(
    verifier: IdentityVerifier | None,
    vault: IdentityVault,
    user: User,
    method: str,
    face_image: bytes | None = None,
) -> RegistryCheck | None:
    """Ask the population registry for the ``registry`` and ``face`` methods (None for the
    others, which record what an operator saw).  A person the registry does not match is
    refused here: nothing is recorded."""
    if method not in ("registry", "face"):
        return None
    if verifier is None:
        raise AssuranceError("no population registry is configured (identity_registry_url)")
    if user.id_number_ciphertext is None:
        raise AssuranceError("this account has no ID number to check")
    if method == "face" and not face_image:
        raise AssuranceError("the face method needs a face image")
    number = vault.open(user.id_number_ciphertext)
    try:
        if method == "registry":
            found = verifier.check_identity(user.name, number)
        else:
            assert face_image is not None
            found = verifier.check_face(number, face_image)
    except AdapterUnavailable as exc:
        raise VerifierUnavailableError(f"the registry is unavailable: {exc}") from None
    except AdapterError as exc:
        raise AssuranceError(f"the registry check failed: {exc}") from None
    if not found.matched:
        raise AssuranceError("the registry did not match this person; nothing recorded")
    return found


def rank(level: str | None) -> int:
    """0 for no level, 2..5 for L2..L5: comparable numbers."""
    return LEVELS.index(level) + 2 if level in LEVELS else 0


def check_level_and_method(level: str, method: str) -> None:
    if level not in LEVELS:
        raise AssuranceError(f"level must be one of {', '.join(LEVELS)}")
    if method not in METHODS[level]:
        raise AssuranceError(f"level {level} is reached by method {' or '.join(METHODS[level])}")


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def build_evidence(
    method: str,
    txn: str,
    when: dt.datetime,
    *,
    registry: RegistryCheck | None = None,
    extra: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """One OIDC4IDA evidence object for ``method``; ``extra`` adds the operator's details
    (for example ``document_details`` at a counter, ``serial_number`` of a certificate)."""
    if method == "self-declared":
        return []
    kind = EVIDENCE_TYPES[method]
    check: dict[str, Any] = {"check_method": CHECK_METHODS[method], "txn": txn, "time": _iso(when)}
    evidence: dict[str, Any] = {"type": kind, "check_details": [check]}
    if registry is not None:
        check["organization"] = registry.source
        check["txn"] = registry.reference
        evidence["record"] = {"type": "population_register", "source": {"name": registry.source}}
    if kind == "document":
        evidence["document_details"] = {"type": "idcard", "issuer": {"country_code": "CHN"}}
    if kind == "electronic_signature":
        evidence.update({"signature_type": "cn_gov_cert", "created_at": _iso(when)})
    for key, value in (extra or {}).items():
        if key == "type":
            continue  # the method decides the evidence type
        evidence[key] = value
    return [evidence]


def record_verification(
    session: Session,
    user: User,
    level: str,
    method: str,
    *,
    verifier: str,
    evidence: Sequence[Mapping[str, Any]] | None = None,
    registry: RegistryCheck | None = None,
    extra: Mapping[str, Any] | None = None,
    ip: str | None = None,
    on_release: Callable[[User], None] | None = None,
) -> IdentityVerification:
    """Store one verification and audit it (the caller commits).

    The L2 record written at registration is covered by the ``user.register`` audit entry.
    At L3 and above a contested ID number is settled (:func:`settle_id_claim`); the account
    it was released from is handed to ``on_release`` (to be told).
    """
    check_level_and_method(level, method)
    if registry is not None and not registry.matched:
        raise AssuranceError("the registry did not match this person")
    now = utcnow()
    txn = new_id()[:32]
    if evidence is None:
        evidence = build_evidence(method, txn, now, registry=registry, extra=extra)
    row = IdentityVerification(
        user_id=user.id,
        level=level,
        method=method,
        evidence=[dict(e) for e in evidence],
        txn=txn,
        verifier=verifier,
        verified_at=now,
    )
    session.add(row)
    session.flush()
    if method == "self-declared":
        return row  # part of registration, which ``user.register`` already audits
    audit.record(
        session,
        "identity.verify",
        actor=verifier,
        target=user.id,
        ip=ip,
        details={"level": level, "method": method, "txn": txn},
    )
    if rank(level) >= rank(SETTLED_LEVEL):
        released = settle_id_claim(session, user, actor=verifier, ip=ip)
        if released is not None and on_release is not None:
            on_release(released)
    return row


def id_holder_verified(session: Session, user_id: str) -> bool:
    """Whether the account holding an ID number is verified at L3 or above (settled)."""
    return rank(level_of(session, user_id)) >= rank(SETTLED_LEVEL)


def settle_id_claim(
    session: Session, user: User, *, actor: str, ip: str | None = None
) -> User | None:
    """``user`` (just verified at L3+) takes the ID number it claimed; the account holding it
    unverified is released (its copy of the number erased, audited) and returned.

    Raises :class:`AssuranceError` when the holder is itself verified at L3 or above: two
    verified claims to one number are a case for a counter, not for a rule.
    """
    digest = user.id_claim_digest
    if digest is None:
        return None
    holder = session.scalars(
        select(User).where(User.id_number_digest == digest, User.id != user.id)
    ).first()
    if holder is not None:
        if id_holder_verified(session, holder.id):
            raise AssuranceError("this ID number is held by an account verified at L3 or above")
        masked = holder.id_number_masked
        holder.id_number_digest = None
        holder.id_number_ciphertext = None
        holder.id_number_masked = None
        session.flush()  # the unique digest is free before it moves
        audit.record(
            session,
            "identity.claim_released",
            actor=actor,
            target=holder.id,
            ip=ip,
            details={"masked_id": masked, "verified_holder": user.id},
        )
    user.id_number_digest = digest
    user.id_claim_digest = None
    session.flush()
    return holder


def verifications_of(session: Session, user_id: str) -> list[IdentityVerification]:
    """The account's verifications, strongest and newest first."""
    rows = list(
        session.scalars(select(IdentityVerification).where(IdentityVerification.user_id == user_id))
    )
    rows.sort(key=lambda r: (rank(r.level), r.verified_at), reverse=True)
    return rows


def level_of(session: Session, user_id: str) -> str | None:
    """The highest level recorded for the account (None: never verified, e.g. staff)."""
    rows = verifications_of(session, user_id)
    return rows[0].level if rows else None


#: Synthetic registry records shipped for development (never real personal data).
SYNTHETIC_REGISTRY = Path(__file__).resolve().parents[1] / "data" / "registry-synthetic.json"


def build_identity_verifier(settings: Settings) -> IdentityVerifier | None:
    """The configured population registry: the HTTP service, else a local dataset.

    Production without ``identity_registry_url`` has none (``yitong verify --method
    registry`` then refuses); elsewhere the bundled synthetic dataset answers.
    """
    if settings.identity_registry_url:
        return HttpRegistry(
            url=settings.identity_registry_url.rstrip("/"),
            client_cert=settings.identity_registry_client_cert or None,
            client_key=settings.identity_registry_client_key or None,
            ca_file=settings.identity_registry_ca_file or None,
            connect_timeout=settings.identity_registry_connect_timeout_ms / 1000,
            read_timeout=settings.identity_registry_read_timeout_ms / 1000,
        )
    if settings.identity_registry_dataset:
        return LocalRegistry.from_file(settings.identity_registry_dataset)
    if settings.is_production:
        return None
    return LocalRegistry.from_file(SYNTHETIC_REGISTRY)

"""Identity verification through the admin API (issue 10 items 5 and 8): what
``yitong verify`` does, for counter staff and security admins.

``registry`` and ``face`` ask the configured population registry (its answer becomes the
evidence); ``counter``, ``in-person`` and ``certificate`` record what the operator saw, with
an optional ``evidence`` object.  The registry check and the evidence rules are those of
:mod:`idp.accounts.assurance`, shared with the command line; the verification is audited
there with the admin as the verifier.  A person whose unverified claim to the same ID number
is released is told after the commit.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from sqlalchemy.orm import Session

from admin.people import person_for_action
from admin.services import AdminInputError, Caller
from idp.accounts.assurance import (
    AssuranceError,
    VerifierUnavailableError,
    check_extra_evidence,
    check_level_and_method,
    level_of,
    record_verification,
    registry_check,
)
from idp.accounts.entities import (
    EntityChangedError,
    EntityError,
    RegistryUnavailableError,
    entity_summary,
    find_entity,
    reverify_entity,
    verify_entity_licence,
)
from idp.accounts.entity_assurance import assurance_summary
from idp.errors import TemporarilyUnavailableError
from idp.interaction.contacts import tell_claim_released
from idp.services import Services
from idp.storage.models import User, utcnow

FIELDS = frozenset({"level", "method", "evidence", "face_image"})
MAX_FACE_IMAGE = 2 * 1024 * 1024  # bytes, after base64 decoding


def _face_image(value: Any) -> bytes | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_FACE_IMAGE * 4 // 3 + 4:
        raise AdminInputError("face_image must be base64 text of at most 2 MiB")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise AdminInputError("face_image must be base64 text") from None


def verify_person(
    session: Session, services: Services, user_id: str, data: dict[str, Any], who: Caller
) -> dict[str, Any]:
    """Body: ``{"level": "L3".."L5", "method", "evidence"?, "face_image"? (base64)}``."""
    unknown = set(data) - FIELDS
    if unknown:
        raise AdminInputError(f"unknown fields: {', '.join(sorted(unknown))}")
    level, method = data.get("level"), data.get("method")
    if not isinstance(level, str) or not isinstance(method, str):
        raise AdminInputError("level and method are required text")
    user = person_for_action(session, user_id, who)
    released: list[User] = []
    try:
        check_level_and_method(level, method)
        if level == "L2":
            raise AssuranceError("L2 comes from registration only")
        extra = check_extra_evidence(data.get("evidence"))
        found = registry_check(
            services.identity_verifier,
            services.vault,
            user,
            method,
            _face_image(data.get("face_image")),
        )
        row = record_verification(
            session,
            user,
            level,
            method,
            verifier=who.actor,
            registry=found,
            extra=extra,
            on_release=released.append,
        )
    except VerifierUnavailableError as exc:
        raise AdminInputError(str(exc), status=503, error=TemporarilyUnavailableError) from None
    except AssuranceError as exc:
        raise AdminInputError(str(exc)) from None
    session.commit()
    for holder in released:  # told after the commit: the release has happened
        tell_claim_released(services, holder)
    return {
        "user": user.id,
        "level": row.level,
        "method": row.method,
        "txn": row.txn,
        "assurance": level_of(session, user.id),
        "released": released[0].id if released else None,
    }


# ------------------------------------------------------------------ companies (issue 10)
def verify_company(
    session: Session, services: Services, ref: str, data: dict[str, Any], who: Caller
) -> dict[str, Any]:
    """``{"method": "registry"}`` asks the enterprise registry again (L3; a registry that no
    longer backs the company suspends it); ``{"method": "e-licence", "presentation"}``
    checks an electronic business licence (L5).  Security admins only: a failed
    re-verification ends the company's mandates and sessions."""
    who.require("security-admin")
    unknown = set(data) - {"method", "presentation"}
    if unknown:
        raise AdminInputError(f"unknown fields: {', '.join(sorted(unknown))}")
    entity = find_entity(session, services.vault, str(ref or "")[:64])
    if entity is None:
        raise AdminInputError("no such company", status=404)
    method = data.get("method")
    ended = None
    try:
        if method == "registry":
            ended = reverify_entity(session, services, entity, actor=who.actor)
        elif method == "e-licence":
            presentation = data.get("presentation")
            if not isinstance(presentation, str):
                raise AdminInputError("presentation must be the licence presentation (text)")
            verify_entity_licence(session, services, entity, presentation, actor=who.actor)
        else:
            raise AdminInputError("method must be registry or e-licence")
    except EntityChangedError as exc:
        session.commit()  # the withdrawal and the suspension stand
        exc.ended.kick()
        raise AdminInputError(exc.message, status=409) from None
    except RegistryUnavailableError as exc:
        raise AdminInputError(exc.message, status=503, error=TemporarilyUnavailableError) from None
    except EntityError as exc:
        session.commit()  # a refused licence is audited
        raise AdminInputError(f"{exc.field}: {exc.message}") from None
    session.commit()
    if ended is not None:
        ended.kick()
    return {**entity_summary(entity), "assurance": assurance_summary(session, entity, utcnow())}

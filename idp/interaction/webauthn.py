"""WebAuthn ceremonies (W3C WebAuthn Level 2): options, verification, the sign counter.

The pages only pass JSON through; everything that must hold is here:

- a challenge is used once (:func:`~idp.storage.repo.consume_once`; a replayed cookie finds it
  burnt) and lives :data:`CHALLENGE_TTL` seconds;
- the relying-party id and origin come from the configured issuer, never from the request;
- the sign counter moves by compare-and-set, so two uses of a cloned authenticator with the
  same counter cannot both succeed;
- a registration is stored only after its attestation verified.

The ``webauthn`` library (with pyOpenSSL, cbor2 and the ASN.1 modules, about 4 MB per worker)
is imported by the ceremonies themselves, at the first one a worker serves (issue 12 item 5).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from typing import TYPE_CHECKING, Any

from flask import session
from flask_babel import gettext as _
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from idp import context
from idp.interaction import mfa
from idp.storage import repo
from idp.storage.models import User, WebAuthnCredential, utcnow

if TYPE_CHECKING:
    from webauthn.helpers.structs import PublicKeyCredentialDescriptor

log = logging.getLogger(__name__)

CHALLENGE_KEY = "yt_wa"
CHALLENGE_TTL = 300
CREDENTIAL_ID = re.compile(r"[A-Za-z0-9_-]{1,512}")  # base64url, as stored


def _rp() -> tuple[str, str]:
    issuer = context.settings().issuer
    return mfa.rp_id_for(issuer), mfa.origin_for(issuer)


def account_label(user: User) -> str:
    return user.email or user.phone or user.id_number_masked or user.name


def store_challenge(challenge: bytes, purpose: str, user_id: str | None, **extra: Any) -> None:
    session[CHALLENGE_KEY] = {
        "c": mfa.b64u(challenge),
        "p": purpose,
        "u": user_id,
        "t": utcnow().timestamp(),
        **extra,
    }


def forget_challenge() -> None:
    session.pop(CHALLENGE_KEY, None)


def take_challenge(purpose: str, user_id: str | None) -> bytes | None:
    """The stored challenge, once: a replayed cookie finds it burnt."""
    data = session.pop(CHALLENGE_KEY, None)
    if not isinstance(data, dict) or data.get("p") != purpose or data.get("u") != user_id:
        return None
    started = float(data.get("t", 0))
    if utcnow().timestamp() - started > CHALLENGE_TTL:
        return None
    challenge = str(data.get("c", ""))
    context.release_request_transaction()
    expires = dt.datetime.fromtimestamp(started + CHALLENGE_TTL + 60, dt.UTC)
    if not repo.consume_once(context.db_session(), "webauthn", challenge, expires):
        return None
    try:
        return mfa.b64u_decode(challenge)
    except ValueError:
        return None


def _descriptor(cred: WebAuthnCredential) -> PublicKeyCredentialDescriptor:
    from webauthn.helpers.structs import AuthenticatorTransport, PublicKeyCredentialDescriptor

    transports = []
    for t in cred.transports or []:
        try:
            transports.append(AuthenticatorTransport(t))
        except ValueError:
            continue
    return PublicKeyCredentialDescriptor(
        id=mfa.b64u_decode(cred.credential_id), transports=transports or None
    )


def authentication_options(
    creds: list[WebAuthnCredential], uv: str, purpose: str, user_id: str | None, **extra: Any
) -> str:
    """Options JSON for ``navigator.credentials.get``; the challenge is kept for one use."""
    import webauthn
    from webauthn.helpers.structs import UserVerificationRequirement

    rp_id, _origin = _rp()
    options = webauthn.generate_authentication_options(
        rp_id=rp_id,
        allow_credentials=[_descriptor(c) for c in creds] or None,
        user_verification=UserVerificationRequirement(uv),
    )
    store_challenge(options.challenge, purpose, user_id, **extra)
    return webauthn.options_to_json(options)


def credential_row(credential: dict[str, Any], user_id: str | None) -> WebAuthnCredential | None:
    """The stored credential an assertion names (of ``user_id``, when given)."""
    raw_id = credential.get("rawId") or credential.get("id")
    if not isinstance(raw_id, str) or not CREDENTIAL_ID.fullmatch(raw_id):
        return None
    with context.services().db.session() as s:
        row = s.get(WebAuthnCredential, raw_id.rstrip("="))
        if row is None or (user_id is not None and row.user_id != user_id):
            return None
        s.expunge(row)
    return row


def verify_assertion(
    credential: dict[str, Any], challenge: bytes, row: WebAuthnCredential, require_uv: bool
) -> set[str] | None:
    """Verify an assertion for ``row``; the factors it proves (``hwk``/``swk``, ``uv``), or None."""
    import webauthn
    from webauthn.helpers.exceptions import WebAuthnException

    rp_id, origin = _rp()
    context.release_request_transaction()
    try:
        verified = webauthn.verify_authentication_response(
            credential=credential,
            expected_challenge=challenge,
            expected_rp_id=rp_id,
            expected_origin=origin,
            credential_public_key=row.public_key,
            credential_current_sign_count=row.sign_count,
            require_user_verification=require_uv,
        )
    except (WebAuthnException, ValueError, KeyError, TypeError) as exc:
        log.info("WebAuthn assertion refused: %s", type(exc).__name__)
        return None
    with context.services().db.transaction() as s:
        result = s.execute(
            update(WebAuthnCredential)
            .where(
                WebAuthnCredential.credential_id == row.credential_id,
                WebAuthnCredential.sign_count == row.sign_count,
            )
            .values(sign_count=verified.new_sign_count, last_used_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return None  # a concurrent use of the same credential and counter
    multi_device = str(getattr(verified.credential_device_type, "value", "")) == "multi_device"
    factors = {"swk" if multi_device else "hwk"}
    if verified.user_verified:
        factors.add("uv")
    return factors


def registration_options(user: User, existing: list[WebAuthnCredential]) -> str:
    """Options JSON for ``navigator.credentials.create``; the challenge is kept for one use."""
    import webauthn
    from webauthn.helpers.structs import (
        AuthenticatorSelectionCriteria,
        ResidentKeyRequirement,
        UserVerificationRequirement,
    )

    rp_id, _origin = _rp()
    options = webauthn.generate_registration_options(
        rp_id=rp_id,
        rp_name="Yitong 一通",
        user_name=account_label(user),
        user_id=mfa.webauthn_user_handle(user.id, context.services().code_secret),
        user_display_name=user.name,
        exclude_credentials=[_descriptor(c) for c in existing],
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED,
            user_verification=UserVerificationRequirement.PREFERRED,
        ),
    )
    store_challenge(options.challenge, "register", user.id)
    return webauthn.options_to_json(options)


class RegistrationRefused(Exception):
    """The attestation did not verify, the ceremony expired, or the key is already known."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def register(user: User, credential: Any, name: str) -> WebAuthnCredential:
    """Verify a registration and store the credential in the request's session (uncommitted).

    Raises :class:`RegistrationRefused` with the translated reason.
    """
    import webauthn
    from webauthn.helpers.exceptions import WebAuthnException

    challenge = take_challenge("register", user.id)
    if not isinstance(credential, dict) or challenge is None:
        raise RegistrationRefused(_("The registration expired. Try again."))
    rp_id, origin = _rp()
    try:
        verified = webauthn.verify_registration_response(
            credential=credential,
            expected_challenge=challenge,
            expected_rp_id=rp_id,
            expected_origin=origin,
        )
    except (WebAuthnException, ValueError, KeyError, TypeError) as exc:
        log.info("WebAuthn registration refused: %s", type(exc).__name__)
        raise RegistrationRefused(_("The security key could not be registered.")) from None
    response = credential.get("response")
    transports = response.get("transports") if isinstance(response, dict) else None
    kept = [t for t in transports if isinstance(t, str)][:8] if isinstance(transports, list) else []
    db_session = context.db_session()
    row = WebAuthnCredential(
        credential_id=mfa.b64u(verified.credential_id),
        user_id=user.id,
        public_key=verified.credential_public_key,
        sign_count=verified.sign_count,
        transports=kept,
        name=name,
        created_at=utcnow(),
    )
    db_session.add(row)
    try:
        db_session.flush()
    except IntegrityError:
        db_session.rollback()
        raise RegistrationRefused(_("This security key is already registered."), 409) from None
    return row

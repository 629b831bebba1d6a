"""A signed-in person's own security settings: second factors, phone, password.

The pages (:mod:`idp.blueprints.security`) parse and draw; these functions decide and write.
Every change needs a recent authentication (:func:`recently_authenticated`, checklist 68),
is audited, and never removes the last second factor a policy requires.  Secrets in flight
(a TOTP secret being enrolled, a phone number being verified) are kept in the browser's
session only encrypted with the KEK (issue 14 item 7: no personal data readable in cookies).
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable

from flask import session
from flask_babel import gettext as _
from sqlalchemy.exc import IntegrityError

from adapters.base import AdapterError
from idp import audit, context
from idp.accounts.identifiers import IdentifierError, normalize_phone
from idp.accounts.passwords import PasswordPolicyError
from idp.accounts.people import confirmed_holder, release_unconfirmed
from idp.interaction import mfa
from idp.interaction.contacts import tell_holder
from idp.interaction.levels import forget_factors, user_factors
from idp.interaction.login import Refused, verify_password
from idp.interaction.qr_svg import qr_svg
from idp.interaction.sealed import stash_sealed, unstash_sealed
from idp.interaction.sessions import end_user_sessions
from idp.interaction.throttle import mfa_rule
from idp.interaction.webauthn import CREDENTIAL_ID, account_label
from idp.storage.models import SsoSession, User, WebAuthnCredential, utcnow

log = logging.getLogger(__name__)

ENROL_KEY = "yt_enrol"
ENROL_TTL = 900
REAUTH_KEY = "yt_reauth"
REAUTH_WINDOW = 300  # "recent authentication" for security changes (ASVS 7.5.1, checklist 68)
PHONE_KEY = "yt_phone"
PHONE_TTL = 900


# ---------------------------------------------------------------------- recent authentication
def recently_authenticated(sso: SsoSession) -> bool:
    """A password (or login) within the last 5 minutes in this session (checklist 68)."""
    now = utcnow()
    if (now - sso.auth_time).total_seconds() <= REAUTH_WINDOW:
        return True
    data = session.get(REAUTH_KEY)
    return bool(
        isinstance(data, dict)
        and data.get("sid") == sso.id
        and now.timestamp() - float(data.get("t", 0)) <= REAUTH_WINDOW
    )


def reauthenticate(user: User, sso: SsoSession, password: str) -> bool:
    if not verify_password(user, password):
        return False
    session[REAUTH_KEY] = {"sid": sso.id, "t": utcnow().timestamp()}
    return True


# ---------------------------------------------------------------------- TOTP
def new_enrolment(user: User) -> str:
    """A fresh TOTP secret for ``user``, kept (encrypted) for the confirmation step."""
    secret = mfa.new_totp_secret()
    stash_sealed(ENROL_KEY, "totp-enrol", user.id, secret)
    return secret


def enrolment_secret(user: User) -> str | None:
    return unstash_sealed(ENROL_KEY, "totp-enrol", user.id, ENROL_TTL)


def enrolment_or_new(user: User) -> str:
    return enrolment_secret(user) or new_enrolment(user)


def forget_enrolment() -> None:
    session.pop(ENROL_KEY, None)


def totp_qr(user: User, secret: str) -> str:
    """The ``otpauth://`` URI as an SVG data URI for the enrolment page."""
    svg = qr_svg(mfa.totp_uri(secret, account_label(user))).encode()
    return "data:image/svg+xml;base64," + base64.b64encode(svg).decode("ascii")


def activate_totp(user: User, secret: str, code: str) -> bool:
    """Store the enrolled secret once a code from it verifies."""
    with context.services().db.transaction() as own:
        ok = mfa.activate_totp(own, context.services().kek, user.id, secret, code)
    if ok:
        forget_enrolment()
        forget_factors(user)
    return ok


def confirm_totp(user: User, code: str) -> list[str] | Refused:
    """Self-service enrolment: the recovery codes (on a first factor) or why not."""
    secret = enrolment_secret(user)
    if secret is None:
        return Refused(_("The set-up expired. Start again."), 400)
    services = context.services()
    context.release_request_transaction()
    counters = services.login_gate.counters
    verdict = counters.reserve(f"mfa:{user.id}", mfa_rule(services.policies))
    if not verdict.allowed:
        return Refused(str(services.login_gate._refusal(verdict)), 429)
    first = not user_factors(user).any_second_factor
    if not activate_totp(user, secret, code):
        return Refused(_("The code is wrong. Check the time on your phone."), 401)
    counters.reset(f"mfa:{user.id}")
    db_session = context.db_session()
    ip = context.client_ip()
    audit.record(db_session, "mfa.totp.enrol", actor=user.id, target=user.id, ip=ip)
    codes = mfa.new_recovery_codes(db_session, services.code_secret, user.id) if first else []
    if codes:
        audit.record(db_session, "mfa.recovery.generate", actor=user.id, target=user.id, ip=ip)
    db_session.commit()
    return codes


def removal_allowed(user: User, *, totp: bool = False, credential: str | None = None) -> bool:
    """Refuse to remove the last second factor of an account whose policy requires one."""
    if not mfa.mfa_required_by_policy(context.services().policies, user):
        return True
    uf = user_factors(user)
    left_totp = uf.totp and not totp
    left_keys = [c for c in uf.webauthn if c.credential_id != credential]
    return bool(left_totp or left_keys or uf.sms_phone)


def remove_totp(user: User) -> None:
    db_session = context.db_session()
    if mfa.remove_totp(db_session, user.id):
        audit.record(
            db_session, "mfa.totp.remove", actor=user.id, target=user.id, ip=context.client_ip()
        )
    db_session.commit()
    forget_factors(user)


def new_recovery_codes(user: User) -> list[str]:
    db_session = context.db_session()
    codes = mfa.new_recovery_codes(db_session, context.services().code_secret, user.id)
    audit.record(
        db_session, "mfa.recovery.generate", actor=user.id, target=user.id, ip=context.client_ip()
    )
    db_session.commit()
    return codes


def added_security_key(user: User, row: WebAuthnCredential) -> None:
    """Audit and commit a registration verified by :func:`idp.interaction.webauthn.register`."""
    db_session = context.db_session()
    audit.record(
        db_session,
        "mfa.webauthn.add",
        actor=user.id,
        target=user.id,
        ip=context.client_ip(),
        details={"name": row.name, "credential": row.credential_id[:16]},
    )
    db_session.commit()
    forget_factors(user)


def remove_security_key(user: User, credential_id: str) -> Refused | None:
    if not CREDENTIAL_ID.fullmatch(credential_id):
        return Refused(_("Unknown security key."), 400)
    if not removal_allowed(user, credential=credential_id):
        return must_keep_a_factor()
    db_session = context.db_session()
    row = db_session.get(WebAuthnCredential, credential_id)
    if row is not None and row.user_id == user.id:
        db_session.delete(row)
        audit.record(
            db_session,
            "mfa.webauthn.remove",
            actor=user.id,
            target=user.id,
            ip=context.client_ip(),
            details={"credential": credential_id[:16]},
        )
    db_session.commit()
    forget_factors(user)
    return None


def must_keep_a_factor() -> Refused:
    return Refused(
        _("Your account must keep a second factor. Add another one before removing this one."),
        409,
    )


# ---------------------------------------------------------------------- SMS codes and phone
def mask_phone(phone: str | None) -> str | None:
    if not phone:
        return None
    return phone[:-8] + "****" + phone[-4:] if len(phone) > 8 else "****"


def _sms_refused() -> tuple[bool, str, int | None] | None:
    """Why no SMS can go out from this address now (no sender, the per-address limit)."""
    services = context.services()
    if services.sms_sender is None:
        return False, _("SMS codes are not available right now."), None
    wait = services.rate_limiter.hit(
        "sms-ip", context.client_ip(), services.policies.get_int("sms.per_ip_per_hour"), 3600
    )
    if wait is not None:
        return False, _("Too many codes requested. Try again in %(n)d second(s).", n=wait), wait
    return None


def send_sms_code(phone: str, purpose: str, user_id: str | None) -> tuple[bool, str, int | None]:
    """Issue and send a code (rate limited per number and per address). (ok, message, wait)."""
    services = context.services()
    sender = services.sms_sender
    refused = _sms_refused()
    if refused is not None:
        return refused
    assert sender is not None
    policies = services.policies
    context.release_request_transaction()
    try:
        code = mfa.issue_code(
            services.db,
            services.code_secret,
            policies,
            destination=phone,
            purpose=purpose,
            user_id=user_id,
        )
    except mfa.SendRefused as exc:
        return (
            False,
            _("Too many codes requested. Try again in %(n)d second(s).", n=exc.retry_after),
            exc.retry_after,
        )
    minutes = max(1, policies.get_int("sms.code_lifetime") // 60)
    text = _(
        "Yitong code %(code)s, valid for %(m)d minutes. Never tell it to anyone.",
        code=code,
        m=minutes,
    )
    try:
        sender.send(phone, text)
    except AdapterError:
        log.warning("SMS code could not be sent")
        return False, _("The SMS could not be sent. Try again later or use another method."), None
    audit.record_now(
        services.db,
        "mfa.sms_sent",
        actor=user_id or "anonymous",
        ip=context.client_ip(),
        details={"purpose": purpose, "to": mask_phone(phone)},
    )
    return True, _("A code was sent to %(phone)s.", phone=mask_phone(phone)), None


def start_phone_change(user: User, raw: str) -> tuple[str, str] | Refused:
    """Send a code to a new number: (masked number, message) or why not."""
    try:
        phone = normalize_phone(raw[:40])
    except IdentifierError:
        return Refused(_("Enter a valid mainland mobile number."), 400)
    other = confirmed_holder(context.db_session(), "phone", phone)
    if other is not None and other != user.id:
        # Never say that the number belongs to someone (checklist 83): the answer of a sent
        # code; its holder is told instead, and no code exists to confirm it here.
        ok, message, wait = _sms_refused() or (
            True,
            _("A code was sent to %(phone)s.", phone=mask_phone(phone)),
            None,
        )
        if ok:
            tell_holder(other, "phone", account=user.id)
    else:
        ok, message, wait = send_sms_code(phone, "phone", user.id)
    if not ok:
        return Refused(message, 429 if wait else 503, retry_after=wait or 0)
    stash_sealed(PHONE_KEY, "phone-change", user.id, phone)
    return mask_phone(phone) or "", message


def pending_phone(user: User) -> str | None:
    return unstash_sealed(PHONE_KEY, "phone-change", user.id, PHONE_TTL)


def verify_phone_change(user: User, code: str) -> Refused | None:
    """Check the code sent to the new number and store it as verified."""
    phone = pending_phone(user)
    if phone is None:
        return Refused(_("Start again."), 400)
    services = context.services()
    context.release_request_transaction()
    if not mfa.check_code(
        services.db,
        services.code_secret,
        destination=phone,
        purpose="phone",
        user_id=user.id,
        code=code,
    ):
        return Refused(_("The code is wrong or has expired."), 401)
    db_session = context.db_session()
    row = db_session.get(User, user.id)
    assert row is not None
    old = mask_phone(row.phone)
    ip = context.client_ip()
    release_unconfirmed(db_session, "phone", phone, keep=user.id, actor=user.id, ip=ip)
    row.phone, row.phone_verified = phone, True
    audit.record(
        db_session,
        "user.phone_change",
        actor=user.id,
        target=user.id,
        ip=ip,
        details={"old": old, "new": mask_phone(phone)},
    )
    try:
        db_session.commit()
    except IntegrityError:
        db_session.rollback()
        return Refused(_("This number cannot be used."), 409)
    session.pop(PHONE_KEY, None)
    forget_factors(user)
    return None


# ---------------------------------------------------------------------- password
def password_minimum(user: User) -> int:
    """15 (by default) when the password stands alone, 8 with a second factor."""
    has_mfa = user_factors(user).any_second_factor
    return context.services().passwords.min_length_for(has_mfa=has_mfa)


def new_password_refused(
    user: User,
    new: str,
    confirm: str,
    *,
    before_policy: Callable[[], Refused | None] | None = None,
) -> Refused | None:
    """Why a new password cannot be set (length, confirmation, then the policy), or None.

    The one check for a password change and a reset; ``before_policy`` runs between the cheap
    checks and the policy (a password change verifies the current password there).
    """
    passwords = context.services().passwords
    if passwords.too_long(new):
        return Refused(_("The password is too long."), 400)
    if new != confirm:
        return Refused(_("The new passwords do not match."), 400)
    if before_policy is not None:
        refused = before_policy()
        if refused is not None:
            return refused
    try:
        passwords.check_policy(
            new,
            min_length=password_minimum(user),
            context=(user.name, (user.phone or "")[3:], (user.email or "").split("@")[0]),
        )
    except PasswordPolicyError as exc:
        return Refused(_(exc.message, **exc.params), 400)
    return None


def change_password(
    user: User,
    sso: SsoSession,
    *,
    current: str,
    new: str,
    confirm: str,
    sign_out_others: bool,
) -> Refused | None:
    """Change the password: the current one is always required (ASVS 6.2.3, checklist 79).

    "Sign out my other sessions" ends them through
    :func:`~idp.interaction.sessions.end_user_sessions`, so their clients are told by
    back-channel logout (issue 9, defect 1), and revokes every grant not made in this session.
    """
    passwords = context.services().passwords
    if user.kind == "staff" or not user.password_hash:
        return Refused(_("Staff passwords are changed in your department's directory."), 400)
    if passwords.too_long(current):
        return Refused(_("The password is too long."), 400)

    def current_is_right() -> Refused | None:
        if not verify_password(user, current):
            return Refused(_("The current password is wrong."), 401)
        return None

    refused = new_password_refused(user, new, confirm, before_policy=current_is_right)
    if refused is not None:
        return refused
    db_session = context.db_session()
    row = db_session.get(User, user.id)
    assert row is not None
    row.password_hash = passwords.hash(new)
    row.password_changed_at = utcnow()
    ended = None
    if sign_out_others:
        ended = end_user_sessions(
            db_session,
            context.services(),
            user.id,
            reason="password_change",
            keep_sid=sso.id,
            include_offline=True,
        )
    audit.record(
        db_session,
        "user.password_change",
        actor=user.id,
        target=user.id,
        ip=context.client_ip(),
        details={"other_sessions_ended": len(ended.sids) if ended else 0},
    )
    db_session.commit()
    if ended is not None:
        ended.kick()
    session[REAUTH_KEY] = {"sid": sso.id, "t": utcnow().timestamp()}
    return None

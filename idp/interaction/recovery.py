"""Forgotten password (忘记密码): a new password through a confirmed phone or e-mail address.

The pages (:mod:`idp.blueprints.recovery`) parse and draw; these functions decide and write.
Three steps, each proving something:

1. **Contact point and ID number**: the person types a confirmed phone number or e-mail
   address and the resident ID number of the account.  Attempts go through the login gate
   (:class:`~idp.interaction.throttle.LoginGate`) on the same counters as a login with that
   name, so lockout holds as for login (checklist 80); the page's POSTs are rate-limited per
   address (:mod:`idp.blueprints.guards`).  The answer is **the same whether or not an account
   matches** (checklist 83): an SMS code or a link is sent only when both match.
2. **Possession**: the SMS code (:func:`idp.interaction.mfa.check_code`, purpose ``reset``) or
   the e-mail link (signed, :data:`LINK_TTL` long, dead once used or once the password
   changed).  The proof is kept in the browser's session, encrypted
   (:func:`~idp.interaction.self_service.stash_sealed`).
3. **Second factor and new password**: an account with a second factor must pass it too (a
   TOTP, an SMS code to its phone or a recovery code, counted like a login's second factor;
   when step 2 was an SMS code to the account's own SMS factor, that was it); the new
   password meets the policy.  The proof is spent once (:func:`~idp.storage.repo.consume_once`), every session of
   the account ends through :func:`~idp.interaction.sessions.end_user_sessions` (its services
   hear of it by back-channel logout), every grant is revoked, and the reset is audited.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hmac
import json
import logging
import secrets

from flask import session, url_for
from flask_babel import gettext as _
from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import select

from adapters.base import AdapterError
from adapters.mail import mask_address
from idp import audit, context
from idp.accounts.identifiers import (
    IdentifierError,
    classify_login,
    normalize_email,
    normalize_phone,
    normalize_resident_id,
)
from idp.interaction import mfa
from idp.interaction.levels import forget_factors, user_factors
from idp.interaction.login import Refused, attempt_second_factor, code_factor
from idp.interaction.sealed import stash_sealed, unstash_sealed
from idp.interaction.self_service import mask_phone, new_password_refused, send_sms_code
from idp.interaction.sessions import end_user_sessions
from idp.interaction.sms_login import check_phone_code
from idp.storage import repo
from idp.storage.models import User, utcnow

log = logging.getLogger(__name__)

SMS_KEY = "yt_reset_sms"  # step 2 by phone: the number a code was (perhaps) sent to
PROVEN_KEY = "yt_reset"  # step 3: whose password may be reset, and how it was proven
STEP_TTL = 900  # seconds for each step in the browser
LINK_TTL = 1800  # seconds an e-mailed link stays valid
LINK_SALT = "yitong-password-reset"
SMS_PURPOSE = "reset"
MAX_FIELD = 320


@dataclasses.dataclass(frozen=True)
class Proof:
    """Step 2 passed: the account, how (``sms`` or ``email``) and the one-time id of the proof."""

    uid: str
    via: str
    rid: str


@dataclasses.dataclass(frozen=True)
class SecondFactor:
    """What the account must show at step 3: nothing, or one of ``methods``."""

    required: bool
    methods: tuple[str, ...] = ()  # totp | sms | recovery

    @property
    def impossible(self) -> bool:
        """A factor is required but none can be shown on a web form (only a security key)."""
        return self.required and not self.methods


# ---------------------------------------------------------------------- step 1
def _contact(login: str) -> tuple[str, str] | None:
    """(kind, normalised value) of a phone number or e-mail address; None for anything else."""
    kind = classify_login(login)
    try:
        if kind == "phone":
            return kind, normalize_phone(login)
        if kind == "email":
            return kind, normalize_email(login)
    except IdentifierError:
        return None
    return None


def _account_for(kind: str, value: str) -> User | None:
    """The active citizen whose *confirmed* contact point this is (an unconfirmed one is none)."""
    column = User.phone if kind == "phone" else User.email
    user = (
        context.db_session()
        .scalars(select(User).where(column == value, User.kind == "citizen"))
        .first()
    )
    if user is None or not user.is_active or not user.password_hash:
        return None
    confirmed = user.phone_verified if kind == "phone" else user.email_verified
    return user if confirmed else None


def _id_matches(user: User | None, id_number: str) -> bool:
    """The ID number the account holds, or claims while another account holds it below L3
    (the person typed it at registration; :mod:`idp.accounts.people`)."""
    held = (user.id_number_digest or user.id_claim_digest) if user is not None else None
    if not held:
        return False
    try:
        wanted = context.services().vault.digest(normalize_resident_id(id_number))
    except IdentifierError:
        return False
    return hmac.compare_digest(wanted, held)


def start(login: str, id_number: str) -> str | Refused:
    """Step 1: the channel (``sms`` or ``email``) to continue on, or why not.

    Unknown accounts, unconfirmed contact points and wrong ID numbers all answer like a match;
    only malformed input (which says nothing about any account) and the lockout differ.
    """
    login, id_number = login.strip()[:MAX_FIELD], id_number.strip()[:40]
    contact = _contact(login)
    if contact is None:
        return Refused(_("Enter a confirmed mobile number or e-mail address."), 400)
    if not id_number:
        return Refused(_("Enter your resident ID number."), 400)
    kind, value = contact
    services = context.services()
    user = _account_for(kind, value)
    context.db_session().commit()  # the gate commits on its own (SQLite write lock)
    gate, ip = services.login_gate, context.client_ip()
    blocked = gate.check(user, login, ip)
    if blocked is not None:
        return Refused(str(blocked), 429, retry_after=int(blocked.retry_after or 0))
    matched = _id_matches(user, id_number)
    if matched and user is not None:
        gate.cancel(user, login, ip)  # not a failure; not a success of a login either
        _send(user, kind, value)
    else:  # the attempt stays counted on the name, as a failed login would
        audit.record_now(
            services.db,
            "password_reset.failure",
            actor=user.id if user else "anonymous",
            ip=ip,
            outcome="failure",
            details={"step": "identify", "via": kind},
        )
    if kind == "phone":
        stash_sealed(SMS_KEY, "reset-sms", "", value)
        return "sms"
    session.pop(SMS_KEY, None)
    return "email"


def _send(user: User, kind: str, value: str) -> None:
    """Send the code or the link; a failure is logged, never shown (it would tell a match)."""
    services = context.services()
    if kind == "phone":
        ok, _message, _wait = send_sms_code(value, SMS_PURPOSE, user.id)
        if not ok:
            log.warning("password-reset SMS not sent")
        return
    sender = services.mail_sender
    if sender is None:
        log.warning("password-reset mail not sent: no mail sender configured")
        return
    link = reset_link(user)
    minutes = LINK_TTL // 60
    subject = _("Reset your Yitong password")
    text = _(
        "Someone (we hope you) asked to reset the password of your Yitong account. "
        "Open this link within %(m)d minutes to choose a new password:\n\n%(link)s\n\n"
        "If it was not you, ignore this message; your password stays as it is.",
        m=minutes,
        link=link,
    )
    try:
        sender.send_mail(value, str(subject), str(text))
    except AdapterError:
        log.warning("password-reset mail could not be sent")
        return
    audit.record_now(
        services.db,
        "password_reset.mail_sent",
        actor=user.id,
        ip=context.client_ip(),
        details={"to": mask_address(value)},
    )


# ---------------------------------------------------------------------- step 2: the e-mail link
def _serializer() -> URLSafeSerializer:
    return URLSafeSerializer(context.services().secret_key, salt=LINK_SALT)


def _password_stamp(user: User) -> int:
    changed = user.password_changed_at or user.created_at
    return int(changed.timestamp()) if changed else 0


def reset_link(user: User, now: dt.datetime | None = None) -> str:
    """An absolute link that proves possession of the account's e-mail for :data:`LINK_TTL`."""
    issued = int((now or utcnow()).timestamp())
    token = _serializer().dumps(
        {"u": user.id, "n": secrets.token_hex(16), "i": issued, "p": _password_stamp(user)}
    )
    origin = mfa.origin_for(context.settings().issuer)
    return origin + url_for("recovery.email_link", token=token)


def open_link(token: str) -> Proof | None:
    """Step 2 by e-mail: the proof a link carries, or None when forged, expired or used."""
    if not token or len(token) > 1000:
        return None
    try:
        data = _serializer().loads(token)
    except BadSignature:
        return None
    if not isinstance(data, dict):
        return None
    try:
        uid, nonce, issued, stamp = str(data["u"]), str(data["n"]), int(data["i"]), int(data["p"])
    except (KeyError, TypeError, ValueError):
        return None
    age = utcnow().timestamp() - issued
    if age > LINK_TTL or age < -60:
        return None
    user = context.db_session().get(User, uid)
    if user is None or not user.is_active or not user.email_verified:
        return None
    if stamp != _password_stamp(user) or repo.was_consumed(context.db_session(), "reset", nonce):
        return None  # the password changed since, or this link was used
    proof = Proof(uid, "email", nonce)
    _keep(proof)
    return proof


# ---------------------------------------------------------------------- step 2: the SMS code
def masked_sms_destination() -> str | None:
    """The number step 1 was given (masked), while step 2 by phone is open."""
    return mask_phone(unstash_sealed(SMS_KEY, "reset-sms", "", STEP_TTL))


def check_sms(code: str) -> Proof | Refused:
    """Step 2 by phone: the proof, or why not (counted by the login gate like a password)."""
    phone = unstash_sealed(SMS_KEY, "reset-sms", "", STEP_TTL)
    if phone is None:
        return Refused(_("The page has expired. Start again."), 400)
    user = _account_for("phone", phone)
    refused = check_phone_code(
        phone,
        user,
        code,
        purpose=SMS_PURPOSE,
        failure_action="password_reset.failure",
        failure_details={"step": "code", "via": "phone"},
        clear_on_success=False,
    )
    if refused is not None or user is None:
        return refused or Refused(_("The code is wrong or has expired."), 401)
    session.pop(SMS_KEY, None)
    proof = Proof(user.id, "sms", secrets.token_hex(16))
    _keep(proof)
    return proof


# ---------------------------------------------------------------------- step 3
def _keep(proof: Proof) -> None:
    stash_sealed(PROVEN_KEY, "reset-proven", "", json.dumps(dataclasses.asdict(proof)))


def current_proof() -> tuple[Proof, User] | None:
    """The proof of step 2 in this browser and its account, while valid."""
    raw = unstash_sealed(PROVEN_KEY, "reset-proven", "", STEP_TTL)
    if raw is None:
        return None
    try:
        proof = Proof(**json.loads(raw))
    except (TypeError, ValueError):
        return None
    user = context.db_session().get(User, proof.uid)
    if user is None or not user.is_active:
        return None
    if repo.was_consumed(context.db_session(), "reset", proof.rid):
        session.pop(PROVEN_KEY, None)
        return None
    return proof, user


def second_factor_for(user: User, proof: Proof) -> SecondFactor:
    """What the account must show: a second factor it has, unless step 2 already was one
    (the account's own SMS factor, when the code went to that phone)."""
    factors = user_factors(user)
    if not factors.any_second_factor:
        return SecondFactor(False)
    if proof.via == "sms" and factors.sms_phone:
        return SecondFactor(False)
    methods: tuple[str, ...] = ("totp",) if factors.totp else ()
    if factors.sms_phone:
        methods += ("sms",)
    if factors.recovery_left:
        methods += ("recovery",)
    return SecondFactor(True, methods)


def _second_factor_refusal(user: User, method: str, code: str) -> Refused | None:
    """Check a TOTP, SMS or recovery code, counted on the account's second-factor counter."""
    attempt = attempt_second_factor(
        None, user, lambda: code_factor(user, method, code), mode="password_reset"
    )
    return None if attempt.factor is not None else attempt.refused


def send_second_factor_sms(user: User, proof: Proof) -> tuple[bool, str, int | None]:
    """Step 3, by e-mail, for an account whose second factor is its phone: send the code."""
    if "sms" not in second_factor_for(user, proof).methods or not user.phone:
        return False, _("SMS codes are not available for this account."), None
    return send_sms_code(user.phone, "mfa", user.id)


def complete(
    proof: Proof, user: User, *, new: str, confirm: str, method: str = "", code: str = ""
) -> Refused | None:
    """Step 3: check the second factor and the password, then set it and end every session."""
    services = context.services()
    refused = new_password_refused(user, new, confirm)
    if refused is not None:
        return refused
    needed = second_factor_for(user, proof)
    if needed.impossible:
        return Refused(_("This account can only be recovered at the help desk."), 403)
    if needed.required:
        if method not in needed.methods:
            return Refused(_("Enter a code that confirms it is you."), 400)
        refused = _second_factor_refusal(user, method, code[:64])
        if refused is not None:
            return refused
    context.release_request_transaction()
    expires = utcnow() + dt.timedelta(seconds=max(LINK_TTL, STEP_TTL) + 60)
    if not repo.consume_once(context.db_session(), "reset", proof.rid, expires):
        session.pop(PROVEN_KEY, None)
        return Refused(_("The page has expired. Start again."), 400)
    _write(user.id, new, proof.via, needed.required)
    session.pop(PROVEN_KEY, None)
    services.login_gate.unlock(user)
    forget_factors(user)
    return None


def _write(user_id: str, new: str, via: str, second_factor: bool) -> None:
    services = context.services()
    db_session = context.db_session()
    row = db_session.get(User, user_id)
    assert row is not None
    row.password_hash = services.passwords.hash(new)
    row.password_changed_at = utcnow()
    ended = end_user_sessions(
        db_session, services, user_id, reason="password_reset", include_offline=True
    )
    audit.record(
        db_session,
        "user.password_reset",
        actor=user_id,
        target=user_id,
        ip=context.client_ip(),
        details={
            "via": via,
            "second_factor": second_factor,
            "sessions_ended": len(ended.sids),
            "grants_revoked": len(ended.revoked_grants),
        },
    )
    db_session.commit()
    ended.kick()

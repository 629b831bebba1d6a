"""Signing in with an SMS code (短信验证码登录; issue 15 item 3).

Where the policy ``login.sms_allowed_for`` names the person's class, a code sent to the
account's *confirmed* mobile number signs them in instead of the password.  The code is one
possession factor (``amr`` ``sms``, the single-factor level), never two: where the request,
the client, a policy or an enrolled second factor needs more, the password is asked as well
(``pwd`` + ``sms`` is two factors; the session's ``acr``/``amr`` come from
:func:`idp.interaction.mfa.acr_for` as for any login), and a level beyond that continues at
the second-factor page with the password counted.

The limits are those of every SMS code (:func:`idp.interaction.self_service.send_sms_code`:
per number, per address, lifetime, five wrong guesses burn a code) and the login gate's on
the phone number as a login name (checklist 80): a wrong code counts as a wrong password.
The answer to "send a code" is the same whether or not the number belongs to an account that
may use it (checklist 83); a code is sent only when it does.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import secrets

from flask import session
from flask_babel import gettext as _

from idp import audit, context
from idp.accounts.identifiers import IdentifierError, normalize_phone
from idp.accounts.people import find_citizen
from idp.interaction import mfa
from idp.interaction.login import Refused, verify_password
from idp.interaction.policies import user_classes
from idp.interaction.sealed import stash_sealed, unstash_sealed
from idp.interaction.self_service import mask_phone, send_sms_code
from idp.storage import repo
from idp.storage.models import User, utcnow

log = logging.getLogger(__name__)

PHONE_KEY = "yt_sms_login"  # step 1 -> 2: the number a code was (perhaps) sent to
PROVEN_KEY = "yt_sms_proven"  # step 2 -> 3: the code was right, the password is still needed
STEP_TTL = 900
PURPOSE = "login"


@dataclasses.dataclass(frozen=True)
class CodeProven:
    """The SMS code was right: the account and when (epoch seconds)."""

    user: User
    at: int


def allowed_for(user: User | None) -> bool:
    """The policy lets this account sign in by SMS code (and it can: a confirmed number)."""
    if user is None or not user.phone or not user.phone_verified:
        return False
    if user.status not in ("active", "closing"):
        return False
    allowed = set(context.services().policies.get_list("login.sms_allowed_for"))
    classes = user_classes(user)
    return bool(classes) and classes <= allowed


def enabled() -> bool:
    """Whether the login page offers SMS login at all (a sender and a policy that allows it)."""
    services = context.services()
    return services.sms_sender is not None and bool(
        services.policies.get_list("login.sms_allowed_for")
    )


def _phone(raw: str) -> str | None:
    try:
        return normalize_phone(raw.strip()[:40])
    except IdentifierError:
        return None


def _account(phone: str) -> User | None:
    services = context.services()
    user = find_citizen(context.db_session(), phone, vault=services.vault)
    return user if allowed_for(user) else None


def send_code(raw: str) -> str | Refused:
    """Step 1: the masked number the page names; a code goes only to an account that may use
    it, and nothing in the answer says whether one did."""
    phone = _phone(raw)
    if phone is None:
        return Refused(_("Enter a valid mainland mobile number."), 400)
    services = context.services()
    user = _account(phone)
    context.db_session().commit()  # the gate commits on its own (SQLite write lock)
    blocked = services.login_gate.check(user, phone, context.client_ip())
    if blocked is not None:
        return Refused(str(blocked), 429, retry_after=int(blocked.retry_after or 0))
    if user is not None:
        ok, _message, _wait = send_sms_code(phone, PURPOSE, user.id)
        if not ok:
            log.warning("SMS login code not sent")
    stash_sealed(PHONE_KEY, "sms-login", "", phone)
    session.pop(PROVEN_KEY, None)
    return mask_phone(phone) or ""


def pending_number() -> str | None:
    """The masked number of step 2, while it is open."""
    return mask_phone(unstash_sealed(PHONE_KEY, "sms-login", "", STEP_TTL))


def check_phone_code(
    phone: str,
    user: User | None,
    code: str,
    *,
    purpose: str,
    failure_action: str,
    failure_details: dict[str, str],
    clear_on_success: bool,
) -> Refused | None:
    """One check of a code sent by SMS to ``phone`` (login and password reset alike): through
    the login gate on the number like a password, one attempt counted, the failure audited.
    None: the code was right for ``user``.  ``clear_on_success`` clears the account's
    counter (a login); otherwise the reserved attempt is only released (a reset step)."""
    services = context.services()
    context.db_session().commit()  # the gate commits on its own (SQLite write lock)
    gate, ip = services.login_gate, context.client_ip()
    blocked = gate.check(user, phone, ip)
    if blocked is not None:
        return Refused(str(blocked), 429, retry_after=int(blocked.retry_after or 0))
    ok = user is not None and mfa.check_code(
        services.db,
        services.code_secret,
        destination=phone,
        purpose=purpose,
        user_id=user.id,
        code=code[:16],
    )
    if not ok or user is None:
        audit.record_now(
            services.db,
            failure_action,
            actor=user.id if user else "anonymous",
            ip=ip,
            outcome="failure",
            details=failure_details,
        )
        return Refused(_("The code is wrong or has expired."), 401)
    if clear_on_success:
        gate.record(user, phone, ip, success=True)
    else:
        gate.cancel(user, phone, ip)
    return None


def check_code(code: str) -> CodeProven | Refused:
    """Step 2: the code, counted by the login gate on the number like a password."""
    phone = unstash_sealed(PHONE_KEY, "sms-login", "", STEP_TTL)
    if phone is None:
        return Refused(_("The page has expired. Start again."), 400)
    user = _account(phone)
    refused = check_phone_code(
        phone,
        user,
        code,
        purpose=PURPOSE,
        failure_action="login.failure",
        failure_details={"method": "sms"},
        clear_on_success=True,
    )
    if refused is not None or user is None:
        return refused or Refused(_("The code is wrong or has expired."), 401)
    session.pop(PHONE_KEY, None)
    return CodeProven(user, int(utcnow().timestamp()))


# ---------------------------------------------------------------------- the password as well
def keep_for_password(proven: CodeProven) -> None:
    """A second factor is needed: remember (sealed, once) that the code was right."""
    data = {"u": proven.user.id, "at": proven.at, "n": secrets.token_hex(16)}
    stash_sealed(PROVEN_KEY, "sms-proven", "", json.dumps(data))


def waiting_for_password() -> tuple[User, int, str] | None:
    """(account, when the code was proven, nonce) while the password step is open."""
    raw = unstash_sealed(PROVEN_KEY, "sms-proven", "", STEP_TTL)
    if raw is None:
        return None
    try:
        data = json.loads(raw)
        uid, at, nonce = str(data["u"]), int(data["at"]), str(data["n"])
    except (KeyError, TypeError, ValueError):
        return None
    user = context.db_session().get(User, uid)
    if user is None or not allowed_for(user):
        return None
    if repo.was_consumed(context.db_session(), "sms-login", nonce):
        return None
    return user, at, nonce


def check_password(password: str) -> CodeProven | Refused:
    """Step 3: the password of the account the code proved (through the lockout gate); the
    proof is spent once, so a replayed cookie adds nothing."""
    found = waiting_for_password()
    if found is None:
        return Refused(_("The page has expired. Start again."), 400)
    user, at, nonce = found
    if not verify_password(user, password):
        return Refused(_("The password is wrong."), 401)
    context.release_request_transaction()
    expires = dt.datetime.fromtimestamp(at + STEP_TTL + 60, dt.UTC)
    if not repo.consume_once(context.db_session(), "sms-login", nonce, expires):
        return Refused(_("The page has expired. Start again."), 400)
    session.pop(PROVEN_KEY, None)
    return CodeProven(user, at)

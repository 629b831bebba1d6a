"""Signing in: password, directory and recovery-code logins, the pending login between the
password and the second factor, and the start of the SSO session.

The login page (:mod:`idp.blueprints.login`) and the second-factor pages call these and only
draw the outcome.  Decisions that must hold against an attacker live here:

- **Same answer for everyone** (checklist 83): a wrong password and an unknown name take the
  same path (the password is hashed either way) and give the same :class:`Refused`.
- **Throttle before verifying** (checklist 80, 94): the login gate reserves the attempt
  before the password is hashed or the directory is asked.
- **A directory outage is not a failed login** (issue 9, defect 3): it raises
  :class:`~idp.errors.TemporarilyUnavailableError`, is audited as ``directory.unavailable`` and
  touches no lockout counter.
- **The pending login** (after a correct password, before the second factor) lives in the
  browser's signed Flask session as ``{pid, uid, mode, …}``; the server remembers each
  completed ``pid`` (:func:`~idp.storage.repo.consume_once`), so replaying the cookie
  captured in between revives nothing (issue 14 item 5).
- **A new session ends the browser's old one** (checklist 61) through
  :func:`~idp.interaction.sessions.end_sessions`, so its clients hear of it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import secrets
from collections.abc import Callable
from typing import TypeVar

from flask import request, session
from flask_babel import gettext as _
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from adapters.base import AdapterUnavailable, InvalidCredentials
from idp import audit, context, metrics
from idp.accounts.people import find_citizen
from idp.accounts.staff import StaffThrottled, authenticate_staff, upsert_staff
from idp.errors import TemporarilyUnavailableError
from idp.interaction import mfa
from idp.interaction.sessions import (
    ACR_MFA,
    ACR_PASSWORD,
    Ended,
    acr_rank,
    end_sessions,
    session_by_token,
    start_session,
)
from idp.interaction.throttle import Blocked, Rule, mfa_rule
from idp.interaction.web import cookie_name, timeouts_for
from idp.storage import repo
from idp.storage.models import SsoSession, User, utcnow

log = logging.getLogger(__name__)

PENDING_KEY = "yt_mfa"
PENDING_TTL = 600  # seconds between the password and the second factor
MAX_LOGIN_NAME = 320

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Refused:
    """A sign-in that did not succeed, as the page shows it."""

    message: str
    status: int = 401
    retry_after: int = 0
    offer_recovery: bool = False  # a hard lock: the owner may use a recovery code


@dataclasses.dataclass(frozen=True)
class Proven:
    """Who signed in, and with which factors (``pwd``, or ``pwd`` and ``recovery``)."""

    user: User
    factors: tuple[str, ...] = ("pwd",)


@dataclasses.dataclass(frozen=True)
class Closing:
    """The right password for an account in its cooling-off period before closing (注销):
    no session; the page offers to cancel the closing (:mod:`idp.interaction.rights`)."""

    user: User


@dataclasses.dataclass(frozen=True)
class Credentials:
    """What the login form sent."""

    login_name: str
    password: str
    department: str = ""
    recovery_code: str = ""


def generic_failure() -> str:
    return str(_("The login name or password is wrong."))


def _blocked(blocked: Blocked, *, citizen: bool) -> Refused:
    locked = bool(getattr(blocked, "locked", False))
    metrics.refused("locked" if locked else "throttled", "citizen" if citizen else "staff")
    return Refused(
        str(blocked),
        429,
        retry_after=int(getattr(blocked, "retry_after", 0) or 0),
        offer_recovery=locked and citizen,
    )


def split_department(creds: Credentials) -> Credentials:
    """``name@dept`` names a department's directory when ``dept`` is one of ours."""
    if "@" in creds.login_name and not creds.department:
        name, _sep, dept = creds.login_name.rpartition("@")
        if dept in context.services().directories:
            return dataclasses.replace(creds, login_name=name, department=dept)
    return creds


def check_form(creds: Credentials) -> Refused | None:
    """Refuse malformed input before any hashing (checklist 84, 111)."""
    if not creds.login_name or not creds.password:
        return Refused(str(_("Enter your login name and password.")), 400)
    if context.services().passwords.too_long(creds.password):
        return Refused(generic_failure(), 400)
    if len(creds.login_name) > MAX_LOGIN_NAME:
        return Refused(generic_failure(), 400)
    if any(ord(ch) < 32 or ch == "\x7f" for ch in creds.login_name + creds.department):
        # No account name holds control characters (NUL would also upset PostgreSQL).
        return Refused(generic_failure(), 400)
    return None


def authenticate(creds: Credentials) -> Proven | Refused | Closing:
    """Check a password (citizen) or bind at the department's directory (staff)."""
    refused = check_form(creds)
    if refused is not None:
        return refused
    creds = split_department(creds)
    if creds.department:
        return _staff(creds)
    return _citizen(creds)


def _failure(user_id: str | None, method: str, department: str | None = None) -> None:
    # Own transaction with retry: parallel failures never collide on the audit chain.
    audit.record_now(
        context.services().db,
        "login.failure",
        actor=user_id or "anonymous",
        ip=context.client_ip(),
        outcome="failure",
        details={"method": method, "department": department},
    )


def _citizen(creds: Credentials) -> Proven | Refused | Closing:
    services = context.services()
    # Read outside the request's transaction (PostgreSQL: no BEGIN and COMMIT round trips
    # around one SELECT); the gate and the audit commit in transactions of their own, and
    # the session row written after the password check only refers to the account's id.
    with services.db.reads() as reads:
        user = find_citizen(reads, creds.login_name, vault=services.vault)
    gate = services.login_gate
    ip = context.client_ip()
    blocked = gate.check(user, creds.login_name, ip)
    if blocked is not None:
        if creds.recovery_code and user is not None:
            return _with_recovery_code(user, creds, blocked)
        return _blocked(blocked, citizen=True)
    ok = services.passwords.verify(user.password_hash if user else None, creds.password)
    if ok and user is not None and user.status == "closing":
        gate.record(user, creds.login_name, ip, success=True)
        return Closing(user)
    ok = ok and user is not None and user.is_active
    gate.record(user, creds.login_name, ip, success=ok)
    if not ok or user is None:
        _failure(user.id if user else None, "password")
        return Refused(generic_failure())
    if services.passwords.needs_rehash(user.password_hash or ""):
        user = context.db_session().merge(user)  # stored with the login's session row
        user.password_hash = services.passwords.hash(creds.password)
    return Proven(user)


def _with_recovery_code(user: User, creds: Credentials, blocked: Blocked) -> Proven | Refused:
    """The owner of a locked account: password plus a recovery code still gets in (checklist 81).

    The recovery code (79 random bits) is checked first, without using it, so a wrong one costs
    no hashing; only when both are right is the code consumed (atomically) and the lock cleared.
    """
    services = context.services()
    refusal = _blocked(blocked, citizen=True)
    if not mfa.recovery_code_valid(services.db, services.code_secret, user.id, creds.recovery_code):
        _failure(user.id, "recovery_code")
        return refusal
    if not (user.is_active and services.passwords.verify(user.password_hash, creds.password)):
        _failure(user.id, "recovery_code")
        return refusal
    if not mfa.use_recovery_code(services.db, services.code_secret, user.id, creds.recovery_code):
        return refusal
    services.login_gate.unlock(user)
    audit.record_now(
        services.db,
        "login.unlock",
        actor=user.id,
        target=user.id,
        ip=context.client_ip(),
        details={"method": "recovery_code"},
    )
    return Proven(user, ("pwd", "recovery"))


def _staff(creds: Credentials) -> Proven | Refused:
    """Search-then-bind at the department's own directory (issue 6)."""
    services = context.services()
    directory = services.directories.get(creds.department)
    if directory is None:
        return Refused(str(_("Unknown department.")))
    ip = context.client_ip()
    context.db_session().commit()  # the gate commits on its own (SQLite write lock)
    try:
        # Counted per directory entry, before the bind (issue 14 item 9, checklist 94).
        identity = authenticate_staff(
            directory, services.login_gate, creds.login_name, creds.password, ip
        )
    except StaffThrottled as exc:
        return _blocked(exc.blocked, citizen=False)
    except InvalidCredentials:
        _failure(None, "ldap", creds.department)
        return Refused(generic_failure())
    except AdapterUnavailable:
        log.warning("directory %s unavailable", creds.department)
        audit.record_now(
            services.db,
            "directory.unavailable",
            actor="anonymous",
            target=creds.department,
            ip=ip,
            outcome="failure",
        )
        raise TemporarilyUnavailableError(
            "the department directory is unavailable; try again later"
        ) from None
    user = upsert_staff(context.db_session(), identity)
    if not user.is_active:
        _failure(user.id, "ldap", creds.department)
        return Refused(generic_failure())
    return Proven(user)


def verify_password(user: User, password: str) -> bool:
    """Re-check the signed-in account's password, through the lockout gate (checklist 80)."""
    services = context.services()
    if not password or services.passwords.too_long(password) or not user.password_hash:
        return False
    context.release_request_transaction()
    gate = services.login_gate
    ip = context.client_ip()
    if gate.check(user, user.id, ip) is not None:
        return False
    ok = services.passwords.verify(user.password_hash, password)
    gate.record(user, user.id, ip, success=ok)
    if not ok:
        audit.record_now(services.db, "reauth.failure", actor=user.id, ip=ip, outcome="failure")
    return ok


# ====================================================================== the pending login
@dataclasses.dataclass
class Pending:
    """A login between its password and its second factor (or a step-up in progress)."""

    pid: str
    uid: str
    mode: str  # login | step_up
    t: float  # when it began
    pt: float  # when the password (first factor) was verified
    sid: str | None = None  # step-up: the SSO session being raised
    target: str = ACR_MFA


def new_pending(
    user: User, mode: str, target: str, *, pt: float | None = None, sid: str | None = None
) -> Pending:
    now = utcnow().timestamp()
    pending = Pending(secrets.token_hex(16), user.id, mode, now, pt or now, sid=sid, target=target)
    session[PENDING_KEY] = dataclasses.asdict(pending)
    return pending


def load_pending(mode: str | None = None) -> Pending | None:
    """The browser's pending login, unless expired, of another mode, or already completed."""
    data = session.get(PENDING_KEY)
    if not isinstance(data, dict):
        return None
    try:
        p = Pending(**data)
    except TypeError:
        session.pop(PENDING_KEY, None)
        return None
    if utcnow().timestamp() - p.t > PENDING_TTL or (mode is not None and p.mode != mode):
        return None
    if repo.was_consumed(context.db_session(), "pending-login", p.pid):
        session.pop(PENDING_KEY, None)
        return None
    return p


def pending_user(p: Pending) -> User | None:
    user = context.db_session().get(User, p.uid)
    return user if user is not None and user.is_active else None


def drop_pending() -> None:
    session.pop(PENDING_KEY, None)


def complete_pending(p: Pending) -> bool:
    """Spend the pending login: True once; a replayed cookie gets False (issue 14 item 5)."""
    drop_pending()
    expires = dt.datetime.fromtimestamp(p.t + PENDING_TTL + 60, dt.UTC)
    context.release_request_transaction()
    return repo.consume_once(context.db_session(), "pending-login", p.pid, expires)


@dataclasses.dataclass(frozen=True)
class Attempt:
    """The outcome of one second-factor attempt."""

    factor: str | None = None  # what was proven
    refused: Refused | None = None
    restart: bool = False  # too many wrong codes for this pending login: sign in again


def code_factor(user: User, method: str, code: str) -> str | None:
    """Verify a typed second-factor code: the factor it proves (``otp``, ``recovery``,
    ``sms``), or None.  Each code is used up by its own atomic compare-and-set."""
    services = context.services()
    if method == "totp":
        return "otp" if mfa.verify_totp(services.db, services.kek, user.id, code) else None
    if method == "recovery":
        used = mfa.use_recovery_code(services.db, services.code_secret, user.id, code)
        return "recovery" if used else None
    if method == "sms" and user.phone:
        ok = mfa.check_code(
            services.db,
            services.code_secret,
            destination=user.phone,
            purpose="mfa",
            user_id=user.id,
            code=code,
        )
        return "sms" if ok else None
    return None


def attempt_second_factor(
    p: Pending | None,
    user: User,
    verify: Callable[[], str | None],
    *,
    mode: str = "",
) -> Attempt:
    """Count the attempt first (atomically), then verify (checklist 72).

    Two counters: the pending login's (``mfa.max_attempts`` ends it; absent when no login is
    pending, as in a password reset, whose ``mode`` the audit then names) and the account's,
    which survives restarting the login (:func:`idp.interaction.throttle.mfa_rule`).
    """
    context.release_request_transaction()
    services = context.services()
    counters = services.login_gate.counters
    max_attempts = services.policies.get_int("mfa.max_attempts")
    pending_key = f"mfa-pending:{p.pid}" if p is not None else None
    pv = None
    if pending_key is not None:
        pv = counters.reserve(
            pending_key, Rule(free=1_000_000, base_delay=1, max_delay=1, cap=max_attempts)
        )
        if not pv.allowed:
            return Attempt(restart=True)
    account_key = f"mfa:{user.id}"
    av = counters.reserve(account_key, mfa_rule(services.policies))
    if not av.allowed:
        if pending_key is not None:
            counters.release(pending_key)
        blocked = services.login_gate._refusal(av)
        return Attempt(refused=Refused(str(blocked), 429, retry_after=av.retry_after or 0))
    factor = verify()
    if factor is not None:
        if pending_key is not None:
            counters.reset(pending_key)
        counters.reset(account_key)
        return Attempt(factor=factor)
    audit.record_now(
        services.db,
        "mfa.failure",
        actor=user.id,
        ip=context.client_ip(),
        outcome="failure",
        details={"mode": p.mode if p is not None else mode, "failures": av.failures},
    )
    if pv is not None and pv.failures >= max_attempts:
        return Attempt(restart=True)
    return Attempt(refused=Refused(str(_("The code is wrong or was already used.")), 401))


# ====================================================================== the session
def commit_retrying(db_session: Session, write: Callable[[], T], attempts: int = 10) -> T:
    """Run ``write`` and commit; run it again when a concurrent request took the same audit
    sequence number (PostgreSQL: two transactions both read the last entry, one commit fails
    on the primary key).  A login must not turn into a 500 because someone else signed in."""
    for attempt in range(attempts):
        try:
            result = write()
            db_session.commit()
            return result
        except IntegrityError:
            db_session.rollback()
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def _end_browser_session(db_session: Session) -> Ended:
    """End the session this browser had before (replaced by a new login, checklist 61)."""
    old = session_by_token(db_session, request.cookies.get(cookie_name()))
    rows = [old] if old is not None else []
    return end_sessions(db_session, context.services(), rows, reason="replaced")


def begin_pending(user: User, required: str) -> Pending:
    """A correct password, and a second factor is needed: no session yet (issue 5)."""
    drop_pending()
    pending = new_pending(user, "login", required)
    db_session = context.db_session()
    user_id = user.id

    def write() -> Ended:
        # A different login is in progress: the browser's previous SSO session ends now.
        ended = _end_browser_session(db_session)
        audit.record(
            db_session,
            "login.first_factor",
            actor=user_id,
            ip=context.client_ip(),
            details={"required_acr": required},
        )
        return ended

    commit_retrying(db_session, write).kick()
    return pending


def needs_second_factor(amr: list[str], required: str | None) -> bool:
    """A password alone does not reach ``required``."""
    return (
        list(amr) == ["pwd"]
        and required is not None
        and (acr_rank(required) > acr_rank(ACR_PASSWORD))
    )


def begin_session(
    user: User,
    *,
    amr: list[str],
    acr: str | None = None,
    factors: dict[str, int] | None = None,
) -> str:
    """Start a fresh SSO session, ending the browser's old one; return the cookie value."""
    db_session = context.db_session()
    limits = timeouts_for(user)

    def write() -> tuple[str, Ended]:
        ended = _end_browser_session(db_session)
        token, row = start_session(
            db_session,
            user,
            limits,
            amr=amr,
            ip=context.client_ip(),
            user_agent=request.headers.get("User-Agent"),
            acr=acr or ACR_PASSWORD,
            factors=factors,
        )
        audit.record(
            db_session,
            "login.success",
            actor=user.id,
            ip=context.client_ip(),
            details={"amr": amr, "acr": row.acr, "sid": row.id, "kind": user.kind},
        )
        return token, ended

    token, ended = commit_retrying(db_session, write)
    ended.kick()
    return token


def raise_session(sso_id: str, user: User, new_factors: set[str]) -> str:
    """Step-up: add the proven factors to the session; a new cookie value (ASVS 7.2.4)."""
    db_session = context.db_session()
    now = int(utcnow().timestamp())
    token = repo.new_secret(32)

    def write() -> None:
        row = db_session.get(SsoSession, sso_id)
        assert row is not None
        previous = {
            k: int(v) for k, v in (row.factors or {}).items() if k in mfa.FACTOR_AMR or k == "uv"
        }
        factors = {**previous, **dict.fromkeys(new_factors, now)}
        row.factors = factors
        row.amr = mfa.amr_for(factors)
        row.acr = mfa.acr_for(factors)
        row.token_digest = repo.digest(token)
        audit.record(
            db_session,
            "login.step_up",
            actor=user.id,
            ip=context.client_ip(),
            details={"sid": sso_id, "acr": row.acr, "amr": row.amr},
        )

    commit_retrying(db_session, write)
    return token

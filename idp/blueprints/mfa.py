"""Pages for second factors: the login challenge, step-up, passkey login, self-service security.

Specs: RFC 6238 (TOTP), RFC 8176 (``amr``), W3C WebAuthn Level 2, NIST SP 800-63B-4, OpenID
Connect Core §3.1.2.1 (``acr_values``) and §5.5.1.1 (an essential ``acr`` claim).  The logic
lives in :mod:`idp.interaction.mfa`; this module keeps the state of a login between its
password step and its second factor, and draws the pages.

**The pending login.**  After a correct password, when a second factor is needed, no SSO
session exists yet: the browser's Flask session (signed with the app secret, so identical on
every worker) holds only ``{pid, uid, mode, pt}``.  Everything that must hold against an
attacker is on the server, keyed by ``pid`` or the account: the wrong-code counter of this
pending login (``mfa.max_attempts`` ends it, checklist 72) and the per-account counter that
survives restarting the login (:func:`idp.interaction.throttle.mfa_rule`).  Replaying an old
cookie revives nothing: a dead ``pid`` stays dead.  A second tab shares the same pending login;
a restarted login starts a new one, with the same account counter.

**Step-up** (checklist 18, 75) keeps the SSO session and asks only for the factor it lacks;
the session's ``acr``/``amr``/``factors`` are raised and its cookie value is replaced.  Every
path that issues a code (``/authorize``, ``/authorize/resume``, the consent POST) re-runs the
same decision, so no URL skips the factor.

Every form is CSRF-protected (Flask-WTF; JSON calls send ``X-CSRFToken``), every credential
POST answers 303, and the second-factor endpoints are rate-limited per address (429 with
``Retry-After``, checklist 112).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import hmac
import io
import json
import logging
import re
import secrets
from collections.abc import Callable
from typing import Any

from authlib.oauth2.rfc6749.errors import OAuth2Error
from flask import (
    Blueprint,
    Flask,
    g,
    jsonify,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _
from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from werkzeug.wrappers import Response

from adapters.base import AdapterError
from idp import audit, context
from idp.interaction import mfa
from idp.interaction.flow import InteractionExpired
from idp.interaction.outbox import build_sms_sender
from idp.interaction.password_rules import PolicyPasswords
from idp.interaction.policies import PolicyStore, session_timeouts_for, user_classes
from idp.interaction.ratelimit import RateLimiter
from idp.interaction.sessions import ACR_MFA, ACR_PASSWORD, ACR_PHISHING_RESISTANT, acr_rank
from idp.interaction.throttle import Counters, LoginGate, Rule, mfa_rule
from idp.interaction.web import cookie_name, current_sso, current_user_row, set_session_cookie
from idp.oauth import authorize as authz
from idp.storage import repo
from idp.storage.models import (
    AuditEvent,
    Grant,
    SeenJti,
    SsoSession,
    User,
    WebAuthnCredential,
    utcnow,
)
from keys.crypto import KekError

log = logging.getLogger(__name__)
bp = Blueprint("mfa", __name__)

PENDING_KEY = "yt_mfa"
PENDING_TTL = 600  # seconds between the password and the second factor
ENROL_KEY = "yt_enrol"
ENROL_TTL = 900
WEBAUTHN_KEY = "yt_wa"
WEBAUTHN_TTL = 300
REAUTH_KEY = "yt_reauth"
REAUTH_WINDOW = 300  # "recent authentication" for security changes (ASVS 7.5.1, checklist 68)
PHONE_KEY = "yt_phone"
DEVICE_COOKIE_TTL = 400 * 86400
CREDENTIAL_ID = re.compile(r"[A-Za-z0-9_-]{1,512}")  # base64url, as stored


# ====================================================================== installation
def install(services: context.Services) -> None:
    """Put the MFA hooks into ``services.extra`` (``login_gate``, ``required_acr``, …)."""
    settings = services.settings
    policies = PolicyStore(services.db)
    services.extra["policies"] = policies
    services.passwords = PolicyPasswords(
        policies,
        memory_kib=settings.argon2_memory_kib,
        time_cost=settings.argon2_time_cost,
        parallelism=settings.argon2_parallelism,
        min_length=settings.password_min_length,
        max_length=settings.password_max_length,
    )
    services.extra["login_gate"] = LoginGate(Counters(services.db), policies, known_device_for)
    services.extra["required_acr"] = required_acr_hook
    services.extra["after_password"] = after_password_hook
    secret = services.extra["secret_key"].encode()
    services.extra["mfa_secret"] = hmac.new(secret, b"yitong-mfa-codes", hashlib.sha256).digest()
    namespace = hashlib.sha256(secret + settings.issuer.encode()).hexdigest()[:12]
    services.extra["rate_limiter"] = RateLimiter(settings.redis_url, namespace=f"yt{namespace}")
    services.extra["sms_sender"] = build_sms_sender(settings, services.db)


def register(app: Flask, csrf: Any) -> None:
    """Install the hooks, mount the pages (CSRF-protected) and the per-request guards."""
    install(app.extensions["yitong"])
    app.register_blueprint(bp)
    app.before_request(_rate_limit)
    app.before_request(_enforce_session_policy)


def _services() -> context.Services:
    return context.services()


def _policies() -> PolicyStore:
    return _services().extra["policies"]  # type: ignore[no-any-return]


def _gate() -> LoginGate:
    return _services().extra["login_gate"]  # type: ignore[no-any-return]


def _secret() -> bytes:
    return _services().extra["mfa_secret"]  # type: ignore[no-any-return]


def client_ip() -> str:
    return request.remote_addr or "unknown"


def _release_request_transaction() -> None:
    """End the request's transaction before one-time credentials are consumed in their own.

    On SQLite the request session holds the write lock from its first statement; an atomic
    compare-and-set in a second transaction would otherwise wait for it.
    """
    if "db_session" in g:
        context.db_session().commit()


# ====================================================================== rate limits
def _limit_for(endpoint: str) -> tuple[str, int] | None:
    settings = context.settings()
    if endpoint in ("account.login_post", "account.register_post"):
        return endpoint.split(".")[1].split("_")[0], settings.rate_limit_login_per_minute
    if endpoint == "account.step_up" or endpoint.startswith("mfa."):
        return "mfa", _policies().get_int("ratelimit.mfa_per_minute")
    return None


def _rate_limit() -> Response | None:
    """429 + Retry-After past the per-address limit (checklist 112); never unlimited."""
    if request.method != "POST" or not request.endpoint:
        return None
    limit = _limit_for(request.endpoint)
    if limit is None:
        return None
    scope, per_minute = limit
    limiter: RateLimiter = _services().extra["rate_limiter"]
    wait = limiter.hit(scope, client_ip(), per_minute, 60)
    if wait is None:
        return None
    message = _("Too many requests. Try again in %(n)d second(s).", n=wait)
    if request.is_json:
        resp = jsonify({"error": "rate_limited", "message": message})
        resp.status_code = 429
    else:
        resp = make_response(render_template("error.html", message=message, error=None), 429)
    resp.headers["Retry-After"] = str(wait)
    return resp


# ====================================================================== session policy
def _enforce_session_policy() -> None:
    """End SSO sessions past the idle or absolute timeout of the user's class (checklist 66).

    The settings' timeouts still apply on top (the stricter wins); this runs before the
    session is loaded, so a request never sees a session its class has outlived.
    """
    if request.path.startswith(("/static", "/.well-known", "/jwks", "/token", "/admin/api")):
        return
    token = request.cookies.get(cookie_name())
    if not token or len(token) > 200:
        return
    db = _services().db
    with db.session() as s:
        row = s.execute(
            select(
                SsoSession.id, SsoSession.auth_time, SsoSession.last_seen_at, User.kind, User.roles
            )
            .join(User, User.id == SsoSession.user_id)
            .where(SsoSession.token_digest == repo.digest(token), SsoSession.ended_at.is_(None))
        ).first()
    if row is None:
        return
    sid, auth_time, last_seen, kind, roles = row
    probe = User(id="", kind=kind, roles=roles or [])
    idle, absolute = session_timeouts_for(_policies(), user_classes(probe))
    now = utcnow()
    if (now - last_seen).total_seconds() > idle or (now - auth_time).total_seconds() > absolute:
        with db.transaction() as s:
            s.execute(
                update(SsoSession)
                .where(SsoSession.id == sid, SsoSession.ended_at.is_(None))
                .values(ended_at=now)
                .execution_options(synchronize_session=False)
            )


# ====================================================================== known devices
def _device_serializer() -> URLSafeSerializer:
    return URLSafeSerializer(_services().extra["secret_key"], salt="yitong-known-device")


def _device_cookie_name() -> str:
    secure = context.settings().issuer.startswith("https://")
    return "__Host-yitong_dev" if secure else "yitong_dev"


def _devices() -> list[list[str]]:
    raw = request.cookies.get(_device_cookie_name())
    if not raw or len(raw) > 4000:
        return []
    try:
        data = _device_serializer().loads(raw)
    except BadSignature:
        return []
    if not isinstance(data, list):
        return []
    return [
        d
        for d in data
        if isinstance(d, list) and len(d) == 2 and all(isinstance(x, str) for x in d)
    ]


def known_device_for(user_id: str) -> str | None:
    """The id of this browser's known device for ``user_id`` (checklist 81), or None."""
    from flask import has_request_context

    if not has_request_context():
        return None
    for uid, did in _devices():
        if hmac.compare_digest(uid, user_id):
            return did
    return None


def remember_device(resp: Response, user_id: str) -> None:
    devices = [d for d in _devices() if d[0] != user_id][-4:]
    did = known_device_for(user_id) or secrets.token_urlsafe(16)
    devices.append([user_id, did])
    secure = context.settings().issuer.startswith("https://")
    resp.set_cookie(
        _device_cookie_name(),
        _device_serializer().dumps(devices),
        max_age=DEVICE_COOKIE_TTL,
        httponly=True,
        secure=secure,
        samesite="Lax",
        path="/",
    )


# ====================================================================== levels
def _ix_ctx(ix: str | None) -> authz.AuthorizationContext | None:
    """The validated authorization request carried by ``ix`` (None when absent or bad)."""
    if not ix:
        return None
    try:
        multi, _started, _extra = _services().extra["interaction_sealer"].open(ix)
    except InteractionExpired:
        return None
    from idp.blueprints.oidc import validate_request

    try:  # the same checks (and resolved PAR / request-object parameters) as /authorize
        return validate_request(multi)
    except (authz.PageError, OAuth2Error):
        return None


def required_acr_for(ctx: Any, user: User | None) -> str | None:
    """The level this request needs for this user: request, client, policy, enrolment."""
    policies = _policies()
    wanted = mfa.requested_acr(ctx) if ctx is not None else None
    client = getattr(ctx, "client", None)
    scopes = getattr(ctx, "scopes", None) or []
    wanted = mfa.higher(wanted, mfa.policy_acr(policies, user, client, scopes))
    if (
        user is not None
        and acr_rank(wanted) < acr_rank(ACR_MFA)
        and policies.get_bool("mfa.always_when_enrolled")
        and _has_second_factor(user)
    ):
        wanted = ACR_MFA
    return wanted


def required_acr_hook(ctx: Any) -> str | None:
    """``services.extra['required_acr']``: asked by the authorization decision (prompts.decide)."""
    return required_acr_for(ctx, current_user_row())


def _has_second_factor(user: User) -> bool:
    if "yt_factors" in g and user.id in g.yt_factors:
        return bool(g.yt_factors[user.id].any_second_factor)
    with _services().db.session() as s:
        return mfa.has_second_factor(s, _policies(), user)


def _user_factors(user: User) -> mfa.UserFactors:
    cache = g.setdefault("yt_factors", {})
    if user.id not in cache:
        with _services().db.session() as s:
            cache[user.id] = mfa.factors_of(s, _policies(), user)
    return cache[user.id]  # type: ignore[no-any-return]


# ====================================================================== the pending login
@dataclasses.dataclass
class Pending:
    pid: str
    uid: str
    mode: str  # login | step_up
    t: float  # when it began
    pt: float  # when the password (first factor) was verified
    sid: str | None = None  # step-up: the SSO session being raised
    target: str = ACR_MFA


def _save_pending(p: Pending) -> None:
    session[PENDING_KEY] = dataclasses.asdict(p)


def _load_pending(mode: str | None = None) -> Pending | None:
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
    return p


def _drop_pending() -> None:
    session.pop(PENDING_KEY, None)
    session.pop(ENROL_KEY, None)
    session.pop(WEBAUTHN_KEY, None)


def after_password_hook(user: User, amr: list[str], ix: str) -> Response | None:
    """``services.extra['after_password']``: send the login to a second factor when needed."""
    if list(amr) != ["pwd"]:
        return None
    ctx = _ix_ctx(ix)
    required = required_acr_for(ctx, user)
    if required is None or acr_rank(required) <= acr_rank(ACR_PASSWORD):
        return None
    now = utcnow().timestamp()
    _drop_pending()
    _save_pending(Pending(secrets.token_hex(16), user.id, "login", now, now, target=required))
    from idp.blueprints.account import commit_retrying

    db_session = context.db_session()
    old = request.cookies.get(cookie_name())
    user_id = user.id

    def write() -> None:
        # A different login is in progress: the browser's previous SSO session ends now.
        if old and len(old) <= 200:
            db_session.execute(
                update(SsoSession)
                .where(SsoSession.token_digest == repo.digest(old), SsoSession.ended_at.is_(None))
                .values(ended_at=utcnow())
                .execution_options(synchronize_session=False)
            )
        audit.record(
            db_session,
            "login.first_factor",
            actor=user_id,
            ip=client_ip(),
            details={"required_acr": required},
        )

    commit_retrying(db_session, write)
    resp = redirect(url_for("mfa.challenge", ix=ix or None), code=303)
    from idp.interaction.web import clear_session_cookie

    clear_session_cookie(resp)
    return resp


def _restart_login(ix: str, message: str) -> Response:
    """The pending login is over: back to the password step, saying why."""
    _drop_pending()
    from idp.blueprints.account import _directories

    body = render_template(
        "login.html",
        ix=ix,
        client=None,
        login_hint="",
        error=message,
        directories=_directories(),
        department="",
    )
    return make_response(body, 401)


def _pending_user(p: Pending) -> User | None:
    user = context.db_session().get(User, p.uid)
    return user if user is not None and user.is_active else None


# ---------------------------------------------------------------------- the challenge page
def _offers(p: Pending, user: User) -> dict[str, bool]:
    uf = _user_factors(user)
    if p.target == ACR_PHISHING_RESISTANT:
        return {"webauthn": bool(uf.webauthn), "totp": False, "sms": False, "recovery": False}
    return {
        "webauthn": bool(uf.webauthn),
        "totp": uf.totp,
        "sms": uf.sms_phone is not None and _services().extra.get("sms_sender") is not None,
        "recovery": uf.recovery_left > 0,
    }


def _render_challenge(
    p: Pending,
    user: User,
    ix: str,
    *,
    error: str | None = None,
    info: str | None = None,
    status: int = 200,
    retry_after: int | None = None,
) -> Response:
    offers = _offers(p, user)
    if not any(offers.values()):
        return _cannot_reach(p, user, ix)
    action = url_for("account.step_up") if p.mode == "step_up" else url_for("mfa.challenge_post")
    uf = _user_factors(user)
    body = render_template(
        "mfa_challenge.html",
        ix=ix,
        offers=offers,
        action=action,
        mode=p.mode,
        error=error,
        info=info,
        phone=_mask_phone(uf.sms_phone),
        target=p.target,
        user=user,
    )
    resp = make_response(body, status)
    if retry_after:
        resp.headers["Retry-After"] = str(retry_after)
    return resp


def _cannot_reach(p: Pending, user: User, ix: str) -> Response:
    """No factor the user has reaches the level: enrol (login, MFA) or explain."""
    if p.mode == "login" and p.target == ACR_MFA:
        return _enrol_at_login(p, user, ix)
    body = render_template("mfa_unavailable.html", ix=ix, target=p.target, mode=p.mode)
    return make_response(body, 403)


def _mask_phone(phone: str | None) -> str | None:
    if not phone:
        return None
    return phone[:-8] + "****" + phone[-4:] if len(phone) > 8 else "****"


@bp.route("/login/mfa", methods=["GET"])
def challenge() -> Response:
    ix = request.args.get("ix", "")
    p = _load_pending("login")
    if p is None:
        return _restart_login(ix, _("Your sign-in has expired. Sign in again."))
    user = _pending_user(p)
    if user is None:
        return _restart_login(ix, _("Your sign-in has expired. Sign in again."))
    return _render_challenge(p, user, ix)


@bp.route("/login/mfa", methods=["POST"])
def challenge_post() -> Response:
    return handle_challenge_post("login")


def handle_challenge_post(mode: str) -> Response:
    """Check a submitted TOTP, recovery or SMS code for the pending login or step-up."""
    ix = request.form.get("ix", "")[:32768]
    p = _load_pending(mode)
    if p is None:
        if mode == "step_up":
            return redirect(url_for("account.step_up", ix=ix or None), code=303)
        return _restart_login(ix, _("Your sign-in has expired. Sign in again."))
    user = _pending_user(p)
    if user is None or (mode == "step_up" and not _step_up_session_matches(p)):
        return _restart_login(ix, _("Your sign-in has expired. Sign in again."))
    method = request.form.get("method", "")
    if method == "cancel":
        _drop_pending()
        return _cancel(ix)
    if method == "sms_send":
        return _send_login_sms(p, user, ix)
    code = request.form.get("code", "")[:64]
    offers = _offers(p, user)
    checks: dict[str, Callable[[], str | None]] = {
        "totp": lambda: (
            "otp" if mfa.verify_totp(_services().db, _services().kek, user.id, code) else None
        ),
        "recovery": lambda: (
            "recovery" if mfa.use_recovery_code(_services().db, _secret(), user.id, code) else None
        ),
        "sms": lambda: (
            "sms"
            if user.phone
            and mfa.check_code(
                _services().db,
                _secret(),
                destination=user.phone,
                purpose="mfa",
                user_id=user.id,
                code=code,
            )
            else None
        ),
    }
    if method not in checks or not offers.get(method):
        return _render_challenge(
            p, user, ix, error=_("Choose a way to confirm it is you."), status=400
        )
    factor, refusal = _attempt(p, user, ix, checks[method])
    if refusal is not None:
        return refusal
    assert factor is not None
    return _finish(p, user, ix, {factor})


def _attempt(
    p: Pending, user: User, ix: str, verify: Callable[[], str | None]
) -> tuple[str | None, Response | None]:
    """Count the attempt first (atomically), then verify; see the module docstring."""
    _release_request_transaction()
    counters = _gate().counters
    policies = _policies()
    max_attempts = policies.get_int("mfa.max_attempts")
    pending_key = f"mfa-pending:{p.pid}"
    pv = counters.reserve(
        pending_key, Rule(free=1_000_000, base_delay=1, max_delay=1, cap=max_attempts)
    )
    if not pv.allowed:
        return None, _restart_login(ix, _("Too many wrong codes. Sign in again."))
    account_key = f"mfa:{user.id}"
    av = counters.reserve(account_key, mfa_rule(policies))
    if not av.allowed:
        counters.release(pending_key)
        refusal = LoginGate._refusal(av)
        return None, _render_challenge(
            p, user, ix, error=str(refusal), status=429, retry_after=av.retry_after or None
        )
    factor = verify()
    if factor is not None:
        counters.reset(pending_key)
        counters.reset(account_key)
        return factor, None
    audit.record_now(
        _services().db,
        "mfa.failure",
        actor=user.id,
        ip=client_ip(),
        outcome="failure",
        details={"mode": p.mode, "failures": av.failures},
    )
    if pv.failures >= max_attempts:
        return None, _restart_login(ix, _("Too many wrong codes. Sign in again."))
    return None, _render_challenge(
        p, user, ix, error=_("The code is wrong or was already used."), status=401
    )


def _finish(p: Pending, user: User, ix: str, new_factors: set[str]) -> Response:
    """The second factor was proven: complete the login, or raise the session (step-up)."""
    now = int(utcnow().timestamp())
    if p.mode == "step_up":
        return _finish_step_up(p, user, ix, new_factors, now)
    from idp.blueprints.account import complete_login

    factors = {"pwd": int(p.pt), **dict.fromkeys(new_factors, now)}
    _drop_pending()
    return complete_login(
        user, amr=mfa.amr_for(factors), ix=ix, acr=mfa.acr_for(factors), factors=factors
    )


def _finish_step_up(p: Pending, user: User, ix: str, new_factors: set[str], now: int) -> Response:
    sso = current_sso()
    if sso is None or sso.id != p.sid or sso.user_id != user.id:
        return _restart_login(ix, _("Your sign-in has expired. Sign in again."))
    from idp.blueprints.account import commit_retrying

    db_session = context.db_session()
    sid = sso.id
    previous = {
        k: int(v) for k, v in (sso.factors or {}).items() if k in mfa.FACTOR_AMR or k == "uv"
    }
    factors = {**previous, **dict.fromkeys(new_factors, now)}
    # A raised session gets a new cookie value (fixation on privilege change, ASVS 7.2.4).
    token = repo.new_secret(32)

    def write() -> None:
        row = db_session.get(SsoSession, sid)
        assert row is not None
        row.factors = factors
        row.amr = mfa.amr_for(factors)
        row.acr = mfa.acr_for(factors)
        row.token_digest = repo.digest(token)
        audit.record(
            db_session,
            "login.step_up",
            actor=user.id,
            ip=client_ip(),
            details={"sid": sid, "acr": row.acr, "amr": row.amr},
        )

    commit_retrying(db_session, write)
    _drop_pending()
    target = url_for("oidc.resume", ix=ix) if ix else url_for("mfa.security")
    resp = redirect(target, code=303)
    set_session_cookie(resp, token)
    return resp


def _cancel(ix: str) -> Response:
    from idp.blueprints.account import _cancel as cancel_flow

    if not ix:
        return redirect(url_for("account.home"), code=303)
    try:
        multi, _started, _extra = _services().extra["interaction_sealer"].open(ix)
    except InteractionExpired:
        return redirect(url_for("account.home"), code=303)
    return cancel_flow(multi)


def _send_login_sms(p: Pending, user: User, ix: str) -> Response:
    offers = _offers(p, user)
    if not offers.get("sms") or not user.phone:
        return _render_challenge(
            p, user, ix, error=_("SMS codes are not available for this account."), status=400
        )
    ok, message, wait = send_sms_code(user.phone, "mfa", user.id)
    if not ok:
        return _render_challenge(
            p, user, ix, error=message, status=429 if wait else 503, retry_after=wait
        )
    return _render_challenge(p, user, ix, info=message)


def send_sms_code(phone: str, purpose: str, user_id: str | None) -> tuple[bool, str, int | None]:
    """Issue and send a code (rate limited per number and per address). (ok, message, wait)."""
    services = _services()
    sender = services.extra.get("sms_sender")
    if sender is None:
        return False, _("SMS codes are not available right now."), None
    policies = _policies()
    limiter: RateLimiter = services.extra["rate_limiter"]
    wait = limiter.hit("sms-ip", client_ip(), policies.get_int("sms.per_ip_per_hour"), 3600)
    if wait is not None:
        return False, _("Too many codes requested. Try again in %(n)d second(s).", n=wait), wait
    _release_request_transaction()
    try:
        code = mfa.issue_code(
            services.db, _secret(), policies, destination=phone, purpose=purpose, user_id=user_id
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
        ip=client_ip(),
        details={"purpose": purpose, "to": _mask_phone(phone)},
    )
    return True, _("A code was sent to %(phone)s.", phone=_mask_phone(phone)), None


# ---------------------------------------------------------------------- step-up
def step_up_view() -> Response:
    """GET/POST /login/step-up?ix=…: ask the signed-in user only for the missing factor."""
    if request.method == "POST":
        return handle_challenge_post("step_up")
    ix = request.args.get("ix", "")
    sso = current_sso()
    user = current_user_row()
    if sso is None or user is None:
        return redirect(url_for("account.login", ix=ix or None), code=302)
    ctx = _ix_ctx(ix) if ix else None
    if ix and ctx is None:
        from idp.blueprints.oidc import error_page

        return error_page(
            _("The sign-in page has expired; start again."), 400, "interaction_expired"
        )
    required = required_acr_for(ctx, user) if ctx is not None else _wanted_level()
    if required is None or acr_rank(sso.acr) >= acr_rank(required):
        target = url_for("oidc.resume", ix=ix) if ix else url_for("mfa.security")
        return redirect(target, code=302)
    p = _load_pending("step_up")
    now = utcnow().timestamp()
    if p is None or p.sid != sso.id or p.uid != user.id or p.target != required:
        p = Pending(
            secrets.token_hex(16),
            user.id,
            "step_up",
            now,
            sso.auth_time.timestamp(),
            sid=sso.id,
            target=required,
        )
        _save_pending(p)
    return _render_challenge(p, user, ix)


def _wanted_level() -> str | None:
    wanted = request.args.get("acr", "")
    return wanted if acr_rank(wanted) > 0 else None


def _step_up_session_matches(p: Pending) -> bool:
    sso = current_sso()
    return sso is not None and sso.id == p.sid and sso.user_id == p.uid


# ---------------------------------------------------------------------- enrolment at login
def _new_enrolment(user_id: str) -> str:
    secret = mfa.new_totp_secret()
    blob = _services().kek.encrypt(secret.encode(), b"totp-enrol:" + user_id.encode())
    session[ENROL_KEY] = {
        "u": user_id,
        "s": base64.b64encode(blob).decode(),
        "t": utcnow().timestamp(),
    }
    return secret


def _enrolment_secret(user_id: str) -> str | None:
    data = session.get(ENROL_KEY)
    if not isinstance(data, dict) or data.get("u") != user_id:
        return None
    if utcnow().timestamp() - float(data.get("t", 0)) > ENROL_TTL:
        return None
    try:
        blob = base64.b64decode(str(data["s"]))
        return _services().kek.decrypt(blob, b"totp-enrol:" + user_id.encode()).decode()
    except (KeyError, ValueError, TypeError, KekError):  # tampered or stale: start over
        return None


def _account_label(user: User) -> str:
    return user.email or user.phone or user.id_number_masked or user.name


def _qr_data_uri(uri: str) -> str:
    import qrcode
    import qrcode.image.svg

    img = qrcode.make(uri, image_factory=qrcode.image.svg.SvgPathImage, box_size=8)
    buf = io.BytesIO()
    img.save(buf)
    return "data:image/svg+xml;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _render_enrolment(
    user: User,
    secret: str,
    action: str,
    ix: str,
    *,
    error: str | None = None,
    status: int = 200,
    extra: dict[str, Any] | None = None,
) -> Response:
    uri = mfa.totp_uri(secret, _account_label(user))
    body = render_template(
        "totp_enrol.html",
        qr=_qr_data_uri(uri),
        secret=secret,
        action=action,
        ix=ix,
        error=error,
        **(extra or {}),
    )
    resp = make_response(body, status)
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _enrol_at_login(p: Pending, user: User, ix: str) -> Response:
    """MFA is required but the account has no second factor yet: set up TOTP now."""
    secret = _enrolment_secret(user.id) or _new_enrolment(user.id)
    return _render_enrolment(
        user, secret, url_for("mfa.enrol_at_login"), ix, extra={"at_login": True}
    )


@bp.route("/login/mfa/enrol", methods=["POST"])
def enrol_at_login() -> Response:
    ix = request.form.get("ix", "")[:32768]
    p = _load_pending("login")
    user = _pending_user(p) if p else None
    if p is None or user is None:
        return _restart_login(ix, _("Your sign-in has expired. Sign in again."))
    if _user_factors(user).any_second_factor:
        return redirect(url_for("mfa.challenge", ix=ix or None), code=303)
    secret = _enrolment_secret(user.id)
    if secret is None:
        return _enrol_at_login(p, user, ix)
    code = request.form.get("code", "")[:64]

    def verify() -> str | None:
        with _services().db.transaction() as s:
            ok = mfa.activate_totp(s, _services().kek, user.id, secret, code)
        return "otp" if ok else None

    factor, refusal = _attempt(p, user, ix, verify)
    if refusal is not None:
        if refusal.status_code == 401:
            return _render_enrolment(
                user,
                secret,
                url_for("mfa.enrol_at_login"),
                ix,
                error=_("The code is wrong. Check the time on your phone."),
                status=401,
                extra={"at_login": True},
            )
        return refusal
    session.pop(ENROL_KEY, None)
    db_session = context.db_session()
    audit.record(
        db_session,
        "mfa.totp.enrol",
        actor=user.id,
        target=user.id,
        ip=client_ip(),
        details={"at_login": True},
    )
    codes = mfa.new_recovery_codes(db_session, _secret(), user.id)
    db_session.commit()
    resp = _finish(p, user, ix, {factor or "otp"})
    return _show_recovery_codes(codes, resp)


def _show_recovery_codes(codes: list[str], continuation: Response) -> Response:
    """Show new recovery codes once, then continue where ``continuation`` redirects."""
    target = continuation.headers.get("Location", url_for("mfa.security"))
    body = render_template("recovery_codes.html", codes=codes, next=target)
    resp = make_response(body, 200)
    for value in continuation.headers.getlist("Set-Cookie"):
        resp.headers.add("Set-Cookie", value)
    resp.headers["Cache-Control"] = "no-store"
    return resp


# ====================================================================== WebAuthn
def _rp() -> tuple[str, str]:
    issuer = context.settings().issuer
    return mfa.rp_id_for(issuer), mfa.origin_for(issuer)


def _json_error(message: str, status: int = 400, error: str = "invalid_request") -> Response:
    resp = jsonify({"error": error, "message": message})
    resp.status_code = status
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _json_body() -> dict[str, Any]:
    data = request.get_json(silent=True)
    return data if isinstance(data, dict) else {}


def _store_challenge(challenge: bytes, purpose: str, user_id: str | None, **extra: Any) -> None:
    session[WEBAUTHN_KEY] = {
        "c": mfa.b64u(challenge),
        "p": purpose,
        "u": user_id,
        "t": utcnow().timestamp(),
        **extra,
    }


def _take_challenge(purpose: str, user_id: str | None) -> bytes | None:
    """The stored challenge, once: a replayed cookie finds it burnt (SeenJti)."""
    data = session.pop(WEBAUTHN_KEY, None)
    if not isinstance(data, dict) or data.get("p") != purpose or data.get("u") != user_id:
        return None
    if utcnow().timestamp() - float(data.get("t", 0)) > WEBAUTHN_TTL:
        return None
    challenge = str(data.get("c", ""))
    _release_request_transaction()
    try:
        with _services().db.transaction() as s:
            s.add(
                SeenJti(
                    digest=repo.digest("webauthn:" + challenge),
                    expires_at=utcnow() + dt.timedelta(seconds=WEBAUTHN_TTL),
                )
            )
    except IntegrityError:
        return None
    try:
        return mfa.b64u_decode(challenge)
    except ValueError:
        return None


def _webauthn_json_result(resp: Response) -> Response:
    """Turn a redirecting completion into JSON for the page's script (cookies kept)."""
    out = jsonify({"ok": True, "redirect": resp.headers.get("Location")})
    for value in resp.headers.getlist("Set-Cookie"):
        out.headers.add("Set-Cookie", value)
    out.headers["Cache-Control"] = "no-store"
    return out


def _descriptor(cred: WebAuthnCredential) -> Any:
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


def _authentication_options(creds: list[WebAuthnCredential], uv: str) -> tuple[str, bytes]:
    import webauthn
    from webauthn.helpers.structs import UserVerificationRequirement

    rp_id, _origin = _rp()
    options = webauthn.generate_authentication_options(
        rp_id=rp_id,
        allow_credentials=[_descriptor(c) for c in creds] or None,
        user_verification=UserVerificationRequirement(uv),
    )
    return webauthn.options_to_json(options), options.challenge


def _verify_assertion(
    credential: dict[str, Any], challenge: bytes, row: WebAuthnCredential, require_uv: bool
) -> set[str] | None:
    """Verify an assertion for ``row``; the factors it proves, or None."""
    import webauthn
    from webauthn.helpers.exceptions import WebAuthnException

    rp_id, origin = _rp()
    _release_request_transaction()
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
    with _services().db.transaction() as s:
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
    kind = (
        "swk"
        if str(getattr(verified.credential_device_type, "value", "")) == "multi_device"
        else "hwk"
    )
    factors = {kind}
    if verified.user_verified:
        factors.add("uv")
    return factors


def _credential_row(credential: dict[str, Any], user_id: str | None) -> WebAuthnCredential | None:
    raw_id = credential.get("rawId") or credential.get("id")
    if not isinstance(raw_id, str) or not CREDENTIAL_ID.fullmatch(raw_id):
        return None
    with _services().db.session() as s:
        row = s.get(WebAuthnCredential, raw_id.rstrip("="))
        if row is None or (user_id is not None and row.user_id != user_id):
            return None
        s.expunge(row)
    return row


@bp.route("/login/mfa/webauthn/options", methods=["POST"])
def mfa_webauthn_options() -> Response:
    mode = "step_up" if _json_body().get("mode") == "step_up" else "login"
    p = _load_pending(mode)
    user = _pending_user(p) if p else None
    if p is None or user is None:
        return _json_error(_("Your sign-in has expired. Sign in again."), 400, "expired")
    creds = _user_factors(user).webauthn
    if not creds:
        return _json_error(_("No security key is registered for this account."))
    options, challenge = _authentication_options(creds, "preferred")
    _store_challenge(challenge, "mfa", user.id, pid=p.pid)
    return Response(options, mimetype="application/json", headers={"Cache-Control": "no-store"})


@bp.route("/login/mfa/webauthn", methods=["POST"])
def mfa_webauthn_verify() -> Response:
    body = _json_body()
    mode = "step_up" if body.get("mode") == "step_up" else "login"
    ix = str(body.get("ix") or "")[:32768]
    p = _load_pending(mode)
    user = _pending_user(p) if p else None
    if p is None or user is None or (mode == "step_up" and not _step_up_session_matches(p)):
        return _json_error(_("Your sign-in has expired. Sign in again."), 400, "expired")
    credential = body.get("credential")
    if not isinstance(credential, dict):
        return _json_error(_("The security key's answer was not understood."))
    challenge = _take_challenge("mfa", user.id)
    row = _credential_row(credential, user.id)
    if challenge is None or row is None:
        return _json_error(_("The security key could not be verified. Try again."))
    proven: set[str] = set()

    def verify() -> str | None:
        factors = _verify_assertion(credential, challenge, row, require_uv=False)
        if not factors:
            return None
        proven.update(factors)
        return "hwk" if "hwk" in factors else "swk"

    factor, refusal = _attempt(p, user, ix, verify)
    if refusal is not None:
        if refusal.status_code == 401:
            return _json_error(_("The security key could not be verified. Try again."), 401)
        return _json_error(_("Too many attempts. Sign in again."), refusal.status_code, "refused")
    audit.record(
        context.db_session(),
        "mfa.webauthn.use",
        actor=user.id,
        ip=client_ip(),
        details={"credential": row.credential_id[:16]},
    )
    return _webauthn_json_result(_finish(p, user, ix, proven or {factor or "hwk"}))


@bp.route("/login/passkey/options", methods=["POST"])
def passkey_options() -> Response:
    options, challenge = _authentication_options([], "required")
    _store_challenge(challenge, "passkey", None)
    return Response(options, mimetype="application/json", headers={"Cache-Control": "no-store"})


@bp.route("/login/passkey", methods=["POST"])
def passkey_verify() -> Response:
    """Phishing-resistant login with a passkey alone (user verification required)."""
    from idp.blueprints.account import complete_login

    body = _json_body()
    ix = str(body.get("ix") or "")[:32768]
    credential = body.get("credential")
    if not isinstance(credential, dict):
        return _json_error(_("The passkey's answer was not understood."))
    challenge = _take_challenge("passkey", None)
    row = _credential_row(credential, None)
    failure = _("This passkey could not be used to sign in.")
    if challenge is None or row is None:
        audit.record_now(
            _services().db,
            "login.failure",
            actor="anonymous",
            ip=client_ip(),
            outcome="failure",
            details={"method": "passkey"},
        )
        return _json_error(failure, 401)
    user = context.db_session().get(User, row.user_id)
    factors = _verify_assertion(credential, challenge, row, require_uv=True) if user else None
    if user is None or not user.is_active or not factors or "uv" not in factors:
        audit.record_now(
            _services().db,
            "login.failure",
            actor=row.user_id,
            ip=client_ip(),
            outcome="failure",
            details={"method": "passkey"},
        )
        return _json_error(failure, 401)
    now = int(utcnow().timestamp())
    proven = dict.fromkeys(factors, now)
    _drop_pending()
    resp = complete_login(
        user, amr=mfa.amr_for(proven), ix=ix, acr=mfa.acr_for(proven), factors=proven
    )
    return _webauthn_json_result(resp)


# ====================================================================== self-service
def _signed_in() -> tuple[User, SsoSession] | None:
    user, sso = current_user_row(), current_sso()
    if user is None or sso is None:
        return None
    return user, sso


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


def _needs_reauth() -> Response:
    if request.is_json:
        return _json_error(_("Confirm your password first."), 403, "reauth_required")
    return redirect(url_for("mfa.reauth", next=url_for("mfa.security")), code=303)


def _security_page(
    user: User,
    sso: SsoSession,
    *,
    message: str | None = None,
    error: str | None = None,
    status: int = 200,
) -> Response:
    db_session = context.db_session()
    uf = _user_factors(user)
    signins = list(
        db_session.scalars(
            select(AuditEvent)
            .where(AuditEvent.action == "login.success", AuditEvent.actor == user.id)
            .order_by(AuditEvent.seq.desc())
            .limit(10)
        )
    )
    grants = db_session.scalars(
        select(Grant)
        .where(Grant.user_id == user.id, Grant.revoked_at.is_(None))
        .order_by(Grant.created_at.desc())
        .limit(20)
    ).all()
    body = render_template(
        "account_security.html",
        user=user,
        sso=sso,
        grants=grants,
        factors=uf,
        signins=signins,
        required=mfa.mfa_required_by_policy(_policies(), user),
        recent=recently_authenticated(sso),
        sms_allowed=mfa.sms_allowed(_policies(), user),
        message=message,
        error=error,
    )
    resp = make_response(body, status)
    resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.route("/account/security", methods=["GET"])
def security() -> Response:
    found = _signed_in()
    if found is None:
        return redirect(url_for("account.login"), code=302)
    return _security_page(*found, message=request.args.get("done") and _("Saved."))


@bp.route("/account/security/reauth", methods=["GET", "POST"])
def reauth() -> Response:
    found = _signed_in()
    if found is None:
        return redirect(url_for("account.login"), code=302)
    user, sso = found
    target = _safe_next(request.values.get("next"))
    if request.method == "GET":
        return make_response(render_template("reauth.html", next=target, error=None))
    if not _check_password(user, request.form.get("password", "")):
        return make_response(
            render_template("reauth.html", next=target, error=_("The password is wrong.")), 401
        )
    session[REAUTH_KEY] = {"sid": sso.id, "t": utcnow().timestamp()}
    return redirect(target, code=303)


def _safe_next(value: str | None) -> str:
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return url_for("mfa.security")
    return value[:2000]


def _check_password(user: User, password: str) -> bool:
    """Verify the account's password through the lockout gate (checklist 80)."""
    services = _services()
    if not password or services.passwords.too_long(password) or not user.password_hash:
        return False
    _release_request_transaction()
    gate = _gate()
    if gate.check(user, user.id, client_ip()) is not None:
        return False
    ok = services.passwords.verify(user.password_hash, password)
    gate.record(user, user.id, client_ip(), success=ok)
    if not ok:
        audit.record_now(
            services.db, "reauth.failure", actor=user.id, ip=client_ip(), outcome="failure"
        )
    return ok


def _guarded() -> tuple[User, SsoSession] | Response:
    found = _signed_in()
    if found is None:
        return (
            _json_error(_("Sign in first."), 401, "login_required")
            if request.is_json
            else redirect(url_for("account.login"), code=303)
        )
    if not recently_authenticated(found[1]):
        return _needs_reauth()
    return found


@bp.route("/account/security/totp", methods=["POST"])
def totp_start() -> Response:
    found = _guarded()
    if isinstance(found, Response):
        return found
    user, _sso = found
    secret = _new_enrolment(user.id)
    return _render_enrolment(user, secret, url_for("mfa.totp_confirm"), "")


@bp.route("/account/security/totp/confirm", methods=["POST"])
def totp_confirm() -> Response:
    found = _guarded()
    if isinstance(found, Response):
        return found
    user, sso = found
    secret = _enrolment_secret(user.id)
    if secret is None:
        return _security_page(user, sso, error=_("The set-up expired. Start again."), status=400)
    code = request.form.get("code", "")[:64]
    _release_request_transaction()
    verdict = _gate().counters.reserve(f"mfa:{user.id}", mfa_rule(_policies()))
    if not verdict.allowed:
        return _security_page(user, sso, error=str(LoginGate._refusal(verdict)), status=429)
    first = not _user_factors(user).any_second_factor
    with _services().db.transaction() as own:
        activated = mfa.activate_totp(own, _services().kek, user.id, secret, code)
    if not activated:
        return _render_enrolment(
            user,
            secret,
            url_for("mfa.totp_confirm"),
            "",
            error=_("The code is wrong. Check the time on your phone."),
            status=401,
        )
    _gate().counters.reset(f"mfa:{user.id}")
    session.pop(ENROL_KEY, None)
    db_session = context.db_session()
    audit.record(db_session, "mfa.totp.enrol", actor=user.id, target=user.id, ip=client_ip())
    codes = mfa.new_recovery_codes(db_session, _secret(), user.id) if first else None
    if codes:
        audit.record(
            db_session, "mfa.recovery.generate", actor=user.id, target=user.id, ip=client_ip()
        )
    db_session.commit()
    if codes:
        return _show_recovery_codes(codes, redirect(url_for("mfa.security", done=1), code=303))
    return redirect(url_for("mfa.security", done=1), code=303)


def _removal_allowed(user: User, *, totp: bool = False, credential: str | None = None) -> bool:
    """Refuse to remove the last second factor of an account whose policy requires one."""
    if not mfa.mfa_required_by_policy(_policies(), user):
        return True
    uf = _user_factors(user)
    left_totp = uf.totp and not totp
    left_keys = [c for c in uf.webauthn if c.credential_id != credential]
    return bool(left_totp or left_keys or uf.sms_phone)


def _must_keep_a_factor(user: User, sso: Any) -> Response:
    return _security_page(
        user,
        sso,
        status=409,
        error=_(
            "Your account must keep a second factor. Add another one before removing this one."
        ),
    )


@bp.route("/account/security/totp/delete", methods=["POST"])
def totp_delete() -> Response:
    found = _guarded()
    if isinstance(found, Response):
        return found
    user, sso = found
    if not _removal_allowed(user, totp=True):
        return _must_keep_a_factor(user, sso)
    db_session = context.db_session()
    if mfa.remove_totp(db_session, user.id):
        audit.record(db_session, "mfa.totp.remove", actor=user.id, target=user.id, ip=client_ip())
    db_session.commit()
    return redirect(url_for("mfa.security", done=1), code=303)


@bp.route("/account/security/recovery", methods=["POST"])
def recovery_generate() -> Response:
    found = _guarded()
    if isinstance(found, Response):
        return found
    user, _sso = found
    db_session = context.db_session()
    codes = mfa.new_recovery_codes(db_session, _secret(), user.id)
    audit.record(db_session, "mfa.recovery.generate", actor=user.id, target=user.id, ip=client_ip())
    db_session.commit()
    return _show_recovery_codes(codes, redirect(url_for("mfa.security"), code=303))


@bp.route("/account/security/webauthn/options", methods=["POST"])
def webauthn_register_options() -> Response:
    import webauthn
    from webauthn.helpers.structs import (
        AuthenticatorSelectionCriteria,
        ResidentKeyRequirement,
        UserVerificationRequirement,
    )

    found = _guarded()
    if isinstance(found, Response):
        return found
    user, _sso = found
    rp_id, _origin = _rp()
    options = webauthn.generate_registration_options(
        rp_id=rp_id,
        rp_name="Yitong 一通",
        user_name=_account_label(user),
        user_id=mfa.webauthn_user_handle(user.id, _secret()),
        user_display_name=user.name,
        exclude_credentials=[_descriptor(c) for c in _user_factors(user).webauthn],
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED,
            user_verification=UserVerificationRequirement.PREFERRED,
        ),
    )
    _store_challenge(options.challenge, "register", user.id)
    return Response(
        webauthn.options_to_json(options),
        mimetype="application/json",
        headers={"Cache-Control": "no-store"},
    )


@bp.route("/account/security/webauthn", methods=["POST"])
def webauthn_register() -> Response:
    import webauthn
    from webauthn.helpers.exceptions import WebAuthnException

    found = _guarded()
    if isinstance(found, Response):
        return found
    user, _sso = found
    body = _json_body()
    credential = body.get("credential")
    name = str(body.get("name") or "").strip()[:100] or _("Security key")
    challenge = _take_challenge("register", user.id)
    if not isinstance(credential, dict) or challenge is None:
        return _json_error(_("The registration expired. Try again."))
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
        return _json_error(_("The security key could not be registered."))
    response = credential.get("response")
    transports = response.get("transports") if isinstance(response, dict) else None
    transports = (
        [t for t in transports if isinstance(t, str)][:8] if isinstance(transports, list) else []
    )
    db_session = context.db_session()
    db_session.add(
        WebAuthnCredential(
            credential_id=mfa.b64u(verified.credential_id),
            user_id=user.id,
            public_key=verified.credential_public_key,
            sign_count=verified.sign_count,
            transports=transports,
            name=name,
            created_at=utcnow(),
        )
    )
    try:
        db_session.flush()
    except IntegrityError:
        db_session.rollback()
        return _json_error(_("This security key is already registered."), 409)
    audit.record(
        db_session,
        "mfa.webauthn.add",
        actor=user.id,
        target=user.id,
        ip=client_ip(),
        details={"name": name, "credential": mfa.b64u(verified.credential_id)[:16]},
    )
    db_session.commit()
    return jsonify({"ok": True, "redirect": url_for("mfa.security", done=1)})


@bp.route("/account/security/webauthn/delete", methods=["POST"])
def webauthn_delete() -> Response:
    found = _guarded()
    if isinstance(found, Response):
        return found
    user, sso = found
    cred_id = request.form.get("credential", "")
    if not CREDENTIAL_ID.fullmatch(cred_id):
        return _security_page(user, sso, error=_("Unknown security key."), status=400)
    if not _removal_allowed(user, credential=cred_id):
        return _must_keep_a_factor(user, sso)
    db_session = context.db_session()
    row = db_session.get(WebAuthnCredential, cred_id)
    if row is not None and row.user_id == user.id:
        db_session.delete(row)
        audit.record(
            db_session,
            "mfa.webauthn.remove",
            actor=user.id,
            target=user.id,
            ip=client_ip(),
            details={"credential": cred_id[:16]},
        )
    db_session.commit()
    return redirect(url_for("mfa.security", done=1), code=303)


@bp.route("/account/security/phone", methods=["POST"])
def phone_start() -> Response:
    from idp.accounts.identifiers import IdentifierError, normalize_phone

    found = _guarded()
    if isinstance(found, Response):
        return found
    user, sso = found
    try:
        phone = normalize_phone(request.form.get("phone", "")[:40])
    except IdentifierError:
        return _security_page(
            user, sso, error=_("Enter a valid mainland mobile number."), status=400
        )
    other = context.db_session().scalar(
        select(User.id).where(User.phone == phone, User.id != user.id)
    )
    if other is not None:
        return _security_page(user, sso, error=_("This number cannot be used."), status=409)
    ok, message, wait = send_sms_code(phone, "phone", user.id)
    if not ok:
        resp = _security_page(user, sso, error=message, status=429 if wait else 503)
        if wait:
            resp.headers["Retry-After"] = str(wait)
        return resp
    session[PHONE_KEY] = {"u": user.id, "p": phone, "t": utcnow().timestamp()}
    return make_response(
        render_template("phone_verify.html", phone=_mask_phone(phone), info=message, error=None)
    )


@bp.route("/account/security/phone/verify", methods=["POST"])
def phone_verify() -> Response:
    found = _guarded()
    if isinstance(found, Response):
        return found
    user, sso = found
    data = session.get(PHONE_KEY)
    if not isinstance(data, dict) or data.get("u") != user.id:
        return _security_page(user, sso, error=_("Start again."), status=400)
    phone = str(data["p"])
    _release_request_transaction()
    if not mfa.check_code(
        _services().db,
        _secret(),
        destination=phone,
        purpose="phone",
        user_id=user.id,
        code=request.form.get("code", "")[:64],
    ):
        body = render_template(
            "phone_verify.html",
            phone=_mask_phone(phone),
            info=None,
            error=_("The code is wrong or has expired."),
        )
        return make_response(body, 401)
    db_session = context.db_session()
    row = db_session.get(User, user.id)
    assert row is not None
    old = _mask_phone(row.phone)
    row.phone, row.phone_verified = phone, True
    audit.record(
        db_session,
        "user.phone_change",
        actor=user.id,
        target=user.id,
        ip=client_ip(),
        details={"old": old, "new": _mask_phone(phone)},
    )
    try:
        db_session.commit()
    except IntegrityError:
        db_session.rollback()
        return _security_page(user, sso, error=_("This number cannot be used."), status=409)
    session.pop(PHONE_KEY, None)
    return redirect(url_for("mfa.security", done=1), code=303)


@bp.route("/account/security/password", methods=["GET", "POST"])
def password_change() -> Response:
    """Change the password: the current one is always required (ASVS 6.2.3, checklist 79)."""
    from idp.accounts.passwords import PasswordPolicyError

    found = _signed_in()
    if found is None:
        return redirect(url_for("account.login"), code=302)
    user, sso = found
    services = _services()
    has_mfa = _user_factors(user).any_second_factor
    minimum = (
        services.passwords.min_length_for(has_mfa=has_mfa)
        if isinstance(services.passwords, PolicyPasswords)
        else services.passwords.min_length
    )

    def page(error: str | None, status: int) -> Response:
        return make_response(
            render_template(
                "password_change.html", error=error, minimum=minimum, is_staff=user.kind == "staff"
            ),
            status,
        )

    if request.method == "GET":
        return page(None, 200)
    if user.kind == "staff" or not user.password_hash:
        return page(_("Staff passwords are changed in your department's directory."), 400)
    current = request.form.get("current_password", "")
    new = request.form.get("new_password", "")
    if services.passwords.too_long(current) or services.passwords.too_long(new):
        return page(_("The password is too long."), 400)
    if new != request.form.get("new_password_confirm", ""):
        return page(_("The new passwords do not match."), 400)
    if not _check_password(user, current):
        return page(_("The current password is wrong."), 401)
    try:
        services.passwords.check_policy(
            new,
            min_length=minimum,
            context=(user.name, (user.phone or "")[3:], (user.email or "").split("@")[0]),
        )
    except PasswordPolicyError as exc:
        return page(_(str(exc)), 400)
    db_session = context.db_session()
    row = db_session.get(User, user.id)
    assert row is not None
    row.password_hash = services.passwords.hash(new)
    row.password_changed_at = utcnow()
    ended = 0
    if request.form.get("sign_out_others"):
        ended = _end_other_sessions(db_session, user.id, sso.id)
    audit.record(
        db_session,
        "user.password_change",
        actor=user.id,
        target=user.id,
        ip=client_ip(),
        details={"other_sessions_ended": ended},
    )
    hook = services.extra.get("after_password_change")
    if hook is not None:
        hook(db_session, row, keep_sid=sso.id)
    db_session.commit()
    session[REAUTH_KEY] = {"sid": sso.id, "t": utcnow().timestamp()}
    return redirect(url_for("mfa.security", done=1), code=303)


def _end_other_sessions(db_session: Any, user_id: str, keep_sid: str) -> int:
    """End every other SSO session of the user and revoke the grants made in them."""
    now = utcnow()
    sids = list(
        db_session.scalars(
            select(SsoSession.id).where(
                SsoSession.user_id == user_id,
                SsoSession.ended_at.is_(None),
                SsoSession.id != keep_sid,
            )
        )
    )
    if sids:
        db_session.execute(
            update(SsoSession)
            .where(SsoSession.id.in_(sids))
            .values(ended_at=now)
            .execution_options(synchronize_session=False)
        )
    grant_ids = list(
        db_session.scalars(
            select(Grant.id).where(
                Grant.user_id == user_id,
                Grant.revoked_at.is_(None),
                (Grant.sid.is_(None)) | (Grant.sid != keep_sid),
            )
        )
    )
    for gid in grant_ids:
        repo.revoke_grant(db_session, gid, "password_change", now)
    return len(sids)


# ---------------------------------------------------------------------- helpers for templates
def level_name(acr: str | None) -> str:
    names: dict[str, str] = {
        ACR_PASSWORD: _("password"),
        ACR_MFA: _("two-step verification"),
        ACR_PHISHING_RESISTANT: _("security key or passkey"),
    }
    return str(names.get(acr or "", acr or ""))


@bp.app_template_filter("yt_level")
def _level_filter(acr: str | None) -> str:
    return level_name(acr)


@bp.app_template_filter("yt_json")
def _json_filter(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)

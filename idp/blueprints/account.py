"""Pages for people: login, registration, consent, logout and the account page.

Every form carries a CSRF token (Flask-WTF, checklist 105); every credential POST answers
with 303 (RFC 9700 §4.12); a login always starts a new SSO session and ends the one the
browser had (checklist 61).  Wrong password and unknown account give the same page in the
same time (checklist 83).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from flask import (
    Blueprint,
    current_app,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from werkzeug.wrappers import Response

from idp import audit, context
from idp.accounts.people import NewCitizen, RegistrationError, find_citizen, register_citizen
from idp.errors import AccessDeniedError, OAuth2Error
from idp.interaction.flow import InteractionExpired
from idp.interaction.sessions import start_session
from idp.interaction.web import (
    clear_session_cookie,
    cookie_name,
    current_sso,
    current_user_row,
    set_session_cookie,
    timeouts,
)
from idp.oauth import authorize as authz
from idp.storage import repo
from idp.storage.models import Client, Consent, Grant, User, utcnow

log = logging.getLogger(__name__)
bp = Blueprint("account", __name__)


def client_ip() -> str:
    return request.remote_addr or "unknown"


def _open_ix(token: str | None) -> tuple[dict[str, list[str]], dt.datetime] | None:
    if not token:
        return None
    multi, started, _extra = context.services().extra["interaction_sealer"].open(token)
    return multi, started


def _client_for(multi: dict[str, list[str]]) -> Client | None:
    client_id = (multi.get("client_id") or [""])[0]
    return repo.query_client(context.db_session(), client_id)


def _cancel(multi: dict[str, list[str]]) -> Response:
    """The user declined: ``access_denied`` to the verified redirect URI only (checklist 19)."""
    from idp.blueprints.oidc import error_page, redirect_error

    try:
        ctx = authz.validate(multi, _find)
    except authz.PageError as exc:
        return error_page(exc.message)
    except OAuth2Error as error:
        ctx = error.context
    return redirect_error(ctx, AccessDeniedError("the user declined"))


def _find(client_id: str) -> Client | None:
    return repo.query_client(context.db_session(), client_id)


def _directories() -> Any:
    return context.services().directories


# ------------------------------------------------------------------ login
@bp.route("/login", methods=["GET"])
def login() -> Response | str:
    ix = request.args.get("ix")
    client = None
    if ix:
        try:
            opened = _open_ix(ix)
        except InteractionExpired as exc:
            return _friendly_error(str(exc))
        assert opened is not None
        client = _client_for(opened[0])
        login_hint = (opened[0].get("login_hint") or [""])[0]
    else:
        login_hint = ""
    return render_template(
        "login.html",
        ix=ix or "",
        client=client,
        login_hint=login_hint[:200],
        error=None,
        directories=_directories(),
        department="",
    )


def _login_failed(
    ix: str,
    login_name: str,
    department: str,
    message: str,
    status: int = 401,
    *,
    recovery: bool = False,
) -> Response:
    client = None
    if ix:
        try:
            opened = _open_ix(ix)
            client = _client_for(opened[0]) if opened else None
        except InteractionExpired:
            client = None
    body = render_template(
        "login.html",
        ix=ix,
        client=client,
        login_hint=login_name[:200],
        error=message,
        directories=_directories(),
        department=department,
        recovery=recovery,
    )
    return make_response(body, status)


@bp.route("/login", methods=["POST"])
def login_post() -> Response:
    services = context.services()
    session = context.db_session()
    ix = request.form.get("ix", "")
    login_name = request.form.get("login", "").strip()
    password = request.form.get("password", "")
    department = request.form.get("department", "").strip()

    multi: dict[str, list[str]] | None = None
    if ix:
        try:
            opened = _open_ix(ix)
        except InteractionExpired as exc:
            return _friendly_error(str(exc))
        multi = opened[0] if opened else None
    if request.form.get("action") == "cancel":
        if multi is None:
            return redirect(url_for("account.home"), code=303)
        return _cancel(multi)

    generic = _("The login name or password is wrong.")
    if not login_name or not password:
        return _login_failed(
            ix, login_name, department, _("Enter your login name and password."), 400
        )
    if services.passwords.too_long(password) or len(login_name) > 320:
        # Refused before any hashing (checklist 84).
        return _login_failed(ix, login_name, department, generic, 400)
    if any(ord(ch) < 32 or ch == "\x7f" for ch in login_name + department):
        # No account name holds control characters (NUL would also upset PostgreSQL, item 111).
        return _login_failed(ix, "", "", generic, 400)

    if "@" in login_name and not department:
        name_part, _sep, dept = login_name.rpartition("@")
        if dept in _directories():
            login_name, department = name_part, dept

    gate = services.extra.get("login_gate")
    if department:
        user, failure = _staff_login(department, login_name, password)
        if isinstance(failure, _Refusal):
            return _login_refused(ix, login_name, department, failure)
    else:
        user = find_citizen(session, login_name, vault=services.vault)
        # End the read transaction: the gate and the audit commit in transactions of their own
        # (on SQLite the request's transaction would otherwise hold the write lock).
        session.commit()
        if gate is not None:
            blocked = gate.check(user, login_name, client_ip())
            if blocked is not None:
                recovery = request.form.get("recovery_code", "").strip()
                if recovery and user is not None:
                    return _login_with_recovery_code(
                        user, login_name, password, recovery, ix, department, blocked
                    )
                return _login_refused(ix, login_name, department, blocked)
        ok = services.passwords.verify(user.password_hash if user else None, password)
        failure = None if (ok and user is not None and user.is_active) else generic
        if gate is not None:
            gate.record(user, login_name, client_ip(), success=failure is None)
        if (
            failure is None
            and user is not None
            and services.passwords.needs_rehash(user.password_hash or "")
        ):
            user.password_hash = services.passwords.hash(password)
    if failure is not None or user is None:
        # Own transaction with retry: parallel failures must never collide on the audit chain.
        audit.record_now(
            services.db,
            "login.failure",
            actor=user.id if user else "anonymous",
            ip=client_ip(),
            outcome="failure",
            details={
                "method": "ldap" if department else "password",
                "department": department or None,
            },
        )
        return _login_failed(ix, login_name, department, failure or generic)
    return complete_login(user, amr=["pwd"], ix=ix)


class _Refusal(str):
    """A gate refusal passed through ``_staff_login`` (it carries ``retry_after``)."""

    retry_after: int = 0
    locked: bool = False


def _login_refused(ix: str, login_name: str, department: str, blocked: str) -> Response:
    """429 with Retry-After; a hard lock offers the recovery-code field (checklist 81)."""
    resp = _login_failed(
        ix,
        login_name,
        department,
        str(blocked),
        429,
        recovery=bool(getattr(blocked, "locked", False)) and not department,
    )
    retry_after = int(getattr(blocked, "retry_after", 0) or 0)
    if retry_after:
        resp.headers["Retry-After"] = str(retry_after)
    return resp


def _login_with_recovery_code(
    user: User,
    login_name: str,
    password: str,
    code: str,
    ix: str,
    department: str,
    blocked: str,
) -> Response:
    """The owner of a locked account: password plus a recovery code still gets in (checklist 81).

    The recovery code (79 random bits) is checked first, without using it, so a wrong one costs
    no hashing; only when both are right is the code consumed (atomically) and the lock cleared.
    """
    from idp.interaction import mfa

    services = context.services()
    secret = services.extra["mfa_secret"]
    if not mfa.recovery_code_valid(services.db, secret, user.id, code):
        audit.record_now(
            services.db,
            "login.failure",
            actor=user.id,
            ip=client_ip(),
            outcome="failure",
            details={"method": "recovery_code"},
        )
        return _login_refused(ix, login_name, department, blocked)
    if not (user.is_active and services.passwords.verify(user.password_hash, password)):
        audit.record_now(
            services.db,
            "login.failure",
            actor=user.id,
            ip=client_ip(),
            outcome="failure",
            details={"method": "recovery_code"},
        )
        return _login_refused(ix, login_name, department, blocked)
    if not mfa.use_recovery_code(services.db, secret, user.id, code):
        return _login_refused(ix, login_name, department, blocked)
    services.extra["login_gate"].unlock(user)
    now = int(utcnow().timestamp())
    factors = {"pwd": now, "recovery": now}
    audit.record_now(
        services.db,
        "login.unlock",
        actor=user.id,
        target=user.id,
        ip=client_ip(),
        details={"method": "recovery_code"},
    )
    return complete_login(
        user, amr=mfa.amr_for(factors), ix=ix, acr=mfa.acr_for(factors), factors=factors
    )


def _staff_login(department: str, username: str, password: str) -> tuple[User | None, str | None]:
    """Search-then-bind at the department's own directory (issue 6)."""
    from adapters.base import AdapterUnavailable, InvalidCredentials

    directory = _directories().get(department)
    if directory is None:
        return None, _("Unknown department.")
    from idp.accounts.staff import StaffThrottled, authenticate_staff, upsert_staff

    gate = context.services().extra.get("login_gate")
    context.db_session().commit()  # the gate commits on its own (SQLite write lock)
    try:
        # Counted per directory entry, before the bind (issue 14 item 9, checklist 94).
        identity = authenticate_staff(directory, gate, username, password, client_ip())
    except StaffThrottled as exc:
        refusal = _Refusal(str(exc.blocked))
        refusal.retry_after = exc.blocked.retry_after
        refusal.locked = exc.blocked.locked
        return None, refusal
    except InvalidCredentials:
        return None, _("The login name or password is wrong.")
    except AdapterUnavailable:
        log.warning("directory %s unavailable", department)
        return None, _("The department directory is unavailable; try again later.")
    user = upsert_staff(context.db_session(), identity)
    if not user.is_active:
        return None, _("The login name or password is wrong.")
    return user, None


def complete_login(
    user: User,
    *,
    amr: list[str],
    ix: str,
    acr: str | None = None,
    factors: dict[str, int] | None = None,
) -> Response:
    """Start a fresh SSO session (ending the browser's old one) and continue the flow.

    A password-only login first passes the ``after_password`` hook, which sends it to a second
    factor when the request, the client, a policy or the account's own factors need one (issue
    5); the session is created only once every required factor is proven.
    """
    session = context.db_session()
    hook = context.services().extra.get("after_password")
    if hook is not None and list(amr) == ["pwd"]:
        pending = hook(user, amr, ix)
        if pending is not None:
            return pending  # type: ignore[no-any-return]
    kwargs: dict[str, Any] = {}
    if acr:
        kwargs["acr"] = acr
    policies = context.services().extra.get("policies")

    def write() -> tuple[str, Any]:
        token, row = start_session(
            session,
            user,
            timeouts(),
            amr=amr,
            previous_token=request.cookies.get(cookie_name()),
            ip=client_ip(),
            user_agent=request.headers.get("User-Agent"),
            **kwargs,
        )
        if factors:
            row.factors = dict(factors)  # the level and time of each factor (issue 5)
        if policies is not None:
            from idp.interaction.policies import session_timeouts_for, user_classes

            _idle, absolute = session_timeouts_for(policies, user_classes(user))
            row.expires_at = min(row.expires_at, row.auth_time + dt.timedelta(seconds=absolute))
        audit.record(
            session,
            "login.success",
            actor=user.id,
            ip=client_ip(),
            details={"amr": amr, "acr": row.acr, "sid": row.id, "kind": user.kind},
        )
        return token, row

    token, _row = commit_retrying(session, write)
    target = url_for("oidc.resume", ix=ix) if ix else url_for("account.home")
    resp = redirect(target, code=303)
    set_session_cookie(resp, token)
    if "mfa" in current_app.blueprints:
        from idp.blueprints.mfa import remember_device

        remember_device(resp, user.id)
    return resp


T = TypeVar("T")


def commit_retrying(session: Any, write: Callable[[], T], attempts: int = 10) -> T:
    """Run ``write`` and commit; run it again when a concurrent request took the same audit
    sequence number (PostgreSQL: two transactions both read the last entry, one commit fails
    on the primary key).  The login must not turn into a 500 because someone else signed in."""
    for attempt in range(attempts):
        try:
            result = write()
            session.commit()
            return result
        except IntegrityError:
            session.rollback()
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


# ------------------------------------------------------------------ step-up
@bp.route("/login/step-up", methods=["GET", "POST"])
def step_up() -> Response:
    """Ask a signed-in user only for the factor the request still needs (issue 5, checklist 18)."""
    from idp.blueprints.mfa import step_up_view

    return step_up_view()


# ------------------------------------------------------------------ consent
@bp.route("/consent", methods=["GET"])
def consent() -> Response | str:
    from idp.blueprints.oidc import see_other
    from idp.oauth.claims import SCOPE_CLAIMS

    try:
        opened = _open_ix(request.args.get("ix"))
    except InteractionExpired as exc:
        return _friendly_error(str(exc))
    if opened is None:
        return _friendly_error(_("Nothing to consent to."))
    multi, _started = opened
    user = current_user_row()
    if user is None:
        return see_other(url_for("account.login", ix=request.args.get("ix")), code=302)
    client = _client_for(multi)
    if client is None:
        return _friendly_error(_("Unknown service."))
    scopes = (multi.get("scope") or [""])[0].split()
    return render_template(
        "consent.html",
        ix=request.args.get("ix"),
        client=client,
        scopes=scopes,
        scope_claims=SCOPE_CLAIMS,
        user=user,
    )


@bp.route("/consent", methods=["POST"])
def consent_post() -> Response:
    from idp.blueprints.oidc import process_authorization, see_other

    try:
        opened = _open_ix(request.form.get("ix"))
    except InteractionExpired as exc:
        return _friendly_error(str(exc))
    if opened is None:
        return _friendly_error(_("Nothing to consent to."))
    multi, started = opened
    if request.form.get("action") != "approve":
        return _cancel(multi)
    user = current_user_row()
    if user is None:
        return see_other(url_for("account.login", ix=request.form.get("ix")), code=303)
    client = _client_for(multi)
    if client is None:
        return _friendly_error(_("Unknown service."))
    session = context.db_session()
    scopes = sorted(set((multi.get("scope") or [""])[0].split()) & set(client.scopes))
    now = utcnow()
    row = session.scalars(
        select(Consent).where(Consent.user_id == user.id, Consent.client_id == client.client_id)
    ).first()
    expires = now + dt.timedelta(seconds=context.settings().consent_lifetime)
    if row is None:
        session.add(
            Consent(
                user_id=user.id,
                client_id=client.client_id,
                scopes=scopes,
                granted_at=now,
                expires_at=expires,
            )
        )
    else:
        row.scopes = sorted(set(row.scopes) | set(scopes)) if row.expires_at > now else scopes
        row.granted_at, row.expires_at = now, expires
    audit.record(
        session,
        "consent.grant",
        actor=user.id,
        target=client.client_id,
        ip=client_ip(),
        details={"scopes": scopes},
    )
    session.commit()
    return process_authorization(multi, started=started, consent_given=True)


# ------------------------------------------------------------------ registration
@bp.route("/register", methods=["GET"])
def register() -> str:
    return render_template("register.html", errors={}, values={}, ix=request.args.get("ix", ""))


@bp.route("/register", methods=["POST"])
def register_post() -> Response:
    services = context.services()
    session = context.db_session()
    form = request.form
    values = {k: form.get(k, "") for k in ("name", "id_number", "phone", "email")}
    password = form.get("password", "")
    if password != form.get("password_confirm", ""):
        return _register_failed(values, {"password_confirm": _("The passwords do not match.")})
    try:
        user = register_citizen(
            session,
            NewCitizen(
                name=values["name"],
                id_number=values["id_number"],
                phone=values["phone"] or None,
                email=values["email"] or None,
                password=password,
            ),
            vault=services.vault,
            passwords=services.passwords,
            ip=client_ip(),
        )
    except RegistrationError as exc:
        session.rollback()
        return _register_failed(values, {exc.field: _translate_registration(exc.message)})
    session.commit()
    return complete_login(user, amr=["pwd"], ix=form.get("ix", ""))


def _translate_registration(message: str) -> str:
    return str(_(message))


def _register_failed(values: dict[str, str], errors: dict[str, str]) -> Response:
    values = dict(values)
    values.pop("id_number", None)  # never echo a full ID number back into the page
    body = render_template(
        "register.html", errors=errors, values=values, ix=request.form.get("ix", "")
    )
    return make_response(body, 400)


# ------------------------------------------------------------------ account and logout
@bp.route("/", methods=["GET"])
@bp.route("/account", methods=["GET"])
def home() -> Response | str:
    user = current_user_row()
    if user is None:
        return redirect(url_for("account.login"))
    session = context.db_session()
    grants = session.scalars(
        select(Grant)
        .where(Grant.user_id == user.id, Grant.revoked_at.is_(None))
        .order_by(Grant.created_at.desc())
        .limit(20)
    ).all()
    sso = current_sso()
    return render_template("account.html", user=user, sso=sso, grants=grants)


# ------------------------------------------------------------------ logout (end_session_endpoint)
# OpenID Connect RP-Initiated Logout 1.0: /logout is the end_session_endpoint (GET and POST).
# A relying party's POST carries no CSRF token of ours, so the view is exempt and checks the
# token itself when the user confirms on our page.  Nothing ends without either a valid
# id_token_hint naming this very session or the user's confirmation (checklist 63, 105).
_LOGOUT_SALT = "yitong-logout"
_LOGOUT_CONFIRM_MAX_AGE = 600


@bp.record_once
def _logout_is_csrf_exempt(state: Any) -> None:
    csrf = state.app.extensions.get("csrf")
    if csrf is not None:
        csrf.exempt("idp.blueprints.account.logout_post")


def _logout_serializer() -> Any:
    from itsdangerous import URLSafeTimedSerializer

    return URLSafeTimedSerializer(context.services().extra["secret_key"], salt=_LOGOUT_SALT)


_END_SESSION_PARAMS = (
    "id_token_hint",
    "post_logout_redirect_uri",
    "state",
    "client_id",
    "logout_hint",
    "ui_locales",
)


def _single(source: Any) -> tuple[dict[str, str], bool]:
    """End-session parameters, and whether one was repeated (then none may redirect)."""
    values = {n: source.getlist(n) for n in _END_SESSION_PARAMS}
    repeated = any(len(v) > 1 for v in values.values())
    return {n: v[0] for n, v in values.items() if len(v) == 1}, repeated


@bp.route("/logout", methods=["GET"])
def logout() -> Response | str:
    return _end_session_request(request.args)


@bp.route("/logout", methods=["POST"])
def logout_post() -> Response | str:
    if "csrf_token" in request.form:
        # Our own confirmation form (or the account page's "sign out everywhere").
        current_app.extensions["csrf"].protect()
        return _confirmed_logout(request.form.get("lr"))
    return _end_session_request(request.form)


def _end_session_request(source: Any) -> Response | str:
    from idp.blueprints.oidc import verify_own_id_token
    from idp.oauth.logout import check_logout_request

    params, repeated = _single(source)
    lr = check_logout_request(
        params, repeated=repeated, verify_id_token=verify_own_id_token, find_client=_find
    )
    sso = current_sso()
    user = current_user_row()
    if sso is None:
        # Nothing to end here; a valid request still goes back to its client.
        return _after_logout(None, lr.redirect_uri, lr.state)
    client = _find(lr.client_id) if lr.client_id else None
    if lr.matches(sso, user, client, context.services().extra["pairwise_secret"]):
        return _after_logout(end_current_session(), lr.redirect_uri, lr.state)
    sealed = _logout_serializer().dumps({"r": lr.redirect_uri, "s": lr.state, "sid": sso.id})
    return render_template("logout.html", user=user, client=client, params={"lr": sealed})


def _confirmed_logout(sealed: str | None) -> Response:
    from itsdangerous import BadSignature

    data: dict[str, Any] = {}
    if sealed:
        try:
            loaded = _logout_serializer().loads(sealed, max_age=_LOGOUT_CONFIRM_MAX_AGE)
            data = loaded if isinstance(loaded, dict) else {}
        except BadSignature:
            data = {}
    sso = current_sso()
    redirect_uri = data.get("r") if isinstance(data.get("r"), str) else None
    if sso is None or data.get("sid") != sso.id:
        redirect_uri = None  # the confirmation was for another session: no redirect
    state = data.get("s") if isinstance(data.get("s"), str) else None
    return _after_logout(end_current_session(), redirect_uri, state)


def _after_logout(outcome: Any, redirect_uri: str | None, state: str | None) -> Response:
    """Signed out: front-channel iframes if any, then the client's page or ours."""
    import secrets

    from idp.blueprints.oidc import see_other
    from idp.oauth.logout import post_logout_location

    target = post_logout_location(redirect_uri, state) if redirect_uri else None
    status = 303 if request.method == "POST" else 302
    frames = list(outcome.frames) if outcome is not None else []
    if frames:
        nonce = secrets.token_urlsafe(16)
        body = render_template("logged_out.html", frames=frames, continue_to=target, nonce=nonce)
        resp = make_response(body, 200)
        origins = " ".join(sorted({f.origin for f in frames}))
        # Front-Channel Logout §3: the pages may frame only the registered logout origins.
        resp.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' data:; style-src 'self'; "
            f"script-src 'nonce-{nonce}'; frame-src {origins}; frame-ancestors 'none'; "
            "base-uri 'none'; form-action 'self'"
        )
        resp.headers["Cache-Control"] = "no-store"
    elif target is not None:
        resp = see_other(target, code=status)
    else:
        resp = see_other(url_for("account.logged_out"), code=303)
    clear_session_cookie(resp)
    return resp


def end_current_session() -> Any:
    """End this browser's SSO session everywhere (checklist 64, 69); None if there was none.

    The session ends, its non-offline grants are revoked, every client with a grant in it is
    queued for back-channel logout in the same transaction; delivery starts after the commit,
    off this request.  Returns the :class:`~idp.oauth.logout.LogoutOutcome`.
    """
    from idp.accounts.lifecycle import end_session
    from idp.oauth.logout import dispatcher_for

    sso = current_sso()
    if sso is None:
        return None
    services = context.services()
    session = context.db_session()
    outcome = end_session(session, services, sso)
    audit.record(
        session,
        "logout",
        actor=sso.user_id,
        ip=client_ip(),
        details={
            "sid": sso.id,
            "backchannel": len(outcome.deliveries),
            "frontchannel": len(outcome.frames),
        },
    )
    hook = services.extra.get("after_logout")
    if hook is not None:
        hook(sso)
    session.commit()
    if outcome.deliveries:
        dispatcher_for(services).kick(outcome.deliveries)
    return outcome


@bp.route("/logged-out", methods=["GET"])
def logged_out() -> str:
    return render_template("logged_out.html", frames=[], continue_to=None, nonce=None)


@bp.route("/locale/<lang>", methods=["POST"])
def set_locale(lang: str) -> Response:
    target = request.form.get("next", "/")
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        target = "/"
    resp = redirect(target, code=303)
    if lang in ("zh_CN", "en"):
        resp.set_cookie(
            "yitong_lang",
            lang,
            max_age=31536000,
            samesite="Lax",
            httponly=True,
            secure=context.settings().issuer.startswith("https://"),
        )
    return resp


def _friendly_error(message: str, status: int = 400) -> Response:
    return make_response(render_template("error.html", message=message, error=None), status)

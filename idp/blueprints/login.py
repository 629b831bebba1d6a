"""Pages for signing in: the login form, registration and consent.

Every form carries a CSRF token (Flask-WTF, checklist 105); every credential POST answers
with 303 (RFC 9700 §4.12).  The decisions are in :mod:`idp.interaction.login` (who gets in,
throttling, the pending login, the new session) and :mod:`idp.interaction.consent`; this
module parses the form and draws the outcome.
"""

from __future__ import annotations

import datetime as dt
import json

from flask import Blueprint, make_response, render_template, request, url_for
from flask_babel import gettext as _
from werkzeug.wrappers import Response

from idp import context
from idp.accounts.people import Collision, NewCitizen, RegistrationError, register_citizen
from idp.blueprints import qr as qr_login
from idp.blueprints.oidc import process_authorization
from idp.blueprints.responses import error_page, redirect_error, see_other
from idp.errors import AccessDeniedError, OAuth2Error, TemporarilyUnavailableError
from idp.interaction import acting, mfa, rights, sms_login
from idp.interaction import login as signin
from idp.interaction.account_view import scope_labels
from idp.interaction.consent import pending_release, record_consent
from idp.interaction.contacts import send_email_link, tell_holder
from idp.interaction.flow import InteractionExpired
from idp.interaction.levels import LevelRequest
from idp.interaction.sealed import stash_sealed, unstash_sealed
from idp.interaction.self_service import mask_phone, send_sms_code, start_phone_change
from idp.interaction.web import (
    clear_session_cookie,
    current_user_row,
    open_interaction,
    set_session_cookie,
)
from idp.oauth import authorize as authz
from idp.oauth import device
from idp.oauth.authorization import find_client, required_acr, validate_request
from idp.oauth.release import released_keys
from idp.storage.models import Client, Department, User, utcnow

bp = Blueprint("login", __name__)

MAX_IX = 32768


# ------------------------------------------------------------------ the interaction (ix)
def open_ix(token: str | None) -> tuple[dict[str, list[str]], dt.datetime] | None:
    """The authorization request an ``ix`` carries, or None without one.

    Raises :class:`InteractionExpired` for a forged, expired or malformed one.
    """
    if not token:
        return None
    opened = open_interaction(token)
    return opened.multi, opened.started


def ix_context(ix: str | None) -> authz.AuthorizationContext | LevelRequest | None:
    """The validated authorization request carried by ``ix`` (None when absent or bad), or
    the device approval it continues (whose client and scopes decide the level)."""
    try:
        opened = open_ix(ix)
    except InteractionExpired:
        return None
    if opened is None:
        return None
    if device.IX_REQUEST in opened[0]:
        return device.level_request(context.db_session(), opened[0])
    try:  # the same checks (and resolved PAR / request-object parameters) as /authorize
        return validate_request(opened[0])
    except (authz.PageError, OAuth2Error):
        return None


def _client_for(multi: dict[str, list[str]]) -> Client | None:
    return find_client((multi.get("client_id") or [""])[0])


def expired_page() -> Response:
    return error_page(_("The sign-in page has expired; start again."), 400)


def cancel(ix: str) -> Response:
    """The user declined: ``access_denied`` to the verified redirect URI only (checklist 19)."""
    try:
        opened = open_ix(ix)
    except InteractionExpired:
        opened = None
    if opened is None:
        return see_other(url_for("account.home"))
    if "bridge_system" in opened[0]:  # a ticket-bridge login: the system hears of it
        return see_other(url_for("bridge.login", ix=ix, cancel="1"))
    if device.IX_REQUEST in opened[0] or device.IX_USER_CODE in opened[0]:
        return see_other(url_for("device.enter"))  # an RFC 8628 approval: nothing to tell
    try:
        ctx = authz.validate(opened[0], find_client)
    except authz.PageError as exc:
        return error_page(None, 400, exc.error, detail=exc.message)
    except OAuth2Error as error:
        ctx = error.context
    return redirect_error(ctx, AccessDeniedError("the user declined"))


# ------------------------------------------------------------------ the login form
def login_page(
    ix: str,
    *,
    login_name: str = "",
    department: str = "",
    error: str | None = None,
    status: int = 200,
    recovery: bool = False,
    retry_after: int = 0,
    mode: str = "",
    credit_code: str = "",
    show_qr: bool = False,
) -> Response:
    """The login form (with the requesting client's name when ``ix`` names one).

    ``show_qr``: draw a new QR code in the page (the no-script path, ``POST /login/qr``).

    ``mode="entity"`` shows the legal-person entry (法人登录, :mod:`idp.blueprints.entities`)
    instead of the personal one, where the client lets people act for companies.
    """
    client = None
    opened = None
    try:
        opened = open_ix(ix)
        client = _client_for(opened[0]) if opened else None
    except InteractionExpired:
        client = None
    entity_login = acting.login_offered(opened[0] if opened else None, client)
    # QR login (issue 13): a request is stored only when asked for (show_qr), never on a read.
    qr = qr_login.panel(client.client_id if client else None) if show_qr else None
    body = render_template(
        "login.html",
        ix=ix,
        client=client,
        login_hint=login_name[:200],
        error=error,
        directories=context.services().directories,
        department=department,
        recovery=recovery,
        qr=qr,
        qr_shown=show_qr,
        qr_message=qr_login.outcome_message(request.args.get("qr")),
        sms_login=sms_login.enabled(),
        entity_login=entity_login,
        login_mode="entity" if entity_login and mode == "entity" else "person",
        credit_code=credit_code[:64],
        upstream_login=context.services().upstream is not None,
    )
    resp = qr_login.remember_browser(make_response(body, status), qr)
    if retry_after:
        resp.headers["Retry-After"] = str(retry_after)
    return resp


def restart_login(ix: str, message: str) -> Response:
    """The pending login is over: back to the password step, saying why."""
    signin.drop_pending()
    return login_page(ix, error=message, status=401)


@bp.route("/login/qr", methods=["POST"])
def show_qr() -> Response:
    """The login page with a QR code, for a browser without script (the script asks
    ``POST /qr/new`` instead); rate limited per address by :func:`qr_login.panel`."""
    ix = request.form.get("ix", "")[:MAX_IX]
    try:
        open_ix(ix)
    except InteractionExpired:
        return expired_page()
    return login_page(ix, show_qr=True)


@bp.route("/login", methods=["GET"])
def login_form() -> Response:
    ix = request.args.get("ix", "")[:MAX_IX]
    try:
        opened = open_ix(ix)
    except InteractionExpired:
        return expired_page()
    hint = (opened[0].get("login_hint") or [""])[0] if opened else ""
    return login_page(ix, login_name=hint, mode=request.args.get("mode", ""))


@bp.route("/login", methods=["POST"])
def login_post() -> Response:
    form = request.form
    ix = form.get("ix", "")[:MAX_IX]
    try:
        open_ix(ix)
    except InteractionExpired:
        return expired_page()
    if form.get("action") == "cancel":
        return cancel(ix)
    creds = signin.Credentials(
        login_name=form.get("login", "").strip(),
        password=form.get("password", ""),
        department=form.get("department", "").strip(),
        recovery_code=form.get("recovery_code", "").strip(),
    )
    try:
        outcome = signin.authenticate(creds)
    except TemporarilyUnavailableError:
        return login_page(
            ix,
            login_name=creds.login_name,
            department=creds.department,
            error=_("The department directory is unavailable; try again later."),
            status=503,
        )
    if isinstance(outcome, signin.Closing):
        return closing_page(outcome.user, {"pwd": int(utcnow().timestamp())}, ix)
    if isinstance(outcome, signin.Refused):
        return refused_page(ix, creds, outcome)
    now = int(utcnow().timestamp())
    return after_factors(outcome.user, dict.fromkeys(outcome.factors, now), ix)


def refused_page(
    ix: str,
    creds: signin.Credentials,
    outcome: signin.Refused,
    *,
    mode: str = "",
    credit_code: str = "",
) -> Response:
    """The login form again, saying why the sign-in was refused."""
    control = outcome.status == 400 and any(ord(c) < 32 for c in creds.login_name)
    return login_page(
        ix,
        login_name="" if control else creds.login_name,
        department="" if control else creds.department,
        error=outcome.message,
        status=outcome.status,
        recovery=outcome.offer_recovery,
        retry_after=outcome.retry_after,
        mode=mode,
        credit_code=credit_code,
    )


def after_factors(user: User, factors: dict[str, int], ix: str) -> Response:
    """Sign in with the factors proven so far (``pwd`` alone goes through the usual
    second-factor decision in :func:`finish_login`)."""
    if set(factors) == {"pwd"}:
        return finish_login(user, amr=["pwd"], ix=ix)
    return finish_login(
        user, amr=mfa.amr_for(factors), ix=ix, acr=mfa.acr_for(factors), factors=factors
    )


# ------------------------------------------------------------------ closing (注销) in progress
CLOSING_KEY = "yt_closing"
CLOSING_TTL = 600


def keep_closing_factors(user: User, factors: dict[str, int]) -> None:
    """Remember in this browser (sealed, :data:`CLOSING_TTL`) what the person proved so far."""
    stash_sealed(CLOSING_KEY, "close-cancel", "", json.dumps({"u": user.id, "f": factors}))


def closing_page(
    user: User,
    factors: dict[str, int],
    ix: str,
    *,
    error: str | None = None,
    info: str | None = None,
    status: int = 200,
) -> Response:
    """Credentials of an account being closed: offer to cancel the closing, asking for every
    factor the account has that was not proven yet (:func:`rights.cancel_needs`)."""
    keep_closing_factors(user, factors)
    needs = rights.cancel_needs(user, factors)
    body = render_template(
        "closing.html",
        user=user,
        ix=ix,
        days=rights.cooling_days(),
        needs=needs,
        error=error,
        info=info,
        phone=mask_phone(user.phone) if "sms" in needs.methods else None,
    )
    resp = make_response(body, status)
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _closing_in_browser() -> tuple[User, dict[str, int]] | None:
    raw = unstash_sealed(CLOSING_KEY, "close-cancel", "", CLOSING_TTL)
    data = json.loads(raw) if raw else None
    if not isinstance(data, dict) or not isinstance(data.get("f"), dict):
        return None
    user = context.db_session().get(User, str(data.get("u")))
    if user is None or user.status != "closing":
        return None
    return user, {str(k): int(v) for k, v in data["f"].items()}


@bp.route("/login/closing", methods=["GET"])
def closing_form() -> Response:
    """The closing page again (a passkey sign-in lands here from its script)."""
    ix = request.args.get("ix", "")[:MAX_IX]
    found = _closing_in_browser()
    if found is None:
        return see_other(url_for("login.login_form", ix=ix or None), code=302)
    return closing_page(*found, ix)


@bp.route("/login/closing/cancel", methods=["POST"])
def closing_cancel() -> Response:
    """Keep the account: with every factor proven, the closing is cancelled and the person
    signed in (issue 15: a password alone never undoes a closing)."""
    form = request.form
    ix = form.get("ix", "")[:MAX_IX]
    found = _closing_in_browser()
    if found is None:
        return see_other(url_for("login.login_form", ix=ix or None))
    user, factors = found
    if form.get("action") == "sms_send":
        if "sms" not in rights.cancel_needs(user, factors).methods or not user.phone:
            error = _("SMS codes are not available for this account.")
            return closing_page(user, factors, ix, error=error, status=400)
        ok, message, wait = send_sms_code(user.phone, "mfa", user.id)
        if not ok:
            return closing_page(user, factors, ix, error=message, status=429 if wait else 503)
        return closing_page(user, factors, ix, info=message)
    factors, refused = rights.prove_for_cancel(
        user,
        factors,
        password=form.get("password", ""),
        method=form.get("method", ""),
        code=form.get("code", ""),
    )
    if refused is not None:
        resp = closing_page(user, factors, ix, error=refused.message, status=refused.status)
        if refused.retry_after:
            resp.headers["Retry-After"] = str(refused.retry_after)
        return resp
    rights.cancel_closing(user)
    return after_factors(user, factors, ix)


def finish_login(
    user: User,
    *,
    amr: list[str],
    ix: str,
    acr: str | None = None,
    factors: dict[str, int] | None = None,
    target: str | None = None,
) -> Response:
    """Continue after a proven factor: to the second factor when one is needed, else start
    the session and go to ``target``, else back to the authorization request (or the
    account page)."""
    if list(amr) == ["pwd"]:
        wanted = required_acr(ix_context(ix), user)
        if wanted is not None and signin.needs_second_factor(amr, wanted):
            signin.begin_pending(user, wanted)
            resp = see_other(url_for("second_factor.challenge", ix=ix or None))
            clear_session_cookie(resp)  # the browser's old session ended with the new login
            return resp
    token = signin.begin_session(user, amr=amr, acr=acr, factors=factors)
    if target is None:
        target = url_for("oidc.resume", ix=ix) if ix else url_for("account.home")
    resp = see_other(target)
    set_session_cookie(resp, token)
    context.services().devices.remember(resp, user.id)
    return resp


# ------------------------------------------------------------------ registration
@bp.route("/register", methods=["GET"])
def register() -> str:
    return _register_page(errors={}, values={}, ix=request.args.get("ix", ""))


def _register_page(*, errors: dict[str, str], values: dict[str, str], ix: str) -> str:
    """The form with the password rule the server applies (the policy, no second factor yet)."""
    minimum = context.services().passwords.min_length
    return render_template(
        "register.html", errors=errors, values=values, ix=ix[:MAX_IX], minimum=minimum
    )


@bp.route("/register", methods=["POST"])
def register_post() -> Response:
    services = context.services()
    db_session = context.db_session()
    form = request.form
    values = {k: form.get(k, "") for k in ("name", "id_number", "phone", "email")}
    password = form.get("password", "")
    collisions: list[Collision] = []
    try:
        user = register_citizen(
            db_session,
            NewCitizen(
                name=values["name"],
                id_number=values["id_number"],
                phone=values["phone"] or None,
                email=values["email"] or None,
                password=password,
            ),
            vault=services.vault,
            passwords=services.passwords,
            ip=context.client_ip(),
            collisions=collisions,
        )
        problems = {}
    except RegistrationError as exc:
        db_session.rollback()
        problems = {field: _(msg, **params) for field, (msg, params) in exc.problems.items()}
    if password != form.get("password_confirm", ""):
        problems["password_confirm"] = _("The passwords do not match.")
    if problems:
        db_session.rollback()
        body = _register_page(errors=problems, values=values, ix=form.get("ix", ""))
        return make_response(body, 400)
    db_session.commit()
    ix = form.get("ix", "")[:MAX_IX]
    # Confirm the contact points now (issue 15 item 2): a code to the phone, a link to the
    # e-mail; until then neither is a login name nor a reset channel.  Data another account
    # holds for sure is answered alike (checklist 83): its holder is told instead.
    taken = {c.field: c for c in collisions}
    if "id_number" in taken:
        tell_holder(taken["id_number"].holder, "id_number", account=user.id)
    phone = user.phone or (taken["phone"].value if "phone" in taken else None)
    if phone:
        start_phone_change(user, phone)
    email = user.email or (taken["email"].value if "email" in taken else None)
    if email:
        send_email_link(user, email)
    target = url_for("rights.confirm_contacts", ix=ix or None)
    return finish_login(user, amr=["pwd"], ix=ix, target=target)


# ------------------------------------------------------------------ consent
@bp.route("/consent", methods=["GET"])
def consent() -> Response:
    ix = request.args.get("ix", "")[:MAX_IX]
    try:
        opened = open_ix(ix)
    except InteractionExpired:
        return expired_page()
    if opened is None:
        return error_page(_("Nothing to consent to."))
    user = current_user_row()
    if user is None:
        return see_other(url_for("login.login_form", ix=ix), code=302)
    client = _client_for(opened[0])
    if client is None:
        return error_page(_("Unknown service."))
    scopes = (opened[0].get("scope") or [""])[0].split()
    released = pending_release(
        context.db_session(), user, client, scopes, _claims_request(opened[0]), opened[1]
    )
    department = (
        context.db_session().get(Department, client.department_id) if client.department_id else None
    )
    labels = scope_labels()
    body = render_template(
        "consent.html",
        ix=ix,
        client=client,
        department=department,
        # Plain words for what each scope gives (issue 15 item 4), never raw scope names.
        scope_words=[labels[s] for s in scopes if s in labels],
        user=user,
        released=released,
    )
    return make_response(body)


def _claims_request(multi: dict[str, list[str]]) -> dict[str, object] | None:
    """The sealed request's ``claims`` parameter (validated at /authorize), parsed."""
    raw = (multi.get("claims") or [""])[0]
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


@bp.route("/consent", methods=["POST"])
def consent_post() -> Response:
    ix = request.form.get("ix", "")[:MAX_IX]
    if not ix:
        return error_page(_("Nothing to consent to."))
    try:
        interaction = open_interaction(ix)
    except InteractionExpired:
        return expired_page()
    multi = interaction.multi
    if request.form.get("action") != "approve":
        return cancel(ix)
    user = current_user_row()
    if user is None:
        return see_other(url_for("login.login_form", ix=ix))
    client = _client_for(multi)
    if client is None:
        return error_page(_("Unknown service."))
    db_session = context.db_session()
    scopes = (multi.get("scope") or [""])[0].split()
    released = pending_release(
        db_session, user, client, scopes, _claims_request(multi), interaction.started
    )
    record_consent(db_session, user, client, scopes, released_keys(released))
    db_session.commit()
    return process_authorization(multi, interaction=interaction, consent_given=True)

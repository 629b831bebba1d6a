"""QR-code login from the government app (issue 13 item 4): the browser's side and the app's.

The decisions are in :mod:`idp.interaction.decoupled`; this module parses, calls and draws.

Browser (the login page, ``templates/_qr_login.html``):
  reading the login page stores nothing; its script asks ``POST /qr/new`` for a QR code (an SVG
  drawn by :mod:`idp.interaction.qr_svg`, ``templates/_qr_panel.html``), or without script the
  page's "Show a QR code" button does (``POST /login/qr``); either sets the ``yitong_qr``
  cookie, the browser's secret. The page's script polls ``GET /qr/status/<id>`` (JSON, this
  browser's cookie only) and, once the app approved, submits ``POST /qr/complete``, which
  starts the SSO session and continues the authorization request (``ix``). Without script, the
  same form's button asks once.

App (a client holding the person's access token with the ``qr_login_scope``, as Bearer or
DPoP): ``GET /qr/<code>/request`` shows what asks (service, approximate location, matching
number, warning); ``POST /qr/<code>/decision`` (``decision=approve|deny``, ``matching_number``)
decides once.  ``GET /qr/<code>`` is what the QR code encodes: opened by a camera app rather
than the government app, it explains what to do and warns.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, make_response, render_template, request, url_for
from flask_babel import gettext as _
from markupsafe import Markup
from werkzeug.wrappers import Response

from idp import context
from idp.blueprints.guards import retry_after
from idp.blueprints.oidc import resource_access
from idp.blueprints.responses import error_page, json_error, see_other
from idp.errors import AccessDeniedError, InsufficientScopeError, InvalidRequestError
from idp.interaction import decoupled
from idp.interaction import login as signin
from idp.interaction.flow import InteractionExpired
from idp.interaction.qr_svg import qr_svg
from idp.interaction.web import open_interaction, set_session_cookie
from idp.storage.models import User, utcnow
from idp.storage.rows import GrantRow, UserRow

bp = Blueprint("qr", __name__)

COOKIE = "yitong_qr"
MAX_IX = 32768


# ------------------------------------------------------------------ the browser's side
def _browser_secret() -> str | None:
    value = request.cookies.get(COOKIE)
    return value if value and len(value) <= 128 else None


def panel(client_id: str | None) -> dict[str, Any] | None:
    """A fresh QR request for the login page, or None when this address asked too often.

    The caller renders ``qr`` into ``_qr_login.html`` and passes the response through
    :func:`remember_browser`.
    """
    settings = context.settings()
    if retry_after("qr", settings.rate_limit_qr_per_minute) is not None:
        return None
    secret = _browser_secret()
    session = context.db_session()
    shown = decoupled.show_qr(
        session,
        client_id=client_id,
        ip=context.client_ip(),
        now=utcnow(),
        lifetime=settings.qr_login_lifetime,
        browser_secret=secret,
    )
    session.commit()
    link = settings.endpoint(f"/qr/{shown.code}")
    return {
        "id": shown.request_id,
        "svg": Markup(qr_svg(link, border=2)),  # noqa: S704 - drawn from our own URL
        "link": link,
        "number": shown.matching_number,
        "expires_in": shown.expires_in,
        "secret": shown.browser_secret,
    }


def remember_browser(resp: Response, qr: dict[str, Any] | None) -> Response:
    """Set the cookie binding the shown code to this browser (checklist: cross-device)."""
    if qr is not None:
        resp.set_cookie(
            COOKIE,
            qr["secret"],
            httponly=True,
            secure=context.settings().issuer.startswith("https://"),
            samesite="Strict",
            path="/",
            max_age=3600,
        )
    return resp


def status_text(state: str) -> str:
    """The browser's status line for ``state`` (read out by screen readers: aria-live)."""
    texts = {
        "pending": _("Waiting for the app to approve."),
        "approved": _("Approved in the app. Signing you in…"),
        "denied": _("The sign-in was denied in the app."),
    }
    return str(texts.get(state) or _("The QR code has expired. Show a new one."))


def outcome_message(state: str | None) -> str | None:
    """Why the login page is back after ``/qr/complete`` found nothing to take."""
    if state in ("denied", "expired", "unknown"):
        return status_text(state)
    if state == "pending":
        return str(_("The app has not approved yet."))
    return None


@bp.route("/qr/new", methods=["POST"])
def new() -> Response:
    """A QR code for the login page's script (CSRF-protected form post): the panel's HTML,
    and the cookie binding it to this browser.  Only this stores a request, so reading the
    login page (crawlers, bots, link previews) fills no table."""
    ix = request.form.get("ix", "")[:MAX_IX]
    client_id = ""
    if ix:
        try:
            client_id = (open_interaction(ix).multi.get("client_id") or [""])[0]
        except InteractionExpired:
            client_id = ""
    client = context.find_client(client_id) if client_id else None
    qr = panel(client.client_id if client else None)
    html = render_template("_qr_panel.html", qr=qr, ix=ix)
    resp = remember_browser(jsonify({"html": html, "shown": qr is not None}), qr)
    resp.status_code = 200 if qr is not None else 429
    resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.route("/qr/status/<request_id>", methods=["GET"])
def status(request_id: str) -> Response:
    """This browser's request's state, for the page's script (never another browser's)."""
    state = decoupled.browser_status(context.db_session(), request_id, _browser_secret(), utcnow())
    resp = jsonify({"status": state, "message": status_text(state)})
    resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.route("/qr/complete", methods=["POST"])
def complete() -> Response:
    """Take the approved request's session, in the browser that showed the code only."""
    ix = request.form.get("ix", "")[:MAX_IX]
    session = context.db_session()
    now = utcnow()
    request_id = request.form.get("qr_id", "")
    row = decoupled.take_approved(session, request_id, _browser_secret(), now)
    if row is None:
        state = decoupled.browser_status(session, request_id, _browser_secret(), now)
        session.rollback()
        target = url_for("login.login_form", ix=ix or None, qr=state)
        return see_other(target)
    user = session.get(User, row.user_id)
    if user is None or not user.is_active:
        session.commit()
        return error_page(_("This account cannot sign in."), 403, "access_denied")
    session.commit()
    token = signin.begin_session(user, amr=list(row.amr), acr=row.acr)
    resp = see_other(url_for("oidc.resume", ix=ix) if ix else url_for("account.home"))
    set_session_cookie(resp, token)
    resp.delete_cookie(COOKIE, path="/")
    return resp


# ------------------------------------------------------------------ the app's side
def _app_caller(path: str) -> tuple[UserRow, GrantRow, str] | Response:
    """The person the app acts for, its grant and the app's client id, or the refusal."""
    found = resource_access(path, context.db_session())
    if isinstance(found, Response):
        return found
    row, grant, user = found
    if user is None or context.settings().qr_login_scope not in row.scope.split():
        scope = context.settings().qr_login_scope
        return json_error(
            InsufficientScopeError(f"the {scope} scope is required"),
            headers={"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{scope}"'},
        )
    return user, grant, row.client_id


#: HTTP status of each refusal the app can meet.
REFUSALS = {
    "expired": 410,
    "used": 409,
    "other_account": 409,
    "number_mismatch": 400,
    "unknown": 404,
}


def refusal_text(reason: str) -> str:
    """What the app shows the person for a refusal (translated)."""
    texts = {
        "expired": _("The QR code has expired. Ask for a new one."),
        "used": _("This QR code was already used."),
        "other_account": _("This QR code is being handled by another account."),
        "number_mismatch": _("The number does not match the one in the browser."),
    }
    return str(texts.get(reason) or _("Unknown QR code."))


def _refused(reason: str) -> Response:
    status_code = REFUSALS[reason]
    error = AccessDeniedError(reason) if status_code != 400 else InvalidRequestError(reason)
    return json_error(error, status=status_code, message=refusal_text(reason))


def location_text(ip: str | None) -> str:
    kind, network = decoupled.approximate_location(ip, context.settings().qr_login_networks)
    if kind == "named":
        return network
    if kind == "local":
        return str(_("a local network (not the internet)"))
    if kind == "public":
        return str(_("internet address in %(network)s", network=network))
    return str(_("unknown"))


@bp.route("/qr/<code>/request", methods=["GET"])
def app_request(code: str) -> Response:
    """What the app shows the person before they decide."""
    caller = _app_caller(f"/qr/{code}/request")
    if isinstance(caller, Response):
        return caller
    user, _grant, _app = caller
    session = context.db_session()
    row = decoupled.find_by_code(session, code)
    if row is None:
        return _refused("unknown")
    now = utcnow()
    try:
        decoupled.claim(session, row, user.id, now)
    except decoupled.DecoupledRefusal as exc:
        session.rollback()
        return _refused(exc.reason)
    session.commit()
    client = context.find_client(row.client_id) if row.client_id else None
    resp = jsonify(
        {
            "service": client.name if client else _("your account at Yitong"),
            "location": location_text(row.ip),
            "matching_number": row.matching_number,
            "expires_in": max(0, int((row.expires_at - now).total_seconds())),
            "warning": _(
                "Approve only if you are signing in on a computer in front of you right now "
                "and it shows the same number. Never approve a code someone sent you or asked "
                "you to scan: they would be signed in as you."
            ),
        }
    )
    resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.route("/qr/<code>/decision", methods=["POST"])
def app_decision(code: str) -> Response:
    """Approve or deny, once; the approval is in the audit trail."""
    caller = _app_caller(f"/qr/{code}/decision")
    if isinstance(caller, Response):
        return caller
    user, grant, app_client = caller
    decision = request.form.get("decision")
    if decision not in ("approve", "deny"):
        return json_error(InvalidRequestError("decision must be approve or deny"))
    session = context.db_session()
    row = decoupled.find_by_code(session, code)
    if row is None:
        return _refused("unknown")
    try:
        decoupled.decide(
            session,
            row,
            user_id=user.id,
            grant=grant,
            approve=decision == "approve",
            matching_number=request.form.get("matching_number"),
            app_client_id=app_client,
            ip=context.client_ip(),
            now=utcnow(),
        )
    except decoupled.DecoupledRefusal as exc:
        session.rollback()
        return _refused(exc.reason)
    session.commit()
    resp = jsonify({"status": "approved" if decision == "approve" else "denied"})
    resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.route("/qr/<code>", methods=["GET"])
def scanned(code: str) -> Response:
    """The QR code opened by a camera or a browser instead of the government app."""
    body = render_template("qr_scanned.html")
    resp = make_response(body, 200)
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["Referrer-Policy"] = "no-referrer"
    return resp

"""The ticket bridge, protocol v1, under ``/bridge/v1`` (docs/integrating.md "Ticket bridge").

Browser side: ``/bridge/v1/login`` checks the signed request, then uses the SSO session the
way ``/cas/login`` does (our login page and the company picker come back here through an
``ix``, sealed and bound to this browser, spent once) and sends a one-time ticket to the
registered callback.  ``/bridge/v1/logout`` (signed) ends this browser's session when it is
one in which the system signed the person in; otherwise the person confirms on our page.

Server side (``POST``, the system's credentials by HTTP Basic or as ``system_id`` and
``system_secret`` form fields): ``/token`` (ticket → access token), ``/userinfo`` (token →
attributes) and ``/logout`` (token → its SSO session ends).  Errors are the protocol's own
JSON ``{"version": "1", "error", "error_description"}``; a browser request that fails its
checks gets an error page naming the code (an unverified request is never redirected).
The logic is :mod:`idp.bridge`; every call is audited there.
"""

from __future__ import annotations

import datetime as dt
import hmac
from typing import Any
from urllib.parse import urlencode, urlsplit

from flask import Blueprint, jsonify, request, url_for
from flask_babel import gettext as _
from sqlalchemy import select
from werkzeug.wrappers import Response

from idp import context
from idp.blueprints.guards import retry_after
from idp.blueprints.logout import after_logout, end_current_session
from idp.blueprints.responses import error_page, see_other
from idp.bridge import protocol
from idp.bridge.protocol import SignedRequest
from idp.errors import (
    BridgeAccessDeniedError,
    BridgeError,
    BridgeInvalidClientError,
    BridgeInvalidRequestError,
    OAuth2Error,
)
from idp.interaction import acting
from idp.interaction.flow import INTERACTION_MAX_AGE, InteractionExpired
from idp.interaction.web import (
    current_sso,
    current_user_row,
    open_interaction,
    seal_interaction,
)
from idp.oauth.client_auth import parse_basic
from idp.oauth.clients import OAuthClient
from idp.storage import repo
from idp.storage.models import Client, Grant, utcnow

bp = Blueprint("bridge", __name__, url_prefix="/bridge/v1")

#: The keys a bridge login carries in its ``ix`` (``oidc.resume`` and the picker send it back).
IX_SYSTEM = "bridge_system"
IX_STATE = "bridge_state"
IX_ACTING = "bridge_acting"
MAX_IX = 32768
MAX_STATE = 512


def _no_store(resp: Response) -> Response:
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _refused_page(error: BridgeError) -> Response:
    message = _("The sign-in request from this system could not be accepted (%(code)s).")
    return error_page(message % {"code": error.code}, error.status, error.code)


def _browser_rate_limited() -> Response | None:
    """Signed requests are cheap to refuse but each refusal is audited: limit them per
    address like ``/authorize`` (a page, since a person is behind it)."""
    wait = retry_after("bridge-login", context.settings().rate_limit_authorize_per_minute)
    if wait is None:
        return None
    resp = error_page(_("Too many requests; try again shortly."), 429, "slow_down")
    resp.headers["Retry-After"] = str(wait)
    return resp


def _callback(system: Client, params: dict[str, str]) -> Response:
    uri = system.redirect_uris[0]
    sep = "&" if urlsplit(uri).query else "?"
    return _no_store(see_other(uri + sep + urlencode(params), code=302))


# ------------------------------------------------------------------ browser: login
@bp.route("/login", methods=["GET"])
def login() -> Response:
    ix = request.args.get("ix")
    if ix is not None:
        return _resume(ix[:MAX_IX], cancelled=request.args.get("cancel") == "1")
    limited = _browser_rate_limited()
    if limited is not None:
        return limited
    session = context.db_session()
    services = context.services()
    multi = {k: request.args.getlist(k) for k in request.args}
    try:
        signed = protocol.verify_request(session, services, multi, request.path)
        state = signed.params.get("state", "")
        if len(state) > MAX_STATE:
            raise BridgeInvalidRequestError(f"state is longer than {MAX_STATE} characters")
        if signed.params.get("acting", "self") not in ("self", "company"):
            raise BridgeInvalidRequestError("acting must be self or company")
    except BridgeError as exc:
        protocol.audit_refusal(
            services,
            "bridge.login",
            exc,
            system_id=request.args.get("system_id"),
            ip=context.client_ip(),
        )
        return _refused_page(exc)
    sealed = {
        IX_SYSTEM: [signed.system.client_id],
        "client_id": [signed.system.client_id],  # the login page and the picker name it
        IX_STATE: [state],
        IX_ACTING: [signed.params.get("acting", "self")],
    }
    return _no_store(
        see_other(url_for("bridge.login", ix=seal_interaction(sealed, utcnow())), code=302)
    )


def _resume(ix: str, *, cancelled: bool) -> Response:
    """The login page, the picker or the signed request led here: a ticket, or back."""
    expired = error_page(_("The sign-in page has expired; start again."), 400)
    try:
        interaction = open_interaction(ix)
    except InteractionExpired:
        return expired
    session = context.db_session()
    try:
        system = protocol.find_system(session, (interaction.multi.get(IX_SYSTEM) or [""])[0])
    except BridgeError as exc:
        return _refused_page(exc)
    state = (interaction.multi.get(IX_STATE) or [""])[0]
    answer = {"state": state} if state else {}
    if cancelled:
        error = BridgeAccessDeniedError("the person declined")
        return _callback(system, {"error": error.code, **answer})
    sso = current_sso()
    user = current_user_row()
    if sso is None or user is None:
        return _no_store(see_other(url_for("login.login_form", ix=ix), code=302))
    now = utcnow()
    option = None
    if (interaction.multi.get(IX_ACTING) or ["self"])[0] == "company":
        available = acting.options(session, user, system, now)
        option = acting.chosen(available, system.client_id, interaction.started)
        if option is None:
            return _no_store(see_other(url_for("entities.choose", ix=ix), code=302))
    expires = interaction.started + dt.timedelta(seconds=INTERACTION_MAX_AGE * 2)
    if not repo.consume_once(session, "bridge-interaction", interaction.iid, expires):
        return expired  # a replayed continuation mints no second ticket
    ticket = protocol.issue_ticket(
        session,
        context.services(),
        system,
        user,
        sso,
        entity_id=option.entity_id if option else None,
        mandate_id=option.mandate_id if option else None,
        ip=context.client_ip(),
    )
    session.commit()
    acting.forget()
    return _callback(system, {"ticket": ticket, **answer})


# ------------------------------------------------------------------ browser: logout
@bp.route("/logout", methods=["GET"])
def logout_browser() -> Response:
    """Signed: end this browser's session at once if the system signed the person in in it;
    else our confirmation page.  ``return_to`` must be the registered callback exactly."""
    limited = _browser_rate_limited()
    if limited is not None:
        return limited
    session = context.db_session()
    services = context.services()
    multi = {k: request.args.getlist(k) for k in request.args}
    try:
        signed = protocol.verify_request(session, services, multi, request.path)
        return_to = signed.params.get("return_to")
        if return_to is not None and return_to not in signed.system.redirect_uris:
            raise BridgeInvalidRequestError("return_to must be the registered callback")
    except BridgeError as exc:
        protocol.audit_refusal(
            services,
            "bridge.logout",
            exc,
            system_id=request.args.get("system_id"),
            ip=context.client_ip(),
        )
        return _refused_page(exc)
    sso = current_sso()
    if sso is not None and not _signed_in_here(signed, sso.id):
        return see_other(url_for("logout.logout"), code=302)  # the person confirms
    return after_logout(end_current_session(), return_to, None)


def _signed_in_here(signed: SignedRequest, sid: str) -> bool:
    found = context.db_session().scalars(
        select(Grant.id).where(Grant.sid == sid, Grant.client_id == signed.system.client_id)
    )
    return found.first() is not None


# ------------------------------------------------------------------ server to server
def _json(body: dict[str, Any], status: int = 200) -> Response:
    resp = jsonify(body)
    resp.status_code = status
    return _no_store(resp)


def _error(error: BridgeError) -> Response:
    resp = _json(
        {"version": protocol.VERSION, "error": error.code, "error_description": error.description},
        error.status,
    )
    if error.status == 401:
        resp.headers["WWW-Authenticate"] = 'Basic realm="yitong-bridge"'
    return resp


def _authenticated_system() -> Client:
    """The system whose credentials came with the request (Basic, or form fields)."""
    header = request.headers.get("Authorization")
    form_id, form_secret = request.form.get("system_id"), request.form.get("system_secret")
    if header is not None and (form_id or form_secret):
        raise BridgeInvalidRequestError("send credentials once: Basic or form fields")
    if header is not None:
        try:
            system_id, secret = parse_basic(header)
        except OAuth2Error:
            raise BridgeInvalidClientError("system authentication failed") from None
    elif form_id and form_secret:
        system_id, secret = form_id, form_secret
    else:
        raise BridgeInvalidClientError("system credentials are required")
    try:
        system = protocol.find_system(context.db_session(), system_id)
    except BridgeError:
        raise BridgeInvalidClientError("system authentication failed") from None
    if not OAuthClient(system).check_client_secret(secret) or not hmac.compare_digest(
        system.client_id, system_id
    ):
        raise BridgeInvalidClientError("system authentication failed")
    return system


def _server_call(action: str, call: Any) -> Response:
    wait = retry_after("bridge", context.settings().rate_limit_token_per_minute)
    if wait is not None:
        resp = _json(
            {"version": protocol.VERSION, "error": "slow_down", "error_description": "retry later"},
            429,
        )
        resp.headers["Retry-After"] = str(wait)
        return resp
    services = context.services()
    system_id = None
    try:
        if request.mimetype != "application/x-www-form-urlencoded":
            raise BridgeInvalidRequestError("send the request as a form")
        if any(len(v) > 1 for v in request.form.listvalues()):
            raise BridgeInvalidRequestError("a parameter was sent more than once")
        system = _authenticated_system()
        system_id = system.client_id
        return _json(call(system))
    except BridgeError as exc:
        context.db_session().rollback()
        protocol.audit_refusal(
            services,
            action,
            exc,
            system_id=system_id or request.form.get("system_id"),
            ip=context.client_ip(),
        )
        return _error(exc)


@bp.route("/token", methods=["POST"])
def token() -> Response:
    """Ticket → access token."""

    def call(system: Client) -> dict[str, Any]:
        return protocol.exchange_ticket(
            context.db_session(),
            context.services(),
            system,
            request.form.get("ticket"),
            ip=context.client_ip(),
        )

    return _server_call("bridge.token", call)


@bp.route("/userinfo", methods=["POST"])
def userinfo() -> Response:
    """Access token → the attributes the system's allow-list releases."""

    def call(system: Client) -> dict[str, Any]:
        return protocol.user_info(
            context.db_session(),
            context.services(),
            system,
            request.form.get("access_token"),
            ip=context.client_ip(),
        )

    return _server_call("bridge.userinfo", call)


@bp.route("/logout", methods=["POST"])
def logout_server() -> Response:
    """Access token → the SSO session it was issued in ends everywhere."""

    def call(system: Client) -> dict[str, Any]:
        ended, outcome = protocol.end_token_session(
            context.db_session(),
            context.services(),
            system,
            request.form.get("access_token"),
            ip=context.client_ip(),
        )
        if outcome is not None:
            outcome.kick()
        return {"version": protocol.VERSION, "ended": ended}

    return _server_call("bridge.logout", call)

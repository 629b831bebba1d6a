"""The CAS server's endpoints (CAS protocol 1.0, 2.0 and 3.0), under ``/cas``.

``/cas/login`` uses the browser's SSO session, the same one OpenID Connect uses: a person
signed in at the portal gets a ticket at once; otherwise our login page is shown and comes
back here through an ``ix`` (sealed, bound to this browser, spent once) that carries the
service and when the request began, so that ``renew`` is met only by credentials given after
it (CAS 3.0 §2.1.1).  The validation endpoints answer the service server to server; the logic
is in :mod:`idp.cas`.  Every route is a GET: nothing here needs a CSRF exemption.

``/cas/logout`` leads to our ``/logout`` confirmation, like a relying party's logout without
an ID token hint (checklist 63); the session ends through
:func:`~idp.interaction.sessions.end_sessions`, which notifies the CAS services too.
"""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, make_response, request, url_for
from flask_babel import gettext as _
from werkzeug.wrappers import Response

from idp import context
from idp.blueprints.responses import error_page, see_other
from idp.cas import xml
from idp.cas.registry import find_service
from idp.cas.tickets import issue_ticket, service_with_ticket, validate_ticket
from idp.errors import CasError, CasInvalidRequestError, CasUnauthorizedServiceProxyError
from idp.interaction.flow import INTERACTION_MAX_AGE, InteractionExpired
from idp.interaction.web import current_sso, open_interaction, seal_interaction
from idp.storage import repo
from idp.storage.models import CasService, SsoSession, utcnow

bp = Blueprint("cas", __name__, url_prefix="/cas")

#: The keys a CAS continuation carries in its ``ix`` (``oidc.resume`` sends it back here).
IX_SERVICE = "cas_service"
IX_RENEW = "cas_renew"
MAX_IX = 32768


def _flag(name: str) -> bool:
    """CAS 3.0 §2.1.1: a boolean parameter is set when present with a true-ish value."""
    value = request.args.get(name)
    return value is not None and value.lower() not in ("false", "0")


def _no_store(resp: Response) -> Response:
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _to_login(service: str, renew: bool) -> Response:
    """Our login page, continuing to ``/cas/login`` afterwards (through ``oidc.resume``)."""
    multi = {IX_SERVICE: [service]}
    if renew:
        multi[IX_RENEW] = ["true"]
    ix = seal_interaction(multi, utcnow())
    return _no_store(see_other(url_for("login.login_form", ix=ix), code=302))


def _grant(service_row: CasService, service: str, sso: SsoSession, *, primary: bool) -> Response:
    db_session = context.db_session()
    ticket = issue_ticket(
        db_session,
        service_row,
        service,
        sso,
        primary=primary,
        lifetime=context.settings().cas_ticket_lifetime,
        ip=context.client_ip(),
    )
    db_session.commit()
    return _no_store(see_other(service_with_ticket(service, ticket), code=302))


def _unknown_service() -> Response:
    return error_page(_("This service is not registered to use single sign-on."), 400)


@bp.route("/login", methods=["GET"])
def login() -> Response:
    """CAS 3.0 §2.1: credential requestor (``service``, ``renew``, ``gateway``)."""
    ix = request.args.get("ix")
    if ix is not None:
        return _resume(ix[:MAX_IX])
    service = request.args.get("service")
    sso = current_sso()
    if not service:
        # §2.1.1: without a service, say whether the person is signed in (our pages do).
        target = url_for("account.home") if sso is not None else url_for("login.login_form")
        return see_other(target, code=302)
    service_row = find_service(context.db_session(), service)
    if service_row is None:
        return _unknown_service()  # never redirect to an unregistered service
    if _flag("renew"):  # §2.1.1: renew takes precedence over gateway
        return _to_login(service, renew=True)
    if sso is None:
        if _flag("gateway"):  # §2.1.1: back to the service without a ticket
            return _no_store(see_other(service, code=302))
        return _to_login(service, renew=False)
    return _grant(service_row, service, sso, primary=False)


def _resume(ix: str) -> Response:
    """Back from our login page: the ticket, from the session started for this request."""
    expired = error_page(_("The sign-in page has expired; start again."), 400)
    try:
        interaction = open_interaction(ix)
    except InteractionExpired:
        return expired
    service = (interaction.multi.get(IX_SERVICE) or [""])[0]
    renew = bool(interaction.multi.get(IX_RENEW))
    service_row = find_service(context.db_session(), service)
    if service_row is None:
        return _unknown_service()
    sso = current_sso()
    primary = sso is not None and sso.auth_time >= interaction.started
    if sso is None or (renew and not primary):
        # Not signed in (or not since this request began): the login page again.
        return _no_store(see_other(url_for("login.login_form", ix=ix), code=302))
    expires = interaction.started + dt.timedelta(seconds=INTERACTION_MAX_AGE * 2)
    if not repo.consume_once(context.db_session(), "cas-interaction", interaction.iid, expires):
        return expired  # a replayed continuation mints no second ticket
    return _grant(service_row, service, sso, primary=primary)


# ------------------------------------------------------------------ validation (server to server)
def _xml(body: bytes, status: int = 200) -> Response:
    resp = make_response(body, status)
    resp.headers["Content-Type"] = xml.CONTENT_TYPE
    return _no_store(resp)


def _validate_xml(protocol: str, with_attributes: bool) -> Response:
    # A ``pgtUrl`` is ignored: no proxy-granting ticket is issued, and §2.5.4 says a refused
    # callback must not fail the validation itself.
    try:
        validated = validate_ticket(
            context.db_session(),
            request.args.get("ticket"),
            request.args.get("service"),
            renew=_flag("renew"),
            protocol=protocol,
            ip=context.client_ip(),
        )
    except CasError as exc:
        return _xml(xml.failure(exc.code, exc.description))
    attributes = validated.attributes() if with_attributes else None
    return _xml(xml.success(validated.user.id, attributes))


@bp.route("/validate", methods=["GET"])
def validate_v1() -> Response:
    """CAS 1.0 (§2.4): ``yes\\n<user>\\n`` or ``no\\n\\n``, plain text."""
    try:
        validated = validate_ticket(
            context.db_session(),
            request.args.get("ticket"),
            request.args.get("service"),
            renew=_flag("renew"),
            protocol="1.0",
            ip=context.client_ip(),
        )
        body = "yes\n" + xml.xml_text(validated.user.id) + "\n"
    except CasError:
        body = "no\n\n"
    resp = make_response(body, 200)
    resp.headers["Content-Type"] = "text/plain; charset=utf-8"
    return _no_store(resp)


@bp.route("/serviceValidate", methods=["GET"])
def service_validate() -> Response:
    """CAS 2.0 (§2.5): the user, no attributes."""
    return _validate_xml("2.0", with_attributes=False)


@bp.route("/proxyValidate", methods=["GET"])
def proxy_validate() -> Response:
    """§2.6: service tickets only, since no proxy ticket is ever issued (proxying is off)."""
    return _validate_xml("2.0", with_attributes=False)


@bp.route("/p3/serviceValidate", methods=["GET"])
def service_validate_v3() -> Response:
    """CAS 3.0 (§2.5, §2.5.7): the user and the service's released attributes."""
    return _validate_xml("3.0", with_attributes=True)


@bp.route("/p3/proxyValidate", methods=["GET"])
def proxy_validate_v3() -> Response:
    return _validate_xml("3.0", with_attributes=True)


@bp.route("/proxy", methods=["GET"])
def proxy() -> Response:
    """§2.7: proxy tickets are not offered here."""
    if not request.args.get("pgt") or not request.args.get("targetService"):
        error: CasError = CasInvalidRequestError("pgt and targetService are required")
    else:
        error = CasUnauthorizedServiceProxyError("proxying is not offered by this server")
    return _xml(xml.proxy_failure(error.code, error.description))


# ------------------------------------------------------------------ logout
@bp.route("/logout", methods=["GET"])
def logout() -> Response:
    """§2.3: our logout confirmation; single logout reaches the CAS services from there."""
    return see_other(url_for("logout.logout"), code=302)

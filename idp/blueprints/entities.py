"""Pages for acting for a company (issue 10): the legal-person login, the company picker
and "my companies".

The legal-person login (法人登录, ``POST /login/entity``) is the second entry of the login
page, as on provincial portals: the person signs in with their own account and names the
company by its unified social credit code; they get in only if they may act for it at this
client (its representative, or an agent whose live mandate covers the client), and the
picker is then skipped for that company.  A refusal starts no session and is audited.

The picker (``/entities/choose``) is where a person signed in for a client that asked for the
``entity`` scope chooses whom they act for: themselves, a company they represent, or one whose
mandate covers the client.  "My companies" (``/account/companies``) shows the companies a
person represents and the mandates offered to them, to accept or end.  The views parse the
form and draw the page; the decisions are :mod:`idp.interaction.acting` and
:mod:`idp.accounts.entities`.
"""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, make_response, render_template, request, url_for
from flask_babel import gettext as _
from werkzeug.wrappers import Response

from idp import audit, context
from idp.accounts.entities import EntityError, accept_mandate, end_mandate, find_entity
from idp.accounts.identifiers import IdentifierError, normalize_credit_code
from idp.accounts.mandates import mandate_is_live
from idp.accounts.privacy import mask
from idp.blueprints.login import (
    MAX_IX,
    after_factors,
    cancel,
    closing_page,
    expired_page,
    login_page,
    open_ix,
    refused_page,
)
from idp.blueprints.oidc import process_authorization
from idp.blueprints.responses import error_page, see_other
from idp.errors import TemporarilyUnavailableError
from idp.interaction import acting
from idp.interaction import companies as companies_view
from idp.interaction import login as signin
from idp.interaction.flow import InteractionExpired
from idp.interaction.web import current_user_row, open_interaction
from idp.oauth.authorization import find_client
from idp.storage.models import LegalEntity, Mandate, User, utcnow

bp = Blueprint("entities", __name__)


def _picker(ix: str, user: User, client_id: str, *, error: str | None = None) -> Response:
    client = find_client(client_id)
    if client is None:
        return error_page(_("Unknown service."))
    options = acting.options(context.db_session(), user, client, utcnow())
    body = render_template(
        "entity_picker.html", ix=ix, client=client, user=user, options=options, error=error
    )
    return make_response(body, 400 if error else 200)


@bp.route("/entities/choose", methods=["GET"])
def choose() -> Response:
    ix = request.args.get("ix", "")[:MAX_IX]
    try:
        interaction = open_interaction(ix)
    except InteractionExpired:
        return expired_page()
    user = current_user_row()
    if user is None:
        return see_other(url_for("login.login_form", ix=ix), code=302)
    return _picker(ix, user, (interaction.multi.get("client_id") or [""])[0])


@bp.route("/entities/choose", methods=["POST"])
def choose_post() -> Response:
    ix = request.form.get("ix", "")[:MAX_IX]
    try:
        interaction = open_interaction(ix)
    except InteractionExpired:
        return expired_page()
    if request.form.get("action") == "cancel":
        return cancel(ix)
    user = current_user_row()
    if user is None:
        return see_other(url_for("login.login_form", ix=ix))
    client_id = (interaction.multi.get("client_id") or [""])[0]
    client = find_client(client_id)
    if client is None:
        return error_page(_("Unknown service."))
    key = request.form.get("acting_for", "")[:200]
    option = acting.resolve(context.db_session(), user, client, key, utcnow())
    if option is None:
        return _picker(ix, user, client_id, error=_("Choose one of the listed companies."))
    acting.remember(client_id, interaction.started, option.key)
    if "bridge_system" in interaction.multi:  # a ticket-bridge login continues there
        return see_other(url_for("bridge.login", ix=ix))
    return process_authorization(interaction.multi, interaction=interaction)


# ------------------------------------------------------------------ the legal-person login
@bp.route("/login/entity", methods=["POST"])
def entity_login_post() -> Response:
    form = request.form
    ix = form.get("ix", "")[:MAX_IX]
    try:
        opened = open_ix(ix)
    except InteractionExpired:
        return expired_page()
    if form.get("action") == "cancel":
        return cancel(ix)
    raw_code = form.get("credit_code", "").strip()[:64]
    creds = signin.Credentials(
        login_name=form.get("login", "").strip(),
        password=form.get("password", ""),
        recovery_code=form.get("recovery_code", "").strip(),
    )
    client = find_client((opened[0].get("client_id") or [""])[0]) if opened else None
    if not acting.login_offered(opened[0] if opened else None, client):
        return login_page(ix, error=_("This service does not accept legal-person logins."))
    try:
        code = normalize_credit_code(raw_code)
    except IdentifierError:
        return login_page(
            ix,
            login_name=creds.login_name[:200],
            error=_("The unified social credit code is not valid."),
            status=400,
            mode="entity",
            credit_code=raw_code,
        )
    try:
        outcome = signin.authenticate(creds)
    except TemporarilyUnavailableError:  # a staff name (user@department) typed here
        return login_page(
            ix,
            error=_("The department directory is unavailable; try again later."),
            status=503,
            mode="entity",
            credit_code=raw_code,
        )
    now = int(utcnow().timestamp())
    if isinstance(outcome, signin.Closing):  # the account is being closed: as at 个人登录
        return closing_page(outcome.user, {"pwd": now}, ix)
    if isinstance(outcome, signin.Refused):
        return refused_page(ix, creds, outcome, mode="entity", credit_code=raw_code)
    if isinstance(outcome, signin.Closing):  # cooling-off before closing: no session here
        return closing_page(outcome.user, {"pwd": int(utcnow().timestamp())}, ix)
    session = context.db_session()
    entity = find_entity(session, context.services().vault, code)
    option = None
    if entity is not None:
        option = acting.for_company(session, outcome.user, entity, client, utcnow())
    if option is None:
        # No session starts: the password was right, but not for acting for this company.
        audit.record(
            session,
            "login.entity",
            actor=outcome.user.id,
            target=entity.id if entity is not None else None,
            outcome="failure",
            ip=context.client_ip(),
            details={"credit_code": mask(code), "client": client.client_id if client else None},
        )
        session.commit()
        return login_page(
            ix,
            login_name=creds.login_name[:200],
            error=_(
                "You are not the legal representative of this company and hold no valid "
                "mandate from it for this service."
            ),
            status=403,
            mode="entity",
            credit_code=raw_code,
        )
    if opened is not None and client is not None:
        acting.remember(client.client_id, opened[1], option.key)
    return after_factors(outcome.user, dict.fromkeys(outcome.factors, now), ix)


# ------------------------------------------------------------------ my companies
def _companies_page(user: User, *, error: str | None = None, status: int = 200) -> Response:
    session = context.db_session()
    today = companies_view.today_in_china()
    body = render_template(
        "companies.html",
        user=user,
        view=companies_view.overview(session, user, utcnow()),
        now=utcnow(),
        live=mandate_is_live,
        last_day=companies_view.last_day,
        roles=context.settings().mandate_roles,
        today=today.isoformat(),
        next_year=(today + dt.timedelta(days=365)).isoformat(),
        error=error,
        notice=request.args.get("done", "")[:20],
    )
    return make_response(body, status)


@bp.route("/account/companies", methods=["GET"])
def companies() -> Response:
    user = current_user_row()
    if user is None:
        return see_other(url_for("login.login_form"), code=302)
    return _companies_page(user)


@bp.route("/account/companies", methods=["POST"])
def register_company() -> Response:
    """A citizen registers the company they are the legal representative of."""
    user = current_user_row()
    if user is None:
        return see_other(url_for("login.login_form"))
    session = context.db_session()
    try:
        companies_view.register_from_form(
            session, context.services(), user, request.form.to_dict(), context.client_ip()
        )
    except companies_view.FormRefused as exc:
        session.commit()  # a refused representative is audited
        return _companies_page(user, error=str(exc), status=400)
    session.commit()
    return see_other(url_for("entities.companies", done="registered"))


@bp.route("/account/companies/<entity_id>/verify", methods=["POST"])
def verify_company(entity_id: str) -> Response:
    """The representative has the company verified again, or presents its licence."""
    user = current_user_row()
    if user is None:
        return see_other(url_for("login.login_form"))
    session = context.db_session()
    entity = session.get(LegalEntity, entity_id[:64])
    if entity is None:
        return error_page(_("No such company."), 404)
    try:
        notice = companies_view.verify_from_form(
            session, context.services(), user, entity, request.form.to_dict(), context.client_ip()
        )
    except companies_view.FormRefused as exc:
        session.commit()  # refusals are audited; a failed re-verification suspended it
        if exc.ended is not None:
            exc.ended.kick()
        return _companies_page(user, error=str(exc), status=400)
    session.commit()
    return see_other(url_for("entities.companies", done=notice))


@bp.route("/account/companies/<entity_id>/mandates", methods=["POST"])
def grant(entity_id: str) -> Response:
    """The representative or a company admin offers someone a mandate."""
    user = current_user_row()
    if user is None:
        return see_other(url_for("login.login_form"))
    session = context.db_session()
    entity = session.get(LegalEntity, entity_id[:64])
    if entity is None:
        return error_page(_("No such company."), 404)
    try:
        companies_view.grant_from_form(
            session, context.services(), user, entity, request.form.to_dict(), context.client_ip()
        )
    except companies_view.FormRefused as exc:
        session.rollback()
        return _companies_page(user, error=str(exc), status=400)
    session.commit()
    return see_other(url_for("entities.companies", done="granted"))


@bp.route("/account/mandates/<mandate_id>", methods=["POST"])
def mandate_action(mandate_id: str) -> Response:
    """Accept a mandate offered to me, or end one (mine, or one my company gave)."""
    user = current_user_row()
    if user is None:
        return see_other(url_for("login.login_form"))
    session = context.db_session()
    mandate = session.get(Mandate, mandate_id[:64])
    if mandate is None:
        return error_page(_("No such mandate."), 404)
    try:
        if request.form.get("action") == "accept":
            accept_mandate(session, mandate, user, ip=context.client_ip())
        elif request.form.get("action") == "end":
            end_mandate(session, mandate, by=user, actor=user.id, ip=context.client_ip())
        else:
            return error_page(_("Unknown action."))
    except EntityError:
        session.rollback()
        return error_page(_("You cannot change this mandate."), 403)
    session.commit()
    return see_other(url_for("entities.companies"))

"""Pages for acting for a company (issue 10): the company picker and "my companies".

The picker (``/entities/choose``) is where a person signed in for a client that asked for the
``entity`` scope chooses whom they act for: themselves, a company they represent, or one whose
mandate covers the client.  "My companies" (``/account/companies``) shows the companies a
person represents and the mandates offered to them, to accept or end.  The views parse the
form and draw the page; the decisions are :mod:`idp.interaction.acting` and
:mod:`idp.accounts.entities`.
"""

from __future__ import annotations

from flask import Blueprint, make_response, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import select
from werkzeug.wrappers import Response

from idp import context
from idp.accounts.entities import EntityError, accept_mandate, end_mandate
from idp.accounts.mandates import mandate_is_live
from idp.blueprints.login import MAX_IX, cancel, expired_page
from idp.blueprints.oidc import process_authorization
from idp.blueprints.responses import error_page, see_other
from idp.interaction import acting
from idp.interaction.flow import InteractionExpired
from idp.interaction.web import current_user_row, open_interaction
from idp.oauth.authorization import find_client
from idp.storage.models import LegalEntity, Mandate, User, utcnow

bp = Blueprint("entities", __name__)


def _picker(ix: str, user: User, client_id: str, *, error: str | None = None) -> Response:
    client = find_client(client_id)
    if client is None:
        return error_page(_("Unknown service."))
    options = acting.options(context.db_session(), user, client_id, utcnow())
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
    key = request.form.get("acting_for", "")[:200]
    option = acting.resolve(context.db_session(), user, client_id, key, utcnow())
    if option is None:
        return _picker(ix, user, client_id, error=_("Choose one of the listed companies."))
    acting.remember(client_id, interaction.started, option.key)
    if "bridge_system" in interaction.multi:  # a ticket-bridge login continues there
        return see_other(url_for("bridge.login", ix=ix))
    return process_authorization(interaction.multi, interaction=interaction)


# ------------------------------------------------------------------ my companies
@bp.route("/account/companies", methods=["GET"])
def companies() -> Response:
    user = current_user_row()
    if user is None:
        return see_other(url_for("login.login_form"), code=302)
    session = context.db_session()
    represented = session.scalars(
        select(LegalEntity)
        .where(LegalEntity.representative_id == user.id)
        .order_by(LegalEntity.name)
    ).all()
    given = session.scalars(
        select(Mandate)
        .where(
            Mandate.entity_id.in_([e.id for e in represented]),
            Mandate.ended_at.is_(None),
        )
        .order_by(Mandate.created_at)
    ).all()
    held = session.scalars(
        select(Mandate)
        .where(Mandate.user_id == user.id, Mandate.ended_at.is_(None))
        .order_by(Mandate.created_at)
    ).all()
    names = {
        e.id: e.name
        for e in session.scalars(
            select(LegalEntity).where(LegalEntity.id.in_({m.entity_id for m in held}))
        )
    }
    body = render_template(
        "companies.html",
        user=user,
        represented=represented,
        given=given,
        held=held,
        names=names,
        now=utcnow(),
        live=mandate_is_live,
    )
    return make_response(body)


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

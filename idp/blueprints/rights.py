"""Pages for a person's own data (PIPL; issue 15 items 2 and 5): what Yitong holds and who
received what, the JSON copy, corrections, confirming contact points, closing the account.

The decisions are in :mod:`idp.interaction.rights` and :mod:`idp.interaction.contacts`.
Downloading, correcting and closing need a recent authentication (checklist 68): past five
minutes the person confirms the password first (``security.reauth`` brings them back).
"""

from __future__ import annotations

import json

from flask import Blueprint, make_response, render_template, request, url_for
from flask_babel import gettext as _
from werkzeug.wrappers import Response

from idp.blueprints.responses import error_page, safe_next, see_other
from idp.interaction import contacts, rights
from idp.interaction import self_service as selfserve
from idp.interaction.login import Refused
from idp.interaction.web import clear_session_cookie, current_sso, current_user_row
from idp.storage.models import SsoSession, User

bp = Blueprint("rights", __name__)


def _page(template: str, status: int = 200, retry_after: int = 0, **values: object) -> Response:
    resp = make_response(render_template(template, **values), status)
    resp.headers["Cache-Control"] = "no-store"
    if retry_after:
        resp.headers["Retry-After"] = str(retry_after)
    return resp


def _signed_in() -> tuple[User, SsoSession] | Response:
    user, sso = current_user_row(), current_sso()
    if user is None or sso is None:
        return see_other(url_for("login.login_form"), code=302 if request.method == "GET" else 303)
    return user, sso


def _recent(here: str) -> tuple[User, SsoSession] | Response:
    """Signed in and recently authenticated; else the way there (and back to ``here``)."""
    found = _signed_in()
    if isinstance(found, Response):
        return found
    if not selfserve.recently_authenticated(found[1]):
        return see_other(url_for("security.reauth", next=here))
    return found


def _data_page(
    user: User, *, error: str | None = None, info: str | None = None, status: int = 200
) -> Response:
    return _page(
        "account_data.html",
        status,
        user=user,
        data=rights.personal_data(user),
        error=error,
        info=info,
    )


# ---------------------------------------------------------------------- see and copy
@bp.route("/account/data", methods=["GET"])
def data() -> Response:
    found = _signed_in()
    if isinstance(found, Response):
        return found
    info = _("Saved.") if request.args.get("done") else None
    return _data_page(found[0], info=info)


@bp.route("/account/data/export", methods=["GET"])
def export() -> Response:
    """The same data as a JSON file (attachment, never cached), audited."""
    found = _recent(url_for("rights.export"))
    if isinstance(found, Response):
        return found
    user = found[0]
    body = json.dumps(rights.personal_data(user), ensure_ascii=False, indent=2)
    rights.export_was_made(user)
    resp = make_response(body)
    resp.headers["Content-Type"] = "application/json; charset=utf-8"
    resp.headers["Content-Disposition"] = 'attachment; filename="yitong-my-data.json"'
    resp.headers["Cache-Control"] = "no-store"
    return resp


# ---------------------------------------------------------------------- correct
@bp.route("/account/data/name", methods=["POST"])
def name() -> Response:
    found = _recent(url_for("rights.data"))
    if isinstance(found, Response):
        return found
    refused = rights.correct_name(found[0], request.form.get("name", "")[:400])
    if refused is not None:
        return _data_page(found[0], error=refused.message, status=refused.status)
    return see_other(url_for("rights.data", done=1))


@bp.route("/account/data/email", methods=["POST"])
def email() -> Response:
    found = _recent(url_for("rights.data"))
    if isinstance(found, Response):
        return found
    outcome = contacts.start_email_change(found[0], request.form.get("email", ""))
    if isinstance(outcome, Refused):
        return _data_page(found[0], error=outcome.message, status=outcome.status)
    return _data_page(found[0], info=outcome)


@bp.route("/account/email/confirm/<token>", methods=["GET"])
def email_confirm(token: str) -> Response:
    """Show the address and a button: a mail scanner fetching the link confirms nothing."""
    link = contacts.open_email_link(token)
    if link is None:
        return error_page(_("This link has expired or was already used. Ask for a new one."), 400)
    return _page("email_confirm.html", token=token, address=link.address, done=False)


@bp.route("/account/email/confirm/<token>", methods=["POST"])
def email_confirm_post(token: str) -> Response:
    outcome = contacts.confirm_email(token)
    if isinstance(outcome, Refused):
        return error_page(outcome.message, outcome.status)
    return _page("email_confirm.html", token="", address=outcome.email, done=True)


# ---------------------------------------------------------------------- after registration
@bp.route("/register/confirm", methods=["GET"])
def confirm_contacts() -> Response:
    found = _signed_in()
    if isinstance(found, Response):
        return found
    return _confirm_page(found[0])


def _confirm_page(
    user: User, *, error: str | None = None, info: str | None = None, status: int = 200
) -> Response:
    pending = selfserve.pending_phone(user)
    return _page(
        "contacts_confirm.html",
        status,
        user=user,
        phone=selfserve.mask_phone(pending) if pending else None,
        email=contacts.pending_email(user) if not user.email_verified else None,
        ix=request.values.get("ix", "")[:32768],
        error=error,
        info=info,
        next=_continue(),
    )


def _continue() -> str:
    ix = request.values.get("ix", "")[:32768]
    return url_for("oidc.resume", ix=ix) if ix else url_for("account.home")


@bp.route("/register/confirm", methods=["POST"])
def confirm_contacts_post() -> Response:
    found = _signed_in()
    if isinstance(found, Response):
        return found
    user = found[0]
    if request.form.get("action") == "resend":
        pending = selfserve.pending_phone(user) or user.phone or ""
        outcome = selfserve.start_phone_change(user, pending)
        if isinstance(outcome, Refused):
            return _confirm_page(user, error=outcome.message, status=outcome.status)
        return _confirm_page(user, info=outcome[1])
    refused = selfserve.verify_phone_change(user, request.form.get("code", "")[:64])
    if refused is not None:
        return _confirm_page(user, error=refused.message, status=refused.status)
    return see_other(safe_next(_continue(), url_for("account.home")))


# ---------------------------------------------------------------------- close (注销)
@bp.route("/account/close", methods=["GET"])
def close() -> Response:
    found = _signed_in()
    if isinstance(found, Response):
        return found
    return _page("account_close.html", user=found[0], days=rights.cooling_days(), error=None)


@bp.route("/account/close", methods=["POST"])
def close_post() -> Response:
    found = _recent(url_for("rights.close"))
    if isinstance(found, Response):
        return found
    user = found[0]
    if request.form.get("confirm") != "yes":
        error = _("Tick the box to confirm that you want to close your account.")
        return _page("account_close.html", 400, user=user, days=rights.cooling_days(), error=error)
    when = rights.request_closing(user)
    resp = _page("account_closing.html", when=when)
    clear_session_cookie(resp)
    return resp

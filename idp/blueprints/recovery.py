"""Pages of the forgotten-password flow (忘记密码); the decisions are in
:mod:`idp.interaction.recovery`.

Every form carries a CSRF token, every POST answers 303 on success, the POSTs are rate-limited
per address (:mod:`.guards`), and no page says whether an account matched.  The e-mailed link
is exchanged for a proof in the browser's session and redirected away at once, so the token
never stays in the address bar, the history or a ``Referer``.
"""

from __future__ import annotations

from flask import Blueprint, make_response, render_template, request, url_for
from flask_babel import gettext as _
from werkzeug.wrappers import Response

from idp.blueprints.responses import error_page, see_other
from idp.interaction import recovery
from idp.interaction.login import Refused
from idp.interaction.self_service import password_minimum

bp = Blueprint("recovery", __name__)


def _page(template: str, status: int = 200, retry_after: int = 0, **values: object) -> Response:
    resp = make_response(render_template(template, **values), status)
    resp.headers["Cache-Control"] = "no-store"
    if retry_after:
        resp.headers["Retry-After"] = str(retry_after)
    return resp


def _refused(template: str, refused: Refused, **values: object) -> Response:
    return _page(
        template, refused.status, retry_after=refused.retry_after, error=refused.message, **values
    )


# ---------------------------------------------------------------------- step 1
@bp.route("/password/forgot", methods=["GET"])
def forgot() -> Response:
    return _page("password_forgot.html", step="identify", login="")


@bp.route("/password/forgot", methods=["POST"])
def forgot_post() -> Response:
    login = request.form.get("login", "")
    outcome = recovery.start(login, request.form.get("id_number", ""))
    if isinstance(outcome, Refused):
        shown = login[:320] if login.isprintable() else ""
        return _refused("password_forgot.html", outcome, step="identify", login=shown)
    if outcome == "sms":
        return see_other(url_for("recovery.code"))
    return see_other(url_for("recovery.sent"))


@bp.route("/password/forgot/sent", methods=["GET"])
def sent() -> Response:
    return _page("password_forgot.html", step="sent")


# ---------------------------------------------------------------------- step 2
@bp.route("/password/forgot/code", methods=["GET"])
def code() -> Response:
    phone = recovery.masked_sms_destination()
    if phone is None:
        return see_other(url_for("recovery.forgot"), code=302)
    return _page("password_forgot.html", step="code", phone=phone)


@bp.route("/password/forgot/code", methods=["POST"])
def code_post() -> Response:
    outcome = recovery.check_sms(request.form.get("code", ""))
    if isinstance(outcome, Refused):
        phone = recovery.masked_sms_destination()
        if phone is None:
            return see_other(url_for("recovery.forgot"))
        return _refused("password_forgot.html", outcome, step="code", phone=phone)
    return see_other(url_for("recovery.reset"))


@bp.route("/password/reset/<token>", methods=["GET"])
def email_link(token: str) -> Response:
    if recovery.open_link(token) is None:
        return error_page(_("This link has expired or was already used. Ask for a new one."), 400)
    return see_other(url_for("recovery.reset"), code=302)


# ---------------------------------------------------------------------- step 3
def _reset_page(
    error: str | None = None, status: int = 200, retry_after: int = 0, info: str | None = None
) -> Response:
    found = recovery.current_proof()
    if found is None:
        return see_other(url_for("recovery.forgot"), code=302 if request.method == "GET" else 303)
    proof, user = found
    return _page(
        "password_reset.html",
        status,
        retry_after=retry_after,
        done=False,
        error=error,
        info=info,
        factor=recovery.second_factor_for(user, proof),
        minimum=password_minimum(user),
    )


@bp.route("/password/reset", methods=["GET"])
def reset() -> Response:
    return _reset_page()


@bp.route("/password/reset", methods=["POST"])
def reset_post() -> Response:
    found = recovery.current_proof()
    if found is None:
        return see_other(url_for("recovery.forgot"))
    proof, user = found
    form = request.form
    if form.get("action") == "sms_send":
        ok, message, wait = recovery.send_second_factor_sms(user, proof)
        if not ok:
            return _reset_page(message, 429 if wait else 400, wait or 0)
        return _reset_page(info=message)
    refused = recovery.complete(
        proof,
        user,
        new=form.get("new_password", ""),
        confirm=form.get("new_password_confirm", ""),
        method=form.get("method", ""),
        code=form.get("code", ""),
    )
    if refused is not None:
        return _reset_page(refused.message, refused.status, refused.retry_after)
    return see_other(url_for("recovery.done"))


@bp.route("/password/done", methods=["GET"])
def done() -> Response:
    return _page("password_reset.html", done=True)

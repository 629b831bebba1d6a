"""Pages of SMS-code login (短信验证码登录); the decisions are in :mod:`idp.interaction.sms_login`.

Three steps: the number (a code is sent only to an account that may use it; the answer is
the same either way), the code, and, where a second factor is needed, the password.  Every
POST carries a CSRF token, answers 303 on success and is rate-limited per address.
"""

from __future__ import annotations

from flask import Blueprint, make_response, render_template, request, url_for
from werkzeug.wrappers import Response

from idp.blueprints.login import MAX_IX, after_factors, closing_page, ix_context
from idp.blueprints.responses import see_other
from idp.interaction import login as signin
from idp.interaction import mfa, sms_login
from idp.interaction.login import Refused
from idp.interaction.sessions import ACR_PASSWORD, acr_rank
from idp.interaction.web import clear_session_cookie
from idp.oauth.authorization import required_acr
from idp.storage.models import User, utcnow

bp = Blueprint("sms_login", __name__)


def _ix() -> str:
    return request.values.get("ix", "")[:MAX_IX]


def _page(step: str, status: int = 200, retry_after: int = 0, **values: object) -> Response:
    body = render_template("sms_login.html", step=step, ix=_ix(), **values)
    resp = make_response(body, status)
    resp.headers["Cache-Control"] = "no-store"
    if retry_after:
        resp.headers["Retry-After"] = str(retry_after)
    return resp


def _refused(step: str, refused: Refused, **values: object) -> Response:
    return _page(step, refused.status, refused.retry_after, error=refused.message, **values)


@bp.route("/login/sms", methods=["POST"])
def send() -> Response:
    phone = request.form.get("phone", "")
    outcome = sms_login.send_code(phone)
    if isinstance(outcome, Refused):
        shown = phone[:40] if phone.isprintable() else ""
        return _refused("phone", outcome, phone=shown)
    return see_other(url_for("sms_login.code", ix=_ix() or None))


@bp.route("/login/sms/code", methods=["GET"])
def code() -> Response:
    masked = sms_login.pending_number()
    if masked is None:
        return see_other(url_for("login.login_form", ix=_ix() or None), code=302)
    return _page("code", masked=masked)


@bp.route("/login/sms/code", methods=["POST"])
def code_post() -> Response:
    outcome = sms_login.check_code(request.form.get("code", ""))
    if isinstance(outcome, Refused):
        masked = sms_login.pending_number()
        if masked is None:
            return see_other(url_for("login.login_form", ix=_ix() or None))
        return _refused("code", outcome, masked=masked)
    user, ix = outcome.user, _ix()
    factors = {"sms": outcome.at}
    wanted = required_acr(ix_context(ix), user)
    if acr_rank(wanted) > acr_rank(ACR_PASSWORD):
        # One possession factor, never two: the password is asked as well (an account being
        # closed is offered the cancel only then, with both factors proven).
        sms_login.keep_for_password(outcome)
        return see_other(url_for("sms_login.password", ix=ix or None))
    if user.status == "closing":
        return closing_page(user, factors, ix)
    return after_factors(user, factors, ix)


@bp.route("/login/sms/password", methods=["GET"])
def password() -> Response:
    if sms_login.waiting_for_password() is None:
        return see_other(url_for("login.login_form", ix=_ix() or None), code=302)
    return _page("password")


@bp.route("/login/sms/password", methods=["POST"])
def password_post() -> Response:
    outcome = sms_login.check_password(request.form.get("password", ""))
    if isinstance(outcome, Refused):
        if sms_login.waiting_for_password() is None:
            return see_other(url_for("login.login_form", ix=_ix() or None))
        return _refused("password", outcome)
    user, ix = outcome.user, _ix()
    factors = {"sms": outcome.at, "pwd": int(utcnow().timestamp())}
    if user.status == "closing":
        return closing_page(user, factors, ix)
    return _beyond(user, factors, ix)


def _beyond(user: User, factors: dict[str, int], ix: str) -> Response:
    """Password and SMS code: two factors; a higher level continues at the second-factor page
    with the password counted (a security key there reaches it)."""
    wanted = required_acr(ix_context(ix), user)
    if acr_rank(wanted) > acr_rank(mfa.acr_for(factors)):
        assert wanted is not None
        signin.begin_pending(user, wanted)
        resp = see_other(url_for("second_factor.challenge", ix=ix or None))
        clear_session_cookie(resp)  # the browser's old session ended with the new login
        return resp
    return after_factors(user, factors, ix)

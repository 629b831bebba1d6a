"""The account home page, the language switch, and the template filters people's pages use."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, make_response, redirect, render_template, request, url_for
from flask_babel import gettext as _
from werkzeug.wrappers import Response

from idp import context
from idp.blueprints.responses import error_page, safe_next, see_other
from idp.interaction import account_view
from idp.interaction.sessions import ACR_MFA, ACR_PASSWORD, ACR_PHISHING_RESISTANT
from idp.interaction.web import current_sso, current_user_row

bp = Blueprint("account", __name__)

LOCALES = ("zh_CN", "en")
BEIJING = ZoneInfo("Asia/Shanghai")


@bp.route("/", methods=["GET"])
@bp.route("/account", methods=["GET"])
def home() -> Response:
    user = current_user_row()
    if user is None:
        return see_other(url_for("login.login_form"), code=302)
    sso = current_sso()
    body = render_template(
        "account.html",
        user=user,
        sso=sso,
        services=account_view.services_of(user),
        sessions=account_view.sessions_of(user, sso),
        notice=request.args.get("done", "")[:20],
    )
    return make_response(body)


@bp.route("/account/services/<client_id>/withdraw", methods=["POST"])
def withdraw_consent(client_id: str) -> Response:
    """Withdraw a consent: the service's grants and tokens are revoked."""
    user = current_user_row()
    if user is None:
        return see_other(url_for("login.login_form"))
    if not account_view.withdraw(user, client_id):
        return error_page(_("Unknown service."), 404)
    return see_other(url_for("account.home", done="withdrawn"))


@bp.route("/account/sessions/<sid>/end", methods=["POST"])
def end_session(sid: str) -> Response:
    """End another of the person's sessions; its services hear of it (back-channel logout)."""
    user, sso = current_user_row(), current_sso()
    if user is None or sso is None:
        return see_other(url_for("login.login_form"))
    if not account_view.end_other_session(user, sso, sid):
        return error_page(_("This session cannot be ended here."), 404)
    return see_other(url_for("account.home", done="ended"))


@bp.route("/account/sessions/end-others", methods=["POST"])
def end_other_sessions() -> Response:
    """End every other session at once; their services hear of it (back-channel logout)."""
    user, sso = current_user_row(), current_sso()
    if user is None or sso is None:
        return see_other(url_for("login.login_form"))
    account_view.end_all_other_sessions(user, sso)
    return see_other(url_for("account.home", done="ended"))


@bp.route("/locale/<lang>", methods=["POST"])
def set_locale(lang: str) -> Response:
    resp = redirect(safe_next(request.form.get("next"), "/"), code=303)
    if lang in LOCALES:
        resp.set_cookie(
            "yitong_lang",
            lang,
            max_age=31536000,
            samesite="Lax",
            httponly=True,
            secure=context.settings().issuer.startswith("https://"),
        )
    return resp


def level_name(acr: str | None) -> str:
    names: dict[str, str] = {
        ACR_PASSWORD: _("password"),
        ACR_MFA: _("two-step verification"),
        ACR_PHISHING_RESISTANT: _("security key or passkey"),
    }
    return str(names.get(acr or "", acr or ""))


@bp.app_template_filter("yt_level")
def _level_filter(acr: str | None) -> str:
    return level_name(acr)


@bp.app_template_filter("yt_beijing")
def _beijing_filter(value: dt.datetime | None) -> str:
    """A stored (UTC) time as people in China read it: Beijing time, to the minute."""
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M")


@bp.app_template_filter("yt_json")
def _json_filter(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)

"""The account home page, the language switch, and the template filters people's pages use."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, make_response, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import select
from werkzeug.wrappers import Response

from idp import context
from idp.blueprints.responses import safe_next, see_other
from idp.interaction.sessions import ACR_MFA, ACR_PASSWORD, ACR_PHISHING_RESISTANT
from idp.interaction.web import current_sso, current_user_row
from idp.storage.models import Grant

bp = Blueprint("account", __name__)

LOCALES = ("zh_CN", "en")


@bp.route("/", methods=["GET"])
@bp.route("/account", methods=["GET"])
def home() -> Response:
    user = current_user_row()
    if user is None:
        return see_other(url_for("login.login_form"), code=302)
    grants = (
        context.db_session()
        .scalars(
            select(Grant)
            .where(Grant.user_id == user.id, Grant.revoked_at.is_(None))
            .order_by(Grant.created_at.desc())
            .limit(20)
        )
        .all()
    )
    body = render_template("account.html", user=user, sso=current_sso(), grants=grants)
    return make_response(body)


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


@bp.app_template_filter("yt_json")
def _json_filter(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)

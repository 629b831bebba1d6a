"""The account home page, the language switch, and the template filters people's pages use."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, make_response, redirect, render_template, request, url_for
from flask_babel import get_locale
from flask_babel import gettext as _
from werkzeug.wrappers import Response

from idp import context
from idp.blueprints.responses import error_page, safe_next, see_other
from idp.interaction import account_view
from idp.interaction.sessions import ACR_MFA, ACR_PASSWORD, ACR_PHISHING_RESISTANT
from idp.interaction.web import current_sso, current_user_row
from idp.messages import N_

bp = Blueprint("account", __name__)

LOCALES = ("zh_CN", "en")
DISPLAY_MODES = ("elder", "standard")
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
    """The page language, remembered by this browser."""
    return _remember("yitong_lang", lang if lang in LOCALES else None)


@bp.route("/display/<mode>", methods=["POST"])
def set_display(mode: str) -> Response:
    """Elder-friendly mode (适老化: larger text, higher contrast, one column) or the standard
    pages, remembered by this browser; every page offers the switch (base.html)."""
    return _remember("yitong_display", mode if mode in DISPLAY_MODES else None)


def _remember(cookie: str, value: str | None) -> Response:
    """Back to the same page (``next``, same site only) with a year-long preference cookie."""
    resp = redirect(safe_next(request.form.get("next"), "/"), code=303)
    if value is not None:
        resp.set_cookie(
            cookie,
            value,
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


#: The default mandate roles (setting ``mandate_roles``) in the page's language; a role an
#: operator adds is shown as configured.
ROLE_LABELS = {
    "agent": N_("agent"),
    "finance": N_("finance"),
    "social-security": N_("social security"),
    "company-admin": N_("company admin"),
}


@bp.app_template_filter("yt_role")
def _role_filter(role: str) -> str:
    return str(_(ROLE_LABELS[role])) if role in ROLE_LABELS else role


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


#: What people read for the audit actions of their own activity (idp/audit.py names).
ACTIVITY: dict[str, str] = {
    "login.success": N_("Signed in"),
    "login.failure": N_("Failed sign-in"),
    "login.unlock": N_("Account unlocked"),
    "user.register": N_("Account created"),
    "user.password_change": N_("Password changed"),
    "user.password_reset": N_("Password reset"),
    "user.unlock": N_("Account unlocked"),
    "user.name_change": N_("Name corrected"),
    "user.phone_change": N_("Mobile number changed"),
    "user.email_confirm": N_("E-mail address confirmed"),
    "user.email_link_sent": N_("Confirmation link sent"),
    "user.data_export": N_("Copy of your data downloaded"),
    "user.close_request": N_("Closing of the account requested"),
    "user.close_cancel": N_("Closing of the account cancelled"),
    "user.contact_released": N_("Unconfirmed contact detail removed"),
    "consent.grant": N_("Consent given to a service"),
    "consent.withdraw": N_("Consent withdrawn"),
    "session.end_other": N_("Another session ended"),
    "mfa.totp.enrol": N_("Authenticator app set up"),
    "mfa.totp.remove": N_("Authenticator app removed"),
    "mfa.webauthn.add": N_("Security key or passkey added"),
    "mfa.webauthn.remove": N_("Security key or passkey removed"),
    "mfa.webauthn.use": N_("Security key or passkey used"),
    "mfa.recovery.generate": N_("New recovery codes made"),
    "mfa.failure": N_("Wrong second-factor code"),
    "mfa.sms_sent": N_("Sign-in code sent by SMS"),
}
#: Sign-in methods (RFC 8176 ``amr`` values) and identity-verification methods, in words.
METHODS: dict[str, str] = {
    "pwd": N_("password"),
    "otp": N_("authenticator app"),
    "sms": N_("SMS code"),
    "hwk": N_("security key"),
    "swk": N_("passkey"),
    "user": N_("with PIN or fingerprint"),
    "fed": N_("another identity provider"),
    "self-declared": N_("declared by yourself"),
}


@bp.app_template_filter("yt_activity")
def _activity_filter(action: str) -> str:
    """An audit action in words (an action without a label: "other activity")."""
    return str(_(ACTIVITY[action]) if action in ACTIVITY else _("Other account activity"))


@bp.app_template_filter("yt_methods")
def _methods_filter(methods: Any) -> str:
    """Sign-in (``amr``) or verification methods in words; ``mfa`` (implied) is left out."""
    values = [methods] if isinstance(methods, str) else list(methods or ())
    words = [_(METHODS[m]) if m in METHODS else _("other method") for m in values if m != "mfa"]
    return ("、" if str(get_locale()) == "zh_CN" else ", ").join(words)

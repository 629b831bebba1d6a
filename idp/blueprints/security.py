"""The account security page: second factors, phone, password, recent sign-ins.

Every change needs a recent authentication (checklist 68): past five minutes the person
confirms the password first (:func:`reauth`, whose ``next`` goes through the one
:func:`~idp.blueprints.responses.safe_next`).  Decisions and writes are in
:mod:`idp.interaction.self_service`.
"""

from __future__ import annotations

from flask import Blueprint, jsonify, make_response, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import select
from werkzeug.wrappers import Response

from idp import context
from idp.blueprints.responses import json_error, safe_next, see_other
from idp.blueprints.second_factor import json_body, render_enrolment, show_recovery_codes
from idp.errors import AccessDeniedError, LoginRequiredError
from idp.interaction import mfa
from idp.interaction import self_service as selfserve
from idp.interaction import webauthn as wa
from idp.interaction.levels import user_factors
from idp.interaction.login import Refused
from idp.interaction.web import current_sso, current_user_row
from idp.storage.models import AuditEvent, Grant, SsoSession, User

bp = Blueprint("security", __name__)


def _signed_in() -> tuple[User, SsoSession] | None:
    user, sso = current_user_row(), current_sso()
    if user is None or sso is None:
        return None
    return user, sso


def _security_page(
    user: User,
    sso: SsoSession,
    *,
    message: str | None = None,
    error: str | None = None,
    status: int = 200,
    retry_after: int = 0,
) -> Response:
    db_session = context.db_session()
    policies = context.services().policies
    signins = list(
        db_session.scalars(
            select(AuditEvent)
            .where(AuditEvent.action == "login.success", AuditEvent.actor == user.id)
            .order_by(AuditEvent.seq.desc())
            .limit(10)
        )
    )
    grants = db_session.scalars(
        select(Grant)
        .where(Grant.user_id == user.id, Grant.revoked_at.is_(None))
        .order_by(Grant.created_at.desc())
        .limit(20)
    ).all()
    body = render_template(
        "account_security.html",
        user=user,
        sso=sso,
        grants=grants,
        factors=user_factors(user),
        signins=signins,
        required=mfa.mfa_required_by_policy(policies, user),
        recent=selfserve.recently_authenticated(sso),
        sms_allowed=mfa.sms_allowed(policies, user),
        message=message,
        error=error,
    )
    resp = make_response(body, status)
    resp.headers["Cache-Control"] = "no-store"
    if retry_after:
        resp.headers["Retry-After"] = str(retry_after)
    return resp


def _refused_page(user: User, sso: SsoSession, refused: Refused) -> Response:
    return _security_page(
        user, sso, error=refused.message, status=refused.status, retry_after=refused.retry_after
    )


def _done() -> Response:
    return see_other(url_for("security.security", done=1))


@bp.route("/account/security", methods=["GET"])
def security() -> Response:
    found = _signed_in()
    if found is None:
        return see_other(url_for("login.login_form"), code=302)
    return _security_page(*found, message=request.args.get("done") and _("Saved."))


@bp.route("/account/security/reauth", methods=["GET", "POST"])
def reauth() -> Response:
    found = _signed_in()
    if found is None:
        return see_other(url_for("login.login_form"), code=302)
    user, sso = found
    target = safe_next(request.values.get("next"), url_for("security.security"))
    if request.method == "GET":
        return make_response(render_template("reauth.html", next=target, error=None))
    if not selfserve.reauthenticate(user, sso, request.form.get("password", "")):
        body = render_template("reauth.html", next=target, error=_("The password is wrong."))
        return make_response(body, 401)
    return see_other(target)


def _guarded() -> tuple[User, SsoSession] | Response:
    """Signed in, and recently authenticated; else the JSON error or the way there."""
    found = _signed_in()
    if found is None:
        if request.is_json:
            return json_error(
                LoginRequiredError("sign in first"), status=401, message=_("Sign in first.")
            )
        return see_other(url_for("login.login_form"))
    if not selfserve.recently_authenticated(found[1]):
        if request.is_json:
            return json_error(
                AccessDeniedError("a recent authentication is required"),
                status=403,
                message=_("Confirm your password first."),
            )
        return see_other(url_for("security.reauth", next=url_for("security.security")))
    return found


# ---------------------------------------------------------------------- TOTP and recovery codes
@bp.route("/account/security/totp", methods=["POST"])
def totp_start() -> Response:
    found = _guarded()
    if isinstance(found, Response):
        return found
    user, _sso = found
    return render_enrolment(user, selfserve.new_enrolment(user))


@bp.route("/account/security/totp/confirm", methods=["POST"])
def totp_confirm() -> Response:
    found = _guarded()
    if isinstance(found, Response):
        return found
    user, sso = found
    outcome = selfserve.confirm_totp(user, request.form.get("code", "")[:64])
    if isinstance(outcome, Refused):
        secret = selfserve.enrolment_secret(user)
        if outcome.status == 401 and secret is not None:
            return render_enrolment(user, secret, error=outcome.message, status=401)
        return _refused_page(user, sso, outcome)
    if outcome:
        return show_recovery_codes(outcome, _done())
    return _done()


@bp.route("/account/security/totp/delete", methods=["POST"])
def totp_delete() -> Response:
    found = _guarded()
    if isinstance(found, Response):
        return found
    user, sso = found
    if not selfserve.removal_allowed(user, totp=True):
        return _refused_page(user, sso, selfserve.must_keep_a_factor())
    selfserve.remove_totp(user)
    return _done()


@bp.route("/account/security/recovery", methods=["POST"])
def recovery_generate() -> Response:
    found = _guarded()
    if isinstance(found, Response):
        return found
    user, _sso = found
    codes = selfserve.new_recovery_codes(user)
    return show_recovery_codes(codes, see_other(url_for("security.security")))


# ---------------------------------------------------------------------- security keys
@bp.route("/account/security/webauthn/options", methods=["POST"])
def webauthn_register_options() -> Response:
    found = _guarded()
    if isinstance(found, Response):
        return found
    user, _sso = found
    options = wa.registration_options(user, user_factors(user).webauthn)
    return Response(options, mimetype="application/json", headers={"Cache-Control": "no-store"})


@bp.route("/account/security/webauthn", methods=["POST"])
def webauthn_register() -> Response:
    found = _guarded()
    if isinstance(found, Response):
        return found
    user, _sso = found
    body = json_body()
    name = str(body.get("name") or "").strip()[:100] or _("Security key")
    try:
        row = wa.register(user, body.get("credential"), name)
    except wa.RegistrationRefused as exc:
        return json_error(
            AccessDeniedError("the security key was not registered"),
            status=exc.status,
            message=exc.message,
        )
    selfserve.added_security_key(user, row)
    return jsonify({"ok": True, "redirect": url_for("security.security", done=1)})


@bp.route("/account/security/webauthn/delete", methods=["POST"])
def webauthn_delete() -> Response:
    found = _guarded()
    if isinstance(found, Response):
        return found
    user, sso = found
    refused = selfserve.remove_security_key(user, request.form.get("credential", ""))
    if refused is not None:
        return _refused_page(user, sso, refused)
    return _done()


# ---------------------------------------------------------------------- phone and password
@bp.route("/account/security/phone", methods=["POST"])
def phone_start() -> Response:
    found = _guarded()
    if isinstance(found, Response):
        return found
    user, sso = found
    outcome = selfserve.start_phone_change(user, request.form.get("phone", ""))
    if isinstance(outcome, Refused):
        return _refused_page(user, sso, outcome)
    masked, message = outcome
    return make_response(
        render_template("phone_verify.html", phone=masked, info=message, error=None)
    )


@bp.route("/account/security/phone/verify", methods=["POST"])
def phone_verify() -> Response:
    found = _guarded()
    if isinstance(found, Response):
        return found
    user, sso = found
    refused = selfserve.verify_phone_change(user, request.form.get("code", "")[:64])
    if refused is None:
        return _done()
    if refused.status == 401:
        body = render_template(
            "phone_verify.html",
            phone=selfserve.mask_phone(selfserve.pending_phone(user)),
            info=None,
            error=refused.message,
        )
        return make_response(body, 401)
    return _refused_page(user, sso, refused)


@bp.route("/account/security/password", methods=["GET", "POST"])
def password_change() -> Response:
    """Change the password: the current one is always required (ASVS 6.2.3, checklist 79)."""
    found = _signed_in()
    if found is None:
        return see_other(url_for("login.login_form"), code=302)
    user, sso = found

    def page(error: str | None, status: int) -> Response:
        body = render_template(
            "password_change.html",
            error=error,
            minimum=selfserve.password_minimum(user),
            is_staff=user.kind == "staff",
        )
        return make_response(body, status)

    if request.method == "GET":
        return page(None, 200)
    form = request.form
    refused = selfserve.change_password(
        user,
        sso,
        current=form.get("current_password", ""),
        new=form.get("new_password", ""),
        confirm=form.get("new_password_confirm", ""),
        sign_out_others=bool(form.get("sign_out_others")),
    )
    if refused is not None:
        return page(refused.message, refused.status)
    return _done()

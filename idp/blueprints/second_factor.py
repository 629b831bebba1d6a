"""Pages for second factors: the login challenge, step-up, enrolment at login, passkey login.

Specs: RFC 6238 (TOTP), RFC 8176 (``amr``), W3C WebAuthn Level 2, NIST SP 800-63B-4, OpenID
Connect Core §3.1.2.1 (``acr_values``) and §5.5.1.1 (an essential ``acr`` claim).  The pending
login, the attempt counters and the session changes are in :mod:`idp.interaction.login`; the
WebAuthn ceremonies in :mod:`idp.interaction.webauthn`.

**Step-up** (checklist 18, 75) keeps the SSO session and asks only for the factor it lacks;
the session's ``acr``/``amr``/``factors`` are raised and its cookie value is replaced.

Every form is CSRF-protected (Flask-WTF; JSON calls send ``X-CSRFToken``), every credential
POST answers 303, and these endpoints are rate-limited per address (:mod:`.guards`).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, make_response, render_template, request, url_for
from flask_babel import gettext as _
from werkzeug.wrappers import Response

from idp import audit, context
from idp.blueprints.login import (
    MAX_IX,
    cancel,
    finish_login,
    ix_context,
    keep_closing_factors,
    restart_login,
)
from idp.blueprints.responses import error_page, json_error, see_other
from idp.errors import AccessDeniedError, InvalidRequestError, SlowDownError
from idp.interaction import login as signin
from idp.interaction import mfa
from idp.interaction import self_service as selfserve
from idp.interaction import webauthn as wa
from idp.interaction.levels import required_acr_for, user_factors
from idp.interaction.sessions import ACR_MFA, ACR_PHISHING_RESISTANT, acr_rank
from idp.interaction.web import current_sso, current_user_row, set_session_cookie
from idp.storage.models import User, utcnow

bp = Blueprint("second_factor", __name__)


def _expired() -> str:
    return str(_("Your sign-in has expired. Sign in again."))


# ---------------------------------------------------------------------- the challenge page
def _offers(p: signin.Pending, user: User) -> dict[str, bool]:
    uf = user_factors(user)
    if p.target == ACR_PHISHING_RESISTANT:
        return {"webauthn": bool(uf.webauthn), "totp": False, "sms": False, "recovery": False}
    return {
        "webauthn": bool(uf.webauthn),
        "totp": uf.totp,
        "sms": uf.sms_phone is not None and context.services().sms_sender is not None,
        "recovery": uf.recovery_left > 0,
    }


def _render_challenge(
    p: signin.Pending,
    user: User,
    ix: str,
    *,
    error: str | None = None,
    info: str | None = None,
    status: int = 200,
    retry_after: int | None = None,
) -> Response:
    offers = _offers(p, user)
    if not any(offers.values()):
        return _cannot_reach(p, user, ix)
    action = (
        url_for("second_factor.step_up")
        if p.mode == "step_up"
        else url_for("second_factor.challenge_post")
    )
    body = render_template(
        "mfa_challenge.html",
        ix=ix,
        offers=offers,
        action=action,
        mode=p.mode,
        error=error,
        info=info,
        phone=selfserve.mask_phone(user_factors(user).sms_phone),
        target=p.target,
        user=user,
    )
    resp = make_response(body, status)
    if retry_after:
        resp.headers["Retry-After"] = str(retry_after)
    return resp


def _cannot_reach(p: signin.Pending, user: User, ix: str) -> Response:
    """No factor the user has reaches the level: enrol (login, MFA) or explain."""
    if p.mode == "login" and p.target == ACR_MFA:
        return render_enrolment(user, selfserve.enrolment_or_new(user), ix=ix, at_login=True)
    body = render_template("mfa_unavailable.html", ix=ix, target=p.target, mode=p.mode)
    return make_response(body, 403)


@bp.route("/login/mfa", methods=["GET"])
def challenge() -> Response:
    ix = request.args.get("ix", "")[:MAX_IX]
    p = signin.load_pending("login")
    user = signin.pending_user(p) if p else None
    if p is None or user is None:
        return restart_login(ix, _expired())
    return _render_challenge(p, user, ix)


@bp.route("/login/mfa", methods=["POST"])
def challenge_post() -> Response:
    return _challenge_post("login")


def _step_up_session_matches(p: signin.Pending) -> bool:
    sso = current_sso()
    return sso is not None and sso.id == p.sid and sso.user_id == p.uid


def _challenge_post(mode: str) -> Response:
    """Check a submitted TOTP, recovery or SMS code for the pending login or step-up."""
    ix = request.form.get("ix", "")[:MAX_IX]
    p = signin.load_pending(mode)
    if p is None:
        if mode == "step_up":
            return see_other(url_for("second_factor.step_up", ix=ix or None))
        return restart_login(ix, _expired())
    user = signin.pending_user(p)
    if user is None or (mode == "step_up" and not _step_up_session_matches(p)):
        return restart_login(ix, _expired())
    method = request.form.get("method", "")
    if method == "cancel":
        signin.drop_pending()
        return cancel(ix)
    if method == "sms_send":
        return _send_login_sms(p, user, ix)
    code = request.form.get("code", "")[:64]
    if method not in ("totp", "recovery", "sms") or not _offers(p, user).get(method):
        return _render_challenge(
            p, user, ix, error=_("Choose a way to confirm it is you."), status=400
        )
    attempt = signin.attempt_second_factor(p, user, lambda: signin.code_factor(user, method, code))
    if attempt.factor is None:
        return _refusal_page(p, user, ix, attempt)
    return _finish(p, user, ix, {attempt.factor})


def _refusal_page(p: signin.Pending, user: User, ix: str, attempt: signin.Attempt) -> Response:
    if attempt.restart or attempt.refused is None:
        return restart_login(ix, _("Too many wrong codes. Sign in again."))
    refused = attempt.refused
    return _render_challenge(
        p,
        user,
        ix,
        error=refused.message,
        status=refused.status,
        retry_after=refused.retry_after or None,
    )


def _finish(p: signin.Pending, user: User, ix: str, new_factors: set[str]) -> Response:
    """The second factor was proven: complete the login, or raise the session (step-up)."""
    if not signin.complete_pending(p):
        return restart_login(ix, _expired())  # a replayed pending login (issue 14 item 5)
    if p.mode == "step_up":
        sso = current_sso()
        if sso is None or sso.id != p.sid or sso.user_id != user.id:
            return restart_login(ix, _expired())
        token = signin.raise_session(sso.id, user, new_factors)
        target = url_for("oidc.resume", ix=ix) if ix else url_for("security.security")
        resp = see_other(target)
        set_session_cookie(resp, token)
        return resp
    now = int(utcnow().timestamp())
    factors = {"pwd": int(p.pt), **dict.fromkeys(new_factors, now)}
    return finish_login(
        user, amr=mfa.amr_for(factors), ix=ix, acr=mfa.acr_for(factors), factors=factors
    )


def _send_login_sms(p: signin.Pending, user: User, ix: str) -> Response:
    if not _offers(p, user).get("sms") or not user.phone:
        return _render_challenge(
            p, user, ix, error=_("SMS codes are not available for this account."), status=400
        )
    ok, message, wait = selfserve.send_sms_code(user.phone, "mfa", user.id)
    if not ok:
        return _render_challenge(
            p, user, ix, error=message, status=429 if wait else 503, retry_after=wait
        )
    return _render_challenge(p, user, ix, info=message)


# ---------------------------------------------------------------------- step-up
@bp.route("/login/step-up", methods=["GET", "POST"])
def step_up() -> Response:
    """Ask a signed-in user only for the factor the request still needs (checklist 18)."""
    if request.method == "POST":
        return _challenge_post("step_up")
    ix = request.args.get("ix", "")[:MAX_IX]
    sso = current_sso()
    user = current_user_row()
    if sso is None or user is None:
        return see_other(url_for("login.login_form", ix=ix or None), code=302)
    ctx = ix_context(ix) if ix else None
    if ix and ctx is None:
        return error_page(_("The sign-in page has expired; start again."), 400)
    wanted = request.args.get("acr", "")
    required = required_acr_for(ctx, user) if ctx is not None else wanted or None
    if required is None or acr_rank(required) <= 0 or acr_rank(sso.acr) >= acr_rank(required):
        target = url_for("oidc.resume", ix=ix) if ix else url_for("security.security")
        return see_other(target, code=302)
    p = signin.load_pending("step_up")
    if p is None or p.sid != sso.id or p.uid != user.id or p.target != required:
        p = signin.new_pending(user, "step_up", required, pt=sso.auth_time.timestamp(), sid=sso.id)
    return _render_challenge(p, user, ix)


# ---------------------------------------------------------------------- enrolment at login
def render_enrolment(
    user: User,
    secret: str,
    *,
    ix: str = "",
    at_login: bool = False,
    error: str | None = None,
    status: int = 200,
) -> Response:
    """The TOTP set-up page (QR code and secret), at login or from the security page."""
    action = "second_factor.enrol_at_login" if at_login else "security.totp_confirm"
    body = render_template(
        "totp_enrol.html",
        qr=selfserve.totp_qr(user, secret),
        secret=secret,
        action=url_for(action),
        ix=ix,
        error=error,
        at_login=at_login,
    )
    resp = make_response(body, status)
    resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.route("/login/mfa/enrol", methods=["POST"])
def enrol_at_login() -> Response:
    """MFA is required but the account has no second factor yet: set up TOTP now."""
    ix = request.form.get("ix", "")[:MAX_IX]
    p = signin.load_pending("login")
    user = signin.pending_user(p) if p else None
    if p is None or user is None:
        return restart_login(ix, _expired())
    if user_factors(user).any_second_factor:
        return see_other(url_for("second_factor.challenge", ix=ix or None))
    secret = selfserve.enrolment_secret(user)
    if secret is None:
        return render_enrolment(user, selfserve.new_enrolment(user), ix=ix, at_login=True)
    code = request.form.get("code", "")[:64]

    def verify() -> str | None:
        return "otp" if selfserve.activate_totp(user, secret, code) else None

    attempt = signin.attempt_second_factor(p, user, verify)
    if attempt.factor is None:
        if attempt.refused is not None and attempt.refused.status == 401:
            wrong = _("The code is wrong. Check the time on your phone.")
            return render_enrolment(user, secret, ix=ix, at_login=True, error=wrong, status=401)
        return _refusal_page(p, user, ix, attempt)
    db_session = context.db_session()
    audit.record(
        db_session,
        "mfa.totp.enrol",
        actor=user.id,
        target=user.id,
        ip=context.client_ip(),
        details={"at_login": True},
    )
    codes = mfa.new_recovery_codes(db_session, context.services().code_secret, user.id)
    db_session.commit()
    return show_recovery_codes(codes, _finish(p, user, ix, {attempt.factor}))


def show_recovery_codes(codes: list[str], continuation: Response) -> Response:
    """Show new recovery codes once, then continue where ``continuation`` redirects."""
    target = continuation.headers.get("Location", url_for("security.security"))
    body = render_template("recovery_codes.html", codes=codes, next=target)
    resp = make_response(body, 200)
    for value in continuation.headers.getlist("Set-Cookie"):
        resp.headers.add("Set-Cookie", value)
    resp.headers["Cache-Control"] = "no-store"
    return resp


# ---------------------------------------------------------------------- WebAuthn
def json_body() -> dict[str, Any]:
    data = request.get_json(silent=True)
    return data if isinstance(data, dict) else {}


def _json_result(resp: Response) -> Response:
    """Turn a redirecting completion into JSON for the page's script (cookies kept)."""
    out = jsonify({"ok": True, "redirect": resp.headers.get("Location")})
    for value in resp.headers.getlist("Set-Cookie"):
        out.headers.add("Set-Cookie", value)
    out.headers["Cache-Control"] = "no-store"
    return out


def _json_refusal(message: str, status: int = 400) -> Response:
    error = AccessDeniedError("not verified") if status in (401, 403) else None
    if status == 429:
        error = SlowDownError("too many attempts")
    return json_error(
        error or InvalidRequestError("the request could not be used"),
        status=status,
        message=message,
    )


@bp.route("/login/mfa/webauthn/options", methods=["POST"])
def mfa_webauthn_options() -> Response:
    mode = "step_up" if json_body().get("mode") == "step_up" else "login"
    p = signin.load_pending(mode)
    user = signin.pending_user(p) if p else None
    if p is None or user is None:
        return _json_refusal(_expired())
    creds = user_factors(user).webauthn
    if not creds:
        return _json_refusal(_("No security key is registered for this account."))
    options = wa.authentication_options(creds, "preferred", "mfa", user.id, pid=p.pid)
    return Response(options, mimetype="application/json", headers={"Cache-Control": "no-store"})


@bp.route("/login/mfa/webauthn", methods=["POST"])
def mfa_webauthn_verify() -> Response:
    body = json_body()
    mode = "step_up" if body.get("mode") == "step_up" else "login"
    ix = str(body.get("ix") or "")[:MAX_IX]
    p = signin.load_pending(mode)
    user = signin.pending_user(p) if p else None
    if p is None or user is None or (mode == "step_up" and not _step_up_session_matches(p)):
        return _json_refusal(_expired())
    credential = body.get("credential")
    if not isinstance(credential, dict):
        return _json_refusal(_("The security key's answer was not understood."))
    challenge = wa.take_challenge("mfa", user.id)
    row = wa.credential_row(credential, user.id)
    if challenge is None or row is None:
        return _json_refusal(_("The security key could not be verified. Try again."))
    proven: set[str] = set()

    def verify() -> str | None:
        factors = wa.verify_assertion(credential, challenge, row, require_uv=False)
        if not factors:
            return None
        proven.update(factors)
        return "hwk" if "hwk" in factors else "swk"

    attempt = signin.attempt_second_factor(p, user, verify)
    if attempt.factor is None:
        if attempt.refused is not None and attempt.refused.status == 401:
            return _json_refusal(_("The security key could not be verified. Try again."), 401)
        status = attempt.refused.status if attempt.refused else 403
        return _json_refusal(_("Too many attempts. Sign in again."), status)
    audit.record(
        context.db_session(),
        "mfa.webauthn.use",
        actor=user.id,
        ip=context.client_ip(),
        details={"credential": row.credential_id[:16]},
    )
    return _json_result(_finish(p, user, ix, proven or {attempt.factor}))


@bp.route("/login/passkey/options", methods=["POST"])
def passkey_options() -> Response:
    options = wa.authentication_options([], "required", "passkey", None)
    return Response(options, mimetype="application/json", headers={"Cache-Control": "no-store"})


@bp.route("/login/passkey", methods=["POST"])
def passkey_verify() -> Response:
    """Phishing-resistant login with a passkey alone (user verification required)."""
    body = json_body()
    ix = str(body.get("ix") or "")[:MAX_IX]
    credential = body.get("credential")
    if not isinstance(credential, dict):
        return _json_refusal(_("The passkey's answer was not understood."))
    challenge = wa.take_challenge("passkey", None)
    row = wa.credential_row(credential, None)
    failure = _("This passkey could not be used to sign in.")
    user = context.db_session().get(User, row.user_id) if row is not None else None
    factors = None
    if challenge is not None and row is not None and user is not None:
        factors = wa.verify_assertion(credential, challenge, row, require_uv=True)
    if user is not None and user.status == "closing" and factors and "uv" in factors:
        # Being closed (注销): a verified passkey is a whole login, so it may keep the account.
        keep_closing_factors(user, dict.fromkeys(factors, int(utcnow().timestamp())))
        out = jsonify({"ok": True, "redirect": url_for("login.closing_form", ix=ix or None)})
        out.headers["Cache-Control"] = "no-store"
        return out
    if user is None or not user.is_active or not factors or "uv" not in factors:
        audit.record_now(
            context.services().db,
            "login.failure",
            actor=row.user_id if row is not None else "anonymous",
            ip=context.client_ip(),
            outcome="failure",
            details={"method": "passkey"},
        )
        return _json_refusal(failure, 401)
    now = int(utcnow().timestamp())
    proven = dict.fromkeys(factors, now)
    signin.drop_pending()
    resp = finish_login(
        user, amr=mfa.amr_for(proven), ix=ix, acr=mfa.acr_for(proven), factors=proven
    )
    return _json_result(resp)

"""The person's side of the RFC 8628 device authorization grant: ``/device``.

https://www.rfc-editor.org/rfc/rfc8628#section-3.3 (user interaction), §5.4 (remote phishing)

As node-oidc-provider's ``deviceFlow``: a page to type the user code (filled in from
``verification_uri_complete``, then only to be checked against the device's screen), a confirm
page naming the service, what it receives, where the device asked from and a phishing
warning, and a success page.  The person is signed in first, with the level the client and
the policies demand (step-up included: :func:`idp.interaction.levels.required_acr_for` through
``ix_context``).  Typed codes are rate limited per account and per address.  The decision is
:mod:`idp.interaction.decoupled` (one compare-and-set, audited); the grant is written by
:mod:`idp.oauth.device`.  Every form carries a CSRF token.
"""

from __future__ import annotations

from flask import Blueprint, make_response, render_template, request, url_for
from flask_babel import gettext as _
from werkzeug.wrappers import Response

from idp import context
from idp.blueprints.qr import location_text
from idp.blueprints.responses import error_page, see_other
from idp.errors import OAuth2Error
from idp.interaction import decoupled
from idp.interaction.account_view import scope_labels
from idp.interaction.consent import record_consent, release_for
from idp.interaction.flow import InteractionExpired
from idp.interaction.levels import required_acr_for
from idp.interaction.sessions import acr_rank
from idp.interaction.web import current_sso, current_user_row, open_interaction, seal_interaction
from idp.oauth import device
from idp.oauth.release import check_served, released_keys
from idp.storage.models import Department, DeviceRequest, utcnow

bp = Blueprint("device", __name__)

MAX_IX = 32768
MAX_CODE_INPUT = 32


def _no_store(resp: Response) -> Response:
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["Referrer-Policy"] = "no-referrer"
    return resp


def _to_login(multi: dict[str, list[str]]) -> Response:
    ix = seal_interaction(multi, utcnow())
    return _no_store(see_other(url_for("login.login_form", ix=ix), code=303))


def refusal_text(reason: str) -> str:
    """What the person reads when a code cannot be used (translated; never says whether a
    code exists for someone else)."""
    if reason == "expired":
        return str(_("This code has expired. Start again on your device to get a new code."))
    if reason == "used":
        return str(_("This code was already used. Start again on your device if needed."))
    return str(_("This code is not valid. Check the code shown on your device and try again."))


def _entry_page(code: str = "", *, error: str | None = None, status: int = 200) -> Response:
    body = render_template(
        "device.html",
        user_code=code[:MAX_CODE_INPUT],
        prefilled=bool(code) and error is None,
        error=error,
    )
    return _no_store(make_response(body, status))


@bp.route("/device", methods=["GET"])
def enter() -> Response:
    """RFC 8628 §3.3: where the person types (or checks) the code shown on the device."""
    code = request.args.get("user_code", "")[:MAX_CODE_INPUT]
    if current_user_row() is None:
        return _to_login({device.IX_USER_CODE: [code]})
    return _entry_page(code)


@bp.route("/device", methods=["POST"])
def enter_post() -> Response:
    """Check a typed code (rate limited), claim its request for this account, confirm next."""
    typed = request.form.get("user_code", "")[:MAX_CODE_INPUT]
    user = current_user_row()
    if user is None:
        return _to_login({device.IX_USER_CODE: [typed]})
    settings = context.settings()
    limiter = context.services().rate_limiter
    per_minute = settings.device_code_attempts_per_minute
    # RFC 8628 §5.1: the user code is short, so guessing is limited per account and address.
    wait = limiter.hit("device_code", f"user:{user.id}", per_minute, 60)
    wait = limiter.hit("device_code_ip", context.client_ip(), per_minute * 10, 60) or wait
    if wait is not None:
        resp = _entry_page(
            typed,
            error=_("Too many codes tried. Try again in %(n)d second(s).", n=wait),
            status=429,
        )
        resp.headers["Retry-After"] = str(wait)
        return resp
    session = context.db_session()
    row = decoupled.find_device_by_user_code(session, typed)
    if row is None:
        return _entry_page(typed, error=refusal_text("unknown"), status=400)
    try:
        decoupled.claim(session, row, user.id, utcnow())
    except decoupled.DecoupledRefusal as exc:
        session.rollback()
        return _entry_page(typed, error=refusal_text(exc.reason), status=400)
    session.commit()
    ix = seal_interaction({device.IX_REQUEST: [row.id]}, utcnow())
    return _no_store(see_other(url_for("device.confirm", ix=ix)))


def _open(ix: str) -> DeviceRequest | Response:
    """The request an ``ix`` continues, for the signed-in person at the level it needs; or
    the page that comes first (login, step-up) or says why not."""
    try:
        interaction = open_interaction(ix)
    except InteractionExpired:
        return error_page(_("The sign-in page has expired; start again."), 400)
    session = context.db_session()
    row = decoupled.device_request(session, (interaction.multi.get(device.IX_REQUEST) or [""])[0])
    if row is None:
        return _entry_page(error=refusal_text("unknown"), status=400)
    user, sso = current_user_row(), current_sso()
    if user is None or sso is None:
        return _no_store(see_other(url_for("login.login_form", ix=ix), code=303))
    now = utcnow()
    if row.user_id != user.id:
        return _entry_page(error=refusal_text("unknown"), status=400)
    if row.status != "pending" or row.expires_at <= now:
        return _entry_page(error=refusal_text("used" if row.status != "pending" else "expired"))
    level = device.level_request(session, interaction.multi)
    if level is None:
        return _entry_page(error=refusal_text("unknown"), status=400)
    wanted = required_acr_for(level, user)
    if wanted is not None and acr_rank(sso.acr) < acr_rank(wanted):
        # The same level as any login for this client (checklist 18): step up first.
        return _no_store(see_other(url_for("second_factor.step_up", ix=ix), code=303))
    try:
        check_served(session, level.client, user)
    except OAuth2Error:
        return error_page(_("This service cannot be used with this account."), 403, "access_denied")
    return row


@bp.route("/device/confirm", methods=["GET"])
def confirm() -> Response:
    """Which service asks, for what, from where, with the phishing warning (RFC 8628 §5.4)."""
    ix = request.args.get("ix", "")[:MAX_IX]
    row = _open(ix)
    if isinstance(row, Response):
        return row
    client = context.find_client(row.client_id)
    assert client is not None  # _open found it
    department = (
        context.db_session().get(Department, client.department_id) if client.department_id else None
    )
    labels = scope_labels()
    body = render_template(
        "device_confirm.html",
        ix=ix,
        client=client,
        department=department,
        scope_words=[labels[s] for s in row.scope.split() if s in labels],
        location=location_text(row.ip),
        user=current_user_row(),
    )
    return _no_store(make_response(body))


@bp.route("/device/confirm", methods=["POST"])
def confirm_post() -> Response:
    """Approve (the grant is written and the consent recorded) or deny, once; audited."""
    ix = request.form.get("ix", "")[:MAX_IX]
    action = request.form.get("action")
    if action not in ("approve", "deny"):
        return error_page(_("Choose to allow or deny."), 400)
    row = _open(ix)
    if isinstance(row, Response):
        return row
    session = context.db_session()
    user, sso = current_user_row(), current_sso()
    client = context.find_client(row.client_id)
    assert user is not None and sso is not None and client is not None  # _open checked
    approve = action == "approve"
    grant = device.approve(session, row, client, user, sso) if approve else None
    try:
        decoupled.decide_device(
            session,
            row,
            user_id=user.id,
            approve=approve,
            grant_id=grant.id if grant is not None else None,
            acr=sso.acr,
            amr=list(sso.amr),
            ip=context.client_ip(),
            now=utcnow(),
        )
    except decoupled.DecoupledRefusal as exc:
        session.rollback()
        return _entry_page(error=refusal_text(exc.reason), status=409)
    if approve:
        scopes = row.scope.split()
        record_consent(
            session, user, client, scopes, released_keys(release_for(client, scopes, None, None))
        )
    session.commit()
    body = render_template("device_done.html", approved=approve, client=client)
    return _no_store(make_response(body))

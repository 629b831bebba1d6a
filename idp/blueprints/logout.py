"""``/logout``: OpenID Connect RP-Initiated Logout 1.0 (the ``end_session_endpoint``).

A relying party's POST carries no CSRF token of ours, so :func:`logout_post` is exempt (in
:func:`idp.app.create_app`) and checks our token itself when the user confirms on our page.
Nothing ends without either a valid ``id_token_hint`` naming this very session or the user's
confirmation (checklist 63, 105).  The session ends through
:func:`~idp.interaction.sessions.end_sessions`: grants revoked, back-channel logout queued,
front-channel iframes drawn (checklist 64, 69).
"""

from __future__ import annotations

import secrets
from typing import Any

from flask import Blueprint, current_app, make_response, render_template, request, url_for
from itsdangerous import BadSignature, URLSafeTimedSerializer
from werkzeug.wrappers import Response

from idp import audit, context
from idp.blueprints.responses import see_other
from idp.interaction.sessions import Ended, end_sessions
from idp.interaction.web import (
    clear_session_cookie,
    current_sso,
    current_user_row,
    forget_current_session,
)
from idp.oauth.authorization import find_client, verify_own_id_token
from idp.oauth.logout import check_logout_request, post_logout_location

bp = Blueprint("logout", __name__)

_LOGOUT_SALT = "yitong-logout"
_LOGOUT_CONFIRM_MAX_AGE = 600
_END_SESSION_PARAMS = (
    "id_token_hint",
    "post_logout_redirect_uri",
    "state",
    "client_id",
    "logout_hint",
    "ui_locales",
)


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(context.services().secret_key, salt=_LOGOUT_SALT)


def _single(source: Any) -> tuple[dict[str, str], bool]:
    """End-session parameters, and whether one was repeated (then none may redirect)."""
    values = {n: source.getlist(n) for n in _END_SESSION_PARAMS}
    repeated = any(len(v) > 1 for v in values.values())
    return {n: v[0] for n, v in values.items() if len(v) == 1}, repeated


@bp.route("/logout", methods=["GET"])
def logout() -> Response:
    return _end_session_request(request.args)


@bp.route("/logout", methods=["POST"])
def logout_post() -> Response:
    if "csrf_token" in request.form:
        # Our own confirmation form (or the account page's "sign out").
        current_app.extensions["csrf"].protect()
        return _confirmed_logout(request.form.get("lr"))
    return _end_session_request(request.form)


def _end_session_request(source: Any) -> Response:
    params, repeated = _single(source)
    lr = check_logout_request(
        params, repeated=repeated, verify_id_token=verify_own_id_token, find_client=find_client
    )
    sso = current_sso()
    user = current_user_row()
    if sso is None:
        # Nothing to end here; a valid request still goes back to its client.
        return after_logout(None, lr.redirect_uri, lr.state)
    client = find_client(lr.client_id) if lr.client_id else None
    if lr.matches(sso, user, client, context.services().pairwise_secret):
        return after_logout(end_current_session(), lr.redirect_uri, lr.state)
    sealed = _serializer().dumps({"r": lr.redirect_uri, "s": lr.state, "sid": sso.id})
    body = render_template("logout.html", user=user, client=client, params={"lr": sealed})
    return make_response(body)


def _confirmed_logout(sealed: str | None) -> Response:
    data: dict[str, Any] = {}
    if sealed:
        try:
            loaded = _serializer().loads(sealed, max_age=_LOGOUT_CONFIRM_MAX_AGE)
            data = loaded if isinstance(loaded, dict) else {}
        except BadSignature:
            data = {}
    sso = current_sso()
    redirect_uri = data.get("r") if isinstance(data.get("r"), str) else None
    if sso is None or data.get("sid") != sso.id:
        redirect_uri = None  # the confirmation was for another session: no redirect
    state = data.get("s") if isinstance(data.get("s"), str) else None
    return after_logout(end_current_session(), redirect_uri, state)


def after_logout(ended: Ended | None, redirect_uri: str | None, state: str | None) -> Response:
    """Signed out: front-channel iframes if any, then the client's page or ours."""
    target = post_logout_location(redirect_uri, state) if redirect_uri else None
    status = 303 if request.method == "POST" else 302
    frames = list(ended.frames) if ended is not None else []
    if frames:
        nonce = secrets.token_urlsafe(16)
        body = render_template("logged_out.html", frames=frames, continue_to=target, nonce=nonce)
        resp: Response = make_response(body, 200)
        origins = " ".join(sorted({f.origin for f in frames}))
        # Front-Channel Logout §3: the pages may frame only the registered logout origins.
        resp.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' data:; style-src 'self'; "
            f"script-src 'nonce-{nonce}'; frame-src {origins}; frame-ancestors 'none'; "
            "base-uri 'none'; form-action 'self'"
        )
        resp.headers["Cache-Control"] = "no-store"
    elif target is not None:
        resp = see_other(target, code=status)
    else:
        resp = see_other(url_for("logout.logged_out"), code=303)
    clear_session_cookie(resp)
    return resp


def end_current_session() -> Ended | None:
    """End this browser's SSO session everywhere; None if there was none.

    Delivery of the back-channel logout tokens starts after the commit, off this request.
    """
    sso = current_sso()
    if sso is None:
        return None
    db_session = context.db_session()
    ended = end_sessions(db_session, context.services(), [sso], reason="logout")
    audit.record(
        db_session,
        "logout",
        actor=sso.user_id,
        ip=context.client_ip(),
        details={
            "sid": sso.id,
            "backchannel": len(ended.deliveries),
            "frontchannel": len(ended.frames),
        },
    )
    db_session.commit()
    ended.kick()
    forget_current_session()
    return ended


@bp.route("/logged-out", methods=["GET"])
def logged_out() -> str:
    return render_template("logged_out.html", frames=[], continue_to=None, nonce=None)

"""Logging in through the national platform (an upstream OpenID Connect provider).

Issue 13 item 3.  ``/federation/upstream/start`` sends the browser to the upstream;
``/callback`` verifies its answer and either signs a linked account in, or asks the person
on a consent page whether to link the account holding the verified identity number
(``/link``).  ``/backchannel-logout`` receives the upstream's logout tokens.  The decisions
are :mod:`idp.interaction.federation`; the protocol :mod:`idp.oauth.upstream`.  An upstream
outage is a translated page that leads back to our own login, which keeps working.
"""

from __future__ import annotations

import logging

from flask import Blueprint, make_response, render_template, request, url_for
from flask_babel import gettext as _
from werkzeug.wrappers import Response

from idp import context
from idp.accounts.privacy import mask
from idp.blueprints.login import MAX_IX
from idp.blueprints.responses import error_page, json_error, see_other
from idp.errors import InvalidRequestError, TemporarilyUnavailableError
from idp.interaction import federation as fed
from idp.interaction import login as signin
from idp.interaction.web import set_session_cookie
from idp.oauth.upstream import UpstreamOIDC, UpstreamRejected, UpstreamUnavailable
from idp.storage.models import User, utcnow

log = logging.getLogger(__name__)

bp = Blueprint("federation", __name__, url_prefix="/federation/upstream")


def _callback_uri() -> str:
    return context.settings().endpoint(url_for("federation.callback"))


def _notice(message: str, status: int, error: str | None, ix: str = "") -> Response:
    body = render_template("upstream_notice.html", message=message, error=error, ix=ix)
    resp = make_response(body, status)
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _unavailable(exc: Exception, ix: str) -> Response:
    log.warning("upstream provider unavailable: %s", exc)
    return _notice(
        _(
            "The national government service platform cannot be reached right now. Try again "
            "later, or sign in with your Yitong account."
        ),
        503,
        "temporarily_unavailable",
        ix,
    )


def _upstream() -> UpstreamOIDC | None:
    return context.services().upstream


def _not_offered() -> Response:
    return error_page(_("Sign-in through the national platform is not offered here."), 404)


@bp.route("/start", methods=["GET"])
def start() -> Response:
    upstream = _upstream()
    if upstream is None:
        return _not_offered()
    ix = request.args.get("ix", "")[:MAX_IX]
    try:
        url = fed.start(upstream, _callback_uri(), ix)
    except UpstreamUnavailable as exc:
        return _unavailable(exc, ix)
    resp = see_other(url, code=302)
    resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.route("/callback", methods=["GET"])
def callback() -> Response:
    upstream = _upstream()
    if upstream is None:
        return _not_offered()
    args = {k: request.args.get(k, "")[:2048] for k in ("state", "code", "error")}
    session = context.db_session()
    try:
        done = fed.finish(session, context.services(), upstream, _callback_uri(), args, utcnow())
    except UpstreamUnavailable as exc:
        return _unavailable(exc, "")
    except UpstreamRejected as exc:
        log.info("upstream login refused: %s", exc)
        return _notice(
            _("The answer from the national platform could not be accepted. Sign in again."),
            400,
            "access_denied",
        )
    if done.kind == "sign_in":
        assert done.user is not None
        return _sign_in(done)
    if done.kind == "consent":
        assert done.user is not None and done.identity.id_number is not None
        body = render_template(
            "upstream_link.html", user=done.user, masked=mask(done.identity.id_number)
        )
        resp = make_response(body)
        resp.headers["Cache-Control"] = "no-store"
        return resp
    messages = {
        "no_account": _(
            "No Yitong account holds the identity number the national platform confirmed. "
            "Create an account, then sign in with the national platform again."
        ),
        "unverified": _(
            "The national platform did not confirm your identity number, so no account can "
            "be linked."
        ),
        "already_linked": _(
            "Your Yitong account is already linked to another national platform identity."
        ),
    }
    return _notice(messages[done.kind], 403, "access_denied", done.ix)


@bp.route("/link", methods=["POST"])
def link() -> Response:
    upstream = _upstream()
    if upstream is None:
        return _not_offered()
    approve = request.form.get("action") == "link"
    done = fed.decide_link(
        context.db_session(), upstream.config.issuer, approve, ip=context.client_ip(), now=utcnow()
    )
    if done is None:
        return error_page(_("The linking page has expired; start again."), 400)
    if done.kind == "refused":
        return _notice(
            _("Your accounts were not linked, and you are not signed in."),
            200,
            None,
            done.ix,
        )
    return _sign_in(done)


def _sign_in(done: fed.Finished) -> Response:
    upstream = _upstream()
    assert upstream is not None and done.user is not None
    user: User = done.user
    token = signin.begin_session(user, amr=["fed"], acr=done.identity.acr)
    session = context.db_session()
    fed.remember_upstream_session(session, token, upstream.config.issuer, done.identity)
    session.commit()
    ix = done.ix[:MAX_IX]
    resp = see_other(url_for("oidc.resume", ix=ix) if ix else url_for("account.home"))
    set_session_cookie(resp, token)
    return resp


@bp.route("/backchannel-logout", methods=["POST"])
def backchannel_logout() -> Response:
    """Back-Channel Logout 1.0 §2.8: 200 when done, 400 with an error otherwise."""
    upstream = _upstream()
    if upstream is None:
        return json_error(InvalidRequestError("no upstream provider is configured"), status=404)
    try:
        ended = fed.upstream_logout(
            context.db_session(),
            context.services(),
            upstream,
            request.form.get("logout_token"),
            utcnow(),
        )
    except UpstreamRejected as exc:
        return json_error(InvalidRequestError(str(exc)), status=400)
    except UpstreamUnavailable as exc:
        return json_error(TemporarilyUnavailableError(str(exc)), status=400)
    log.info("upstream logout ended %d session(s)", ended)
    resp = make_response("", 200)
    resp.headers["Cache-Control"] = "no-store"
    return resp

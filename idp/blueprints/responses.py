"""How every page and endpoint answers: redirects to the client, error pages, JSON errors,
and the one validation of a ``next`` URL.

One helper per kind of answer, so that security properties hold everywhere at once: the
client's redirect URI always gets ``state`` and ``iss`` (RFC 9207) and a 303 after a POST
(RFC 9700 §4.12); JSON errors always carry an RFC error code and ``Cache-Control: no-store``;
a ``next`` URL never leaves this site (checklist 20).
"""

from __future__ import annotations

import logging
import secrets
from urllib.parse import urlencode, urlsplit

import flask
from flask import jsonify, make_response, redirect, render_template, request
from flask_babel import gettext as _
from werkzeug.wrappers import Response

from idp import context
from idp.errors import OAuth2Error
from idp.messages import GENERAL, explain
from idp.oauth import authorize as authz

log = logging.getLogger(__name__)


def see_other(location: str, code: int = 303) -> Response:
    """``flask.redirect`` typed as what it returns at run time (the app's response class)."""
    return redirect(location, code=code)


def redirect_params(ctx: authz.AuthorizationContext, params: dict[str, str]) -> Response:
    """Deliver ``params`` to the verified redirect URI, with ``state`` and ``iss``."""
    assert ctx.redirect_uri is not None
    out = dict(params)
    if ctx.state is not None:
        out["state"] = ctx.state
    out["iss"] = context.settings().issuer  # RFC 9207 §2, success and error alike
    status = 303 if request.method == "POST" else 302  # RFC 9700 §4.12: never 307
    if ctx.response_mode == "form_post":
        nonce = secrets.token_urlsafe(16)
        body = render_template("form_post.html", action=ctx.redirect_uri, params=out, nonce=nonce)
        resp: Response = make_response(body, 200)
        origin = urlsplit(ctx.redirect_uri)
        resp.headers["Content-Security-Policy"] = (
            f"default-src 'none'; script-src 'nonce-{nonce}'; "
            f"form-action {origin.scheme}://{origin.netloc}; frame-ancestors 'none'; base-uri 'none'"
        )
        resp.headers["Cache-Control"] = "no-store"
        return resp
    sep = "&" if urlsplit(ctx.redirect_uri).query else "?"
    resp = see_other(ctx.redirect_uri + sep + urlencode(out), code=status)
    resp.headers["Cache-Control"] = "no-store"
    return resp


def redirect_error(ctx: authz.AuthorizationContext, error: OAuth2Error) -> Response:
    """An authorization error for a verified redirect URI (RFC 6749 §4.1.2.1)."""
    params = {"error": error.error}
    if error.description:
        params["error_description"] = str(error.description)
    log.info(
        "authorization error %s for %s: %s",
        error.error,
        ctx.params.get("client_id"),
        error.description,
    )
    return redirect_params(ctx, params)


def error_page(
    message: str | None = None,
    status: int = 400,
    error: str | None = "invalid_request",
    *,
    detail: str | None = None,
) -> Response:
    """A page for a person: what happened and what to do, in the page's language.

    ``message`` (already translated) says what happened; without it the page explains
    ``error`` (an RFC code, or ``csrf``) or else ``status`` in plain words
    (:data:`idp.messages.PAGE_ERRORS`).  ``detail``, the developer's English (an
    ``error_description``), never reaches the page: it is logged under the request's
    reference number, which the page shows for the help desk.
    """
    rid = context.request_id()
    if detail is not None:
        log.info("error page %s %s [request %s]: %s", status, error, rid, detail)
    explanation = explain(error, status)
    body = render_template(
        "error.html",
        title=_(explanation.title if message is None else GENERAL.title),
        what=message if message is not None else _(explanation.what),
        todo=_(explanation.todo),
        error=error,
        request_id=rid,
    )
    resp = make_response(body, status)
    resp.headers["Cache-Control"] = "no-store"
    return resp


def json_error(
    error: OAuth2Error,
    *,
    status: int | None = None,
    headers: dict[str, str] | None = None,
    message: str | None = None,
) -> flask.Response:
    """``{"error", "error_description"}`` with the class's status; never cached.

    ``message`` is the translated text for our own pages' scripts (JSON calls from the login
    and security pages), sent beside the RFC fields.
    """
    body: dict[str, str] = {"error": error.error}
    if error.description:
        body["error_description"] = str(error.description)
    if message is not None:
        body["message"] = message
    resp = jsonify(body)
    resp.status_code = status or error.status_code or 400
    resp.headers["Cache-Control"] = "no-store"
    for name, value in (headers or {}).items():
        resp.headers[name] = value
    return resp


def safe_next(value: str | None, default: str) -> str:
    """A same-site path to continue to, or ``default`` (checklist 20, issue 14 item 2).

    Checked after normalising as a browser would: browsers drop tabs and line breaks from
    URLs and read ``\\`` as ``/``, so ``/%09/evil.example`` and ``/\\evil.example`` are
    ``//evil.example`` to them.  Any control character or backslash refuses the value; what
    remains must be a path with neither scheme nor host.
    """
    if not value or len(value) > 2000:
        return default
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value) or "\\" in value:
        return default
    if not value.startswith("/") or value.startswith("//"):
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return default
    return value

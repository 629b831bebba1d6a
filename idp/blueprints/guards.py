"""App-wide guards, registered once by :func:`idp.app.create_app`: per-address rate limits.

Checklist 112: past the limit a POST gets 429 with ``Retry-After`` — a page for people, the
RFC's ``slow_down`` in JSON for scripts.  The limiter is shared through Redis across workers,
and per worker without it, never unlimited (:mod:`idp.interaction.ratelimit`).  The address is
:func:`idp.context.client_ip` (``trusted_proxies`` decides what it is).
"""

from __future__ import annotations

from flask import Flask, make_response, render_template, request
from flask_babel import gettext as _
from werkzeug.wrappers import Response

from idp import context
from idp.blueprints.responses import json_error
from idp.errors import SlowDownError

#: Endpoints whose POSTs count against the login limit, and under which name.
LOGIN_LIMITED = {
    "login.login_post": "login",
    "login.register_post": "register",
    "recovery.forgot_post": "reset",
    "recovery.code_post": "reset",
    "recovery.reset_post": "reset",
    "login.closing_cancel": "login",
    "sms_login.send": "login",
    "sms_login.code_post": "login",
    "sms_login.password_post": "login",
    "rights.confirm_contacts_post": "mfa",
    "rights.email_confirm_post": "mfa",
}


def limit_for(endpoint: str) -> tuple[str, int] | None:
    """(counter name, requests per minute) for a POST to ``endpoint``, or None."""
    if endpoint in LOGIN_LIMITED:
        return LOGIN_LIMITED[endpoint], context.settings().rate_limit_login_per_minute
    if endpoint == "registration.register":
        # RFC 7591 §5: an open or token-guarded registration endpoint invites floods.
        return "dynreg", context.settings().rate_limit_registration_per_minute
    if endpoint.startswith("second_factor."):
        return "mfa", context.services().policies.get_int("ratelimit.mfa_per_minute")
    return None


def retry_after(scope: str, per_minute: int) -> int | None:
    """Seconds to wait once this address passed ``per_minute`` for ``scope``, else None."""
    return context.services().rate_limiter.hit(scope, context.client_ip(), per_minute, 60)


def rate_limit() -> Response | None:
    """429 + Retry-After past the per-address limit of the page's POSTs."""
    req = context.current_request()
    if req.method != "POST" or not req.endpoint:
        return None
    limit = limit_for(req.endpoint)
    if limit is None:
        return None
    wait = retry_after(*limit)
    if wait is None:
        return None
    message = _("Too many requests. Try again in %(n)d second(s).", n=wait)
    if request.is_json:
        resp = json_error(
            SlowDownError("too many requests; retry later"),
            message=message,
        )
    else:
        resp = make_response(render_template("error.html", message=message, error="slow_down"), 429)
    resp.headers["Retry-After"] = str(wait)
    return resp


def install(app: Flask) -> None:
    app.before_request(rate_limit)

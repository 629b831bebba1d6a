"""The admin console's blueprint, sign-in guard, page helpers and dashboard (issue 11).

Simplified Chinese by default and English (the site's language switch), every form carries
the CSRF token (Flask-WTF protects every POST of the app), and nothing needs JavaScript.  A
page parses, calls the admin service layer (:mod:`admin.services`, :mod:`admin.operations`,
:mod:`admin.people`), the only writers, and renders.  Who may see what is the service layer's
call; the pages only hide what the signed-in admin's roles do not allow.

Sign-in is the browser's single-sign-on session, held to the admin level on every request
(:func:`admin.auth.console_refusal`): an admin role read from the account now, a login at the
level the admin policy sets (phishing-resistant where the person has a passkey), no older than
the admin session's limit; keys, policies and directories also need a login in the last 15
minutes (:func:`admin.auth.fresh_enough`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Blueprint, g, make_response, render_template, request, url_for
from markupsafe import Markup, escape
from werkzeug.wrappers import Response

from admin import operations
from admin.auth import console_acr, console_refusal, fresh_enough
from admin.services import AdminInputError, Caller, caller_for_user
from idp import context
from idp.blueprints.responses import see_other
from idp.interaction.web import current_sso, current_user_row

bp = Blueprint("console", __name__, url_prefix="/admin", template_folder="templates")
F = TypeVar("F", bound=Callable[..., Any])

#: The console's sections, the roles that see each, and their titles (translated at render).
SECTIONS: tuple[tuple[str, str, frozenset[str]], ...] = (
    ("console.dashboard", "Dashboard", frozenset()),
    ("console.people", "People", frozenset({"security-admin", "helpdesk", "auditor", "department-admin"})),
    ("console.companies", "Companies and mandates", frozenset({"security-admin", "department-admin", "auditor"})),
    ("console.clients", "Clients", frozenset({"security-admin", "client-admin", "department-admin", "auditor"})),
    ("console.departments", "Departments", frozenset({"security-admin", "client-admin", "department-admin", "auditor"})),
    ("console.keys", "Signing keys", frozenset({"security-admin"})),
    ("console.policies", "Policies", frozenset({"security-admin"})),
    ("console.directories", "Directories", frozenset({"security-admin"})),
    ("console.audit_trail", "Audit trail", frozenset({"security-admin", "auditor"})),
)  # fmt: skip


def who() -> Caller:
    return g.console_caller  # type: ignore[no-any-return]


def page(template: str, status: int = 200, **values: Any) -> Response:
    """A console page; never cached (admin data)."""
    caller = who()
    sections = [(e, t) for e, t, roles in SECTIONS if not roles or roles & caller.roles]
    body = render_template(
        f"console/{template}", who=caller, sections=sections, user=g.console_user, **values
    )
    resp = make_response(body, status)
    resp.headers["Cache-Control"] = "no-store"
    return resp


def done(endpoint: str, notice: str, **values: Any) -> Response:
    """After a change: back to a page (303), which shows ``notice`` (a key, not text)."""
    return see_other(url_for(endpoint, done=notice, **values))


def form_list(name: str) -> list[str]:
    """A textarea or comma/space-separated field as a list of non-empty entries."""
    raw = request.form.get(name, "")
    return [v for part in raw.replace(",", " ").split() if (v := part.strip())]


@bp.before_request
def signed_in_admin() -> Response | None:
    """Every console request: a live session at the admin level, or a page saying why not."""
    user, sso = current_user_row(), current_sso()
    if user is None or sso is None:
        return see_other(url_for("login.login_form"), code=302)
    refusal = console_refusal(user, sso.acr, sso.auth_time)
    if refusal is not None:
        status = 403 if refusal == "role" else 401
        body = render_template(
            "console/refused.html", reason=refusal, wanted=console_acr(user), user=user
        )
        return make_response(body, status)
    g.console_user = user
    g.console_fresh = fresh_enough(sso.acr, sso.auth_time)
    g.console_caller = caller_for_user(context.db_session(), user, f"user:{user.id}")
    return None


def needs_fresh_login(view: F) -> F:
    """Keys, policies and directories: a multi-factor login in the last 15 minutes."""

    @functools.wraps(view)
    def inner(*args: Any, **kwargs: Any) -> Any:
        if not g.console_fresh:
            return page("stale.html", status=401)
        return view(*args, **kwargs)

    return inner  # type: ignore[return-value]


def require_any(*roles: str) -> None:
    """The page itself is for these roles (what it shows is still filtered by the services)."""
    if not set(roles) & who().roles:
        raise AdminInputError("your roles do not include this page", status=403)


@bp.errorhandler(AdminInputError)
def refused(exc: AdminInputError) -> Response:
    context.db_session().rollback()
    return page("error.html", status=exc.status, status_code=exc.status, detail=exc.message)


#: Names in translated help text that stay as they are: settings (``lockout.free_attempts``),
#: commands (``yitong users close-due``), protocol words (``client_id``) and values.
_IDENTIFIER = re.compile(
    r"yitong(?: [a-z-]+)+"  # a command
    r"|urn(?::[a-z]+)+"  # an acr value
    r"|\b(?!e\.g\b)[a-z]+(?:[._][a-z]+)+"  # a setting, a claim
    r"|\b[a-z]+\.(?=[)）])"  # the start of an audit action
    r"|\b[a-z][a-z-]*(?=（)"  # a value glossed in Chinese: everyone（所有人）
    r"|\bhttps\b"
)


@bp.app_template_filter("yt_identifiers")
def _identifiers_filter(text: str) -> Markup:
    """Escape ``text`` and mark the names in it as code, so that a Chinese sentence naming
    a setting is read (and checked, tests/browser) as Chinese with code in it."""
    out, last = [], 0
    for found in _IDENTIFIER.finditer(text):
        out += [escape(text[last : found.start()]), Markup('<code translate="no">')]
        out += [escape(found.group(0)), Markup("</code>")]
        last = found.end()
    out.append(escape(text[last:]))
    return Markup("").join(out)


@bp.route("/", methods=["GET"])
def dashboard() -> Response:
    data = operations.dashboard(context.db_session(), context.services(), who())
    return page("dashboard.html", data=data)

"""Console: signing keys (list, rotate, revoke), security policies, directories (configure,
test the connection, sync now) and the audit trail (filters, CSV export, chain status).

Keys, policies and directory changes are a security admin's, after a multi-factor login in
the last 15 minutes (:func:`~admin.console.base.needs_fresh_login`), as in the admin API.
"""

from __future__ import annotations

import json

from flask import make_response, request
from werkzeug.wrappers import Response

from admin import operations, services
from admin.console.base import bp, done, needs_fresh_login, page, require_any, who
from idp import context
from keys.store import KeyStoreError


# ------------------------------------------------------------------ keys
@bp.route("/keys", methods=["GET"])
def keys() -> Response:
    store = operations.managed_keys(who())
    return page(
        "keys.html",
        keys=store.list_keys(),
        next_change=store.next_change(),
        notice=request.args.get("done", "")[:20],
    )


@bp.route("/keys/rotate", methods=["POST"])
@needs_fresh_login
def keys_rotate() -> Response:
    store = operations.managed_keys(who())
    force = [a for a in request.form.getlist("force") if a]
    try:
        store.rotate(actor=who().actor, force=force)
    except KeyStoreError as exc:
        raise operations.key_error(exc) from None
    return done("console.keys", "rotated")


@bp.route("/keys/<kid>/revoke", methods=["POST"])
@needs_fresh_login
def keys_revoke(kid: str) -> Response:
    reason = request.form.get("reason", "").strip()
    if not reason or len(reason) > 500:
        raise services.AdminInputError("give the reason (at most 500 characters)")
    store = operations.managed_keys(who())
    try:
        store.revoke(kid, actor=who().actor, reason=reason)
    except KeyStoreError as exc:
        raise operations.key_error(exc) from None
    return done("console.keys", "revoked")


# ------------------------------------------------------------------ policies
@bp.route("/policies", methods=["GET"])
def policies() -> Response:
    require_any("security-admin")
    return page(
        "policies.html",
        policies=services.list_policies(),
        notice=request.args.get("done", "")[:20],
        as_text=_as_text,
    )


def _as_text(value: object) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@bp.route("/policies", methods=["POST"])
@needs_fresh_login
def policies_set() -> Response:
    require_any("security-admin")
    name = request.form.get("name", "")
    services.set_policies(
        context.db_session(),
        {name: request.form.get("value", "")},
        who(),
        context.client_ip(),
    )
    return done("console.policies", "saved")


# ------------------------------------------------------------------ directories
@bp.route("/directories", methods=["GET"])
def directories() -> Response:
    require_any("security-admin")
    rows = services.list_directories(context.db_session(), context.services().directories)
    return page("directories.html", directories=rows, notice=request.args.get("done", "")[:20])


@bp.route("/directories", methods=["POST"])
@needs_fresh_login
def directory_put() -> Response:
    """Add or replace a directory from its settings table, written as JSON."""
    require_any("security-admin")
    try:
        table = json.loads(request.form.get("config", ""))
    except ValueError:
        raise services.AdminInputError("the configuration must be a JSON object") from None
    if not isinstance(table, dict):
        raise services.AdminInputError("the configuration must be a JSON object")
    services.put_directory(context.db_session(), request.form.get("id", "").strip(), table, who())
    context.services().directories.reload(force=True)
    return done("console.directories", "saved")


@bp.route("/directories/<directory_id>/test", methods=["POST"])
@needs_fresh_login
def directory_test(directory_id: str) -> Response:
    steps = operations.test_directory(context.services(), directory_id, who())
    return page("directory_test.html", directory_id=directory_id, steps=steps)


@bp.route("/directories/<directory_id>/sync", methods=["POST"])
@needs_fresh_login
def directory_sync(directory_id: str) -> Response:
    report = operations.sync_directory_now(context.services(), directory_id, who())
    return page("directory_sync.html", directory_id=directory_id, report=report)


# ------------------------------------------------------------------ audit trail
@bp.route("/audit", methods=["GET"])
def audit_trail() -> Response:
    flt = operations.AuditFilter.parse(request.args)
    session = context.db_session()
    events = operations.audit_events(session, who(), flt)
    chain = operations.audit_chain(session, who())
    return page("audit.html", events=events, flt=request.args, chain=chain)


@bp.route("/audit.csv", methods=["GET"])
def audit_export() -> Response:
    flt = operations.AuditFilter.parse(request.args)
    body = operations.audit_csv(context.db_session(), who(), flt)
    resp = make_response(body)
    resp.headers["Content-Type"] = "text/csv; charset=utf-8"
    resp.headers["Content-Disposition"] = 'attachment; filename="audit.csv"'
    resp.headers["Cache-Control"] = "no-store"
    return resp

"""Console: clients (register, approve, edit, release policy, disable, rotate secret, delete),
departments (add, bind directories, admins) and initial access tokens (issue 11).

A new secret or token is shown once, on the answer to the POST that made it (not cached, not
behind a redirect); everything else answers with a redirect to the page, which names what
was done.
"""

from __future__ import annotations

from typing import Any

from flask import request
from werkzeug.wrappers import Response

from admin import operations, services
from admin.console.base import bp, done, form_list, page, require_any, who
from idp import context
from idp.accounts.assurance import LEVELS
from idp.oauth.claims import SCOPE_CLAIMS
from idp.oauth.clients import AUTH_METHODS, STANDARD_SCOPES
from idp.oauth.release import ACCOUNT_TYPES

CLAIMS = sorted({c for names in SCOPE_CLAIMS.values() for c in names})


# ------------------------------------------------------------------ clients
@bp.route("/clients", methods=["GET"])
def clients() -> Response:
    require_any(*services.UNSCOPED_READERS, "department-admin")
    rows = services.list_clients(context.db_session(), who())
    return page(
        "clients.html",
        clients=rows,
        may_register=_may_register(),
        notice=request.args.get("done", "")[:20],
    )


def _may_register() -> bool:
    return bool(who().roles & (services.UNSCOPED_WRITERS | {"department-admin"}))


@bp.route("/clients/new", methods=["GET"])
def client_new() -> Response:
    require_any(*services.UNSCOPED_WRITERS, "department-admin")
    departments = services.list_departments(context.db_session(), who())
    writable = [d for d in departments if who().may_write(d["id"])]
    return page(
        "client_new.html",
        departments=writable,
        auth_methods=AUTH_METHODS,
        scopes=STANDARD_SCOPES,
        claims=CLAIMS,
        account_types=ACCOUNT_TYPES,
        levels=LEVELS,
    )


def _metadata(form: Any) -> dict[str, Any]:
    """RFC 7591 metadata from the registration form (names in Chinese and English)."""
    data: dict[str, Any] = {
        "client_name": form.get("client_name", "").strip(),
        "redirect_uris": form_list("redirect_uris"),
        "post_logout_redirect_uris": form_list("post_logout_redirect_uris"),
        "scope": " ".join(form.getlist("scope")) or "openid",
        "token_endpoint_auth_method": form.get("token_endpoint_auth_method", "client_secret_basic"),
    }
    if form.get("client_name_en", "").strip():
        data["client_name#en"] = form["client_name_en"].strip()
    for name in ("backchannel_logout_uri", "logo_uri", "client_uri"):
        if form.get(name, "").strip():
            data[name] = form[name].strip()
    if form.get("department"):
        data["department"] = form["department"]
    return data


@bp.route("/clients/new", methods=["POST"])
def client_create() -> Response:
    """Register a client for a department; it is pending until a security admin approves."""
    require_any(*services.UNSCOPED_WRITERS, "department-admin")
    data = _metadata(request.form)
    purpose = request.form.get("purpose", "").strip()
    if purpose:
        data["purpose"] = purpose
    requested = {
        "claims": request.form.getlist("claims") or None,
        "account_types": request.form.getlist("account_types") or None,
        "min_assurance": request.form.get("min_assurance") or None,
    }
    if any(requested.values()):
        data["requested"] = {k: v for k, v in requested.items() if v}
    result = services.create_client(context.db_session(), data, who())
    return page("secret.html", client=result, secret=result.get("client_secret"))


@bp.route("/clients/<client_id>", methods=["GET"])
def client_show(client_id: str) -> Response:
    session = context.db_session()
    client = services.show_client(session, client_id, who())
    row = services.client_row(session, client_id, who(), write=False)
    return page(
        "client.html",
        client=client,
        release=operations.release_policy(row),
        may_write=who().may_write(row.department_id),
        may_approve="security-admin" in who().roles,
        account_types=ACCOUNT_TYPES,
        levels=LEVELS,
        notice=request.args.get("done", "")[:20],
    )


@bp.route("/clients/<client_id>/approve", methods=["POST"])
def client_approve(client_id: str) -> Response:
    services.set_client_status(context.db_session(), client_id, "approved", who())
    return done("console.client_show", "approved", client_id=client_id)


@bp.route("/clients/<client_id>/disable", methods=["POST"])
def client_disable(client_id: str) -> Response:
    services.set_client_status(context.db_session(), client_id, "disabled", who())
    return done("console.client_show", "disabled", client_id=client_id)


@bp.route("/clients/<client_id>/delete", methods=["POST"])
def client_delete(client_id: str) -> Response:
    services.delete_client(context.db_session(), client_id, who())
    return done("console.clients", "deleted")


@bp.route("/clients/<client_id>/edit", methods=["POST"])
def client_edit(client_id: str) -> Response:
    """Change name, URIs, scopes or authentication; widening sends it back to pending."""
    form = request.form
    changes: dict[str, Any] = {
        "client_name": form.get("client_name", "").strip(),
        "redirect_uris": form_list("redirect_uris"),
        "post_logout_redirect_uris": form_list("post_logout_redirect_uris"),
        "scope": " ".join(form_list("scope")),
    }
    if form.get("backchannel_logout_uri", "").strip():
        changes["backchannel_logout_uri"] = form["backchannel_logout_uri"].strip()
    if "exchange_targets" in form:
        changes["exchange_targets"] = form_list("exchange_targets")
    operations.update_client_metadata(
        context.db_session(), context.services(), client_id, changes, who()
    )
    return done("console.client_show", "edited", client_id=client_id)


@bp.route("/clients/<client_id>/release", methods=["POST"])
def client_release(client_id: str) -> Response:
    """The release policy: what the client may receive (security admins)."""
    form = request.form
    operations.set_release_policy(
        context.db_session(),
        client_id,
        {
            "claims": form_list("claims"),
            "verified_claims": form_list("verified_claims"),
            "account_types": form.getlist("account_types") or list(ACCOUNT_TYPES),
            **({"min_assurance": form["min_assurance"]} if form.get("min_assurance") else {}),
        },
        who(),
    )
    return done("console.client_show", "release", client_id=client_id)


@bp.route("/clients/<client_id>/rotate-secret", methods=["POST"])
def client_rotate(client_id: str) -> Response:
    raw = request.form.get("grace_hours", "24").strip()
    try:
        grace = int(raw) * 3600
    except ValueError:
        raise services.AdminInputError("grace must be a whole number of hours") from None
    result = operations.rotate_secret(
        context.db_session(), context.services(), client_id, grace, who()
    )
    return page("secret.html", client=result, secret=result["client_secret"])


# ------------------------------------------------------------------ departments
@bp.route("/departments", methods=["GET"])
def departments() -> Response:
    require_any(*services.UNSCOPED_READERS, "department-admin")
    rows = services.list_departments(context.db_session(), who())
    return page("departments.html", departments=rows, notice=request.args.get("done", "")[:20])


@bp.route("/departments", methods=["POST"])
def department_add() -> Response:
    services.add_department(
        context.db_session(), request.form.get("id", "").strip(), request.form.get("name"), who()
    )
    return done("console.departments", "added")


@bp.route("/departments/<dept_id>", methods=["GET"])
def department_show(dept_id: str) -> Response:
    detail = operations.department_detail(context.db_session(), dept_id, who())
    return page(
        "department.html",
        dept=detail,
        directories=sorted(context.services().directories),
        may_issue=bool(who().roles & {"security-admin", "department-admin"})
        and who().may_write(dept_id),
        notice=request.args.get("done", "")[:20],
    )


@bp.route("/departments/<dept_id>/directories", methods=["POST"])
def department_directories(dept_id: str) -> Response:
    operations.bind_directories(
        context.db_session(),
        context.services(),
        dept_id,
        request.form.getlist("directories"),
        who(),
    )
    return done("console.department_show", "bound", dept_id=dept_id)


@bp.route("/departments/<dept_id>/admins", methods=["POST"])
def department_admin(dept_id: str) -> Response:
    """Grant or revoke ``department-admin`` of this department (security admins)."""
    change = services.revoke_role if request.form.get("action") == "revoke" else services.grant_role
    change(
        context.db_session(),
        context.services(),
        request.form.get("user", "").strip(),
        "department-admin",
        dept_id,
        who(),
    )
    return done("console.department_show", "admins", dept_id=dept_id)


@bp.route("/departments/<dept_id>/tokens", methods=["POST"])
def department_token(dept_id: str) -> Response:
    """Issue an RFC 7591 initial access token to the department; its value is shown once."""
    try:
        uses = int(request.form.get("uses", "1"))
        hours = int(request.form.get("hours", "24"))
    except ValueError:
        raise services.AdminInputError("uses and hours must be whole numbers") from None
    token = services.issue_registration_token(
        context.db_session(), dept_id, uses, hours * 3600, who()
    )
    return page("token.html", token=token)

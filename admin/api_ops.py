"""The admin API's console actions (issue 11): client edit, release policy and secret rotation;
departments' directories; people (the helpdesk's tasks); the audit trail; directory checks;
the dashboard; and the OpenAPI 3.1 document of the whole admin API.

Mounted at ``/admin/api`` beside :mod:`admin.api` (same bearer-token rules, same errors); every
handler calls the service layer (:mod:`admin.services`, :mod:`admin.operations`,
:mod:`admin.people`), which checks the role and department and writes the audit event.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, Response, jsonify, make_response, request

from admin import operations, people, services
from admin.api import READERS, WRITERS, caller, json_body, optional_json_body
from admin.auth import require_role
from admin.openapi import document
from idp import context
from idp.blueprints.responses import json_error

bp = Blueprint("admin_api_ops", __name__, url_prefix="/admin/api")
ANY_ADMIN = (*READERS, "helpdesk")
PEOPLE_ROLES = ("security-admin", "helpdesk", "auditor", "department-admin")


@bp.errorhandler(services.AdminInputError)
def _bad_input(exc: services.AdminInputError) -> Response:
    context.db_session().rollback()
    return json_error(exc.as_error(), status=exc.status)


@bp.route("/openapi.json", methods=["GET"])
def openapi() -> Response:
    """The OpenAPI 3.1 document of the admin API (public: it describes, it grants nothing)."""
    return jsonify(document(context.settings().issuer))


@bp.route("/dashboard", methods=["GET"])
@require_role(*ANY_ADMIN)
def dashboard() -> Response:
    return jsonify(operations.dashboard(context.db_session(), context.services(), caller()))


# ------------------------------------------------------------------ clients
@bp.route("/clients/<client_id>", methods=["PATCH"])
@require_role(*WRITERS)
def update_client(client_id: str) -> Response:
    """Body: RFC 7591 fields to change; a widening change sends the client back to pending."""
    return jsonify(
        operations.update_client_metadata(
            context.db_session(), context.services(), client_id, json_body(), caller()
        )
    )


@bp.route("/clients/<client_id>/release", methods=["PUT"])
@require_role("security-admin")
def set_release(client_id: str) -> Response:
    """Body: ``{"claims"?, "verified_claims"?, "min_assurance"?, "account_types"?}``."""
    return jsonify(
        operations.set_release_policy(context.db_session(), client_id, json_body(), caller())
    )


@bp.route("/clients/<client_id>/rotate-secret", methods=["POST"])
@require_role(*WRITERS)
def rotate_secret(client_id: str) -> Response:
    """Body: ``{"grace": seconds}`` (default a day); the new secret is shown once."""
    grace = optional_json_body().get("grace", operations.DEFAULT_GRACE)
    result = operations.rotate_secret(
        context.db_session(), context.services(), client_id, grace, caller()
    )
    resp = jsonify(result)
    resp.headers["Cache-Control"] = "no-store"
    return resp


# ------------------------------------------------------------------ departments
@bp.route("/departments/<dept_id>", methods=["GET"])
@require_role(*READERS)
def show_department(dept_id: str) -> Response:
    return jsonify(operations.department_detail(context.db_session(), dept_id, caller()))


@bp.route("/departments/<dept_id>/directories", methods=["PUT"])
@require_role("security-admin")
def bind_directories(dept_id: str) -> Response:
    """Body: ``{"directories": [directory id, …]}``."""
    return jsonify(
        operations.bind_directories(
            context.db_session(),
            context.services(),
            dept_id,
            json_body().get("directories"),
            caller(),
        )
    )


# ------------------------------------------------------------------ people (helpdesk)
@bp.route("/people", methods=["GET"])
@require_role(*PEOPLE_ROLES)
def find_people() -> Response:
    """``?q=`` an account id, e-mail, phone, ID number or masked ID number."""
    return jsonify(
        people.find_people(
            context.db_session(), context.services(), request.args.get("q", ""), caller()
        )
    )


@bp.route("/people/<user_id>", methods=["GET"])
@require_role(*PEOPLE_ROLES)
def show_person(user_id: str) -> Response:
    return jsonify(people.show_person(context.db_session(), context.services(), user_id, caller()))


@bp.route("/people/<user_id>/unlock", methods=["POST"])
@require_role(*PEOPLE_ROLES)
def unlock_person(user_id: str) -> Response:
    return jsonify(
        people.unlock_person(context.db_session(), context.services(), user_id, caller())
    )


@bp.route("/people/<user_id>/status", methods=["POST"])
@require_role(*PEOPLE_ROLES)
def person_status(user_id: str) -> Response:
    """Body: ``{"status": "active" | "disabled"}`` (disabled: sessions and tokens end)."""
    return jsonify(
        people.set_person_status(
            context.db_session(),
            context.services(),
            user_id,
            json_body().get("status"),
            caller(),
        )
    )


@bp.route("/people/<user_id>/sessions", methods=["DELETE"])
@require_role(*PEOPLE_ROLES)
def end_person_sessions(user_id: str) -> Response:
    return jsonify(
        people.end_person_sessions(context.db_session(), context.services(), user_id, caller())
    )


@bp.route("/people/<user_id>/reset-mfa", methods=["POST"])
@require_role(*PEOPLE_ROLES)
def reset_mfa(user_id: str) -> Response:
    """Body: ``{"reason"}``: every second factor is removed and the reason recorded."""
    return jsonify(
        people.reset_second_factor(
            context.db_session(),
            context.services(),
            user_id,
            json_body().get("reason"),
            caller(),
        )
    )


@bp.route("/companies", methods=["GET"])
@require_role("security-admin", "department-admin", "auditor")
def companies() -> Response:
    return jsonify(
        people.companies(
            context.db_session(), context.services(), request.args.get("q", ""), caller()
        )
    )


# ------------------------------------------------------------------ audit trail and directories
def _event(e: Any) -> dict[str, Any]:
    return {
        "seq": e.seq,
        "at": e.at.isoformat(),
        "actor": e.actor,
        "action": e.action,
        "target": e.target,
        "outcome": e.outcome,
        "ip": e.ip,
        "details": e.details,
    }


@bp.route("/audit/events", methods=["GET"])
@require_role("auditor", "security-admin")
def audit_events() -> Response:
    """``?actor= &action= &target= &since=YYYY-MM-DD &until=YYYY-MM-DD`` (China time)."""
    flt = operations.AuditFilter.parse(request.args)
    events = operations.audit_events(context.db_session(), caller(), flt)
    return jsonify([_event(e) for e in events])


@bp.route("/audit/events.csv", methods=["GET"])
@require_role("auditor", "security-admin")
def audit_csv() -> Response:
    flt = operations.AuditFilter.parse(request.args)
    resp = make_response(operations.audit_csv(context.db_session(), caller(), flt))
    resp.headers["Content-Type"] = "text/csv; charset=utf-8"
    resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.route("/directories/<directory_id>/test", methods=["POST"])
@require_role("security-admin", fresh_mfa=True)
def test_directory(directory_id: str) -> Response:
    return jsonify(operations.test_directory(context.services(), directory_id, caller()))


@bp.route("/directories/<directory_id>/sync", methods=["POST"])
@require_role("security-admin", fresh_mfa=True)
def sync_directory(directory_id: str) -> Response:
    return jsonify(operations.sync_directory_now(context.services(), directory_id, caller()))


def register(app: Flask, csrf: Any) -> None:
    """Mount beside :mod:`admin.api` (bearer-token authenticated: exempt from form CSRF)."""
    app.register_blueprint(bp)
    csrf.exempt(bp)

"""The admin API (JSON), mounted at ``/admin/api``.  Handlers validate input and call
:mod:`admin.services`, the only writers, each of which records an audit event.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from admin import services
from admin.auth import principal, require_role
from idp import context

bp = Blueprint("admin_api", __name__, url_prefix="/admin/api")


def json_body() -> dict[str, Any]:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise services.AdminInputError("the request body must be a JSON object")
    return data


@bp.errorhandler(services.AdminInputError)
def _bad_input(exc: services.AdminInputError) -> tuple[Response, int]:
    return jsonify({"error": exc.error, "error_description": exc.message}), exc.status


@bp.route("/clients", methods=["GET"])
@require_role("client-admin")
def list_clients() -> Response:
    return jsonify(services.list_clients(context.db_session()))


@bp.route("/clients", methods=["POST"])
@require_role("client-admin")
def create_client() -> tuple[Response, int]:
    result = services.create_client(context.db_session(), json_body(), principal())
    return jsonify(result), 201


@bp.route("/clients/<client_id>/approve", methods=["POST"])
@require_role("security-admin")
def approve_client(client_id: str) -> Response:
    return jsonify(
        services.set_client_status(context.db_session(), client_id, "approved", principal())
    )


@bp.route("/audit/verify", methods=["GET"])
@require_role("auditor")
def audit_verify() -> Response:
    from idp import audit

    result = audit.verify(context.db_session())
    return jsonify({"ok": result.ok, "count": result.count, "problem": result.problem})


def register(app: Any, csrf: Any) -> None:
    """Mount the admin API (bearer-token authenticated, so exempt from form CSRF)."""
    app.register_blueprint(bp)
    csrf.exempt(bp)

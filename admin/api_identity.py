"""The admin API's identity-assurance operation (issue 10 item 8): ``POST
/admin/api/people/<id>/verify``, the admin API's ``yitong verify``.

Companies, mandates and the release policy are in :mod:`admin.api` and :mod:`admin.api_ops`;
this module stays apart so the console's modules are not crowded.  Counter staff
(``helpdesk``) and security admins record verifications; a department admin only for the
accounts of its departments (:func:`admin.people.person_for_action`).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, Response, jsonify

from admin import services
from admin.api import caller, json_body
from admin.auth import require_role
from admin.identity import verify_company, verify_person
from idp import context
from idp.blueprints.responses import json_error

bp = Blueprint("admin_api_identity", __name__, url_prefix="/admin/api")
VERIFIERS = ("security-admin", "helpdesk", "department-admin")


@bp.errorhandler(services.AdminInputError)
def _bad_input(exc: services.AdminInputError) -> Response:
    context.db_session().rollback()
    return json_error(exc.as_error(), status=exc.status)


@bp.route("/people/<user_id>/verify", methods=["POST"])
@require_role(*VERIFIERS)
def verify(user_id: str) -> tuple[Response, int]:
    """Body: ``{"level": "L3" | "L4" | "L5", "method", "evidence"?, "face_image"?}``."""
    result = verify_person(context.db_session(), context.services(), user_id, json_body(), caller())
    return jsonify(result), 201


@bp.route("/entities/<ref>/verify", methods=["POST"])
@require_role("security-admin")
def verify_entity(ref: str) -> tuple[Response, int]:
    """Body: ``{"method": "registry"}`` or ``{"method": "e-licence", "presentation"}``."""
    result = verify_company(context.db_session(), context.services(), ref, json_body(), caller())
    return jsonify(result), 201


def register(app: Flask, csrf: Any) -> None:
    """Mount beside :mod:`admin.api` (bearer-token authenticated: exempt from form CSRF)."""
    app.register_blueprint(bp)
    csrf.exempt(bp)

"""RFC 7591 dynamic client registration and RFC 7592 management, at ``/connect/register``.

The logic is :mod:`idp.oauth.registration`; this view reads the JSON body and the Bearer
token (initial access token to register, registration access token to manage), commits on
success and answers errors through :func:`~idp.blueprints.responses.json_error`.  Bearer
authenticated and JSON only, so exempt from form CSRF (like the token endpoint).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, request
from werkzeug.wrappers import Response

from idp import context
from idp.blueprints.responses import json_error
from idp.errors import InvalidClientMetadataError, OAuth2Error
from idp.oauth import registration
from idp.oauth.authorization import bearer_token
from idp.oauth.outbound import OutboundPolicy, fetch_json

bp = Blueprint("registration", __name__)

ENDPOINT = "/connect/register"


def _context() -> registration.RegistrationContext:
    services = context.services()
    policy = OutboundPolicy.from_settings(services.settings)
    return registration.RegistrationContext(
        kek=services.kek,
        signing_algorithms=services.settings.signing_algorithms,
        fetch=lambda uri: fetch_json(uri, policy),
        client_uri=services.settings.endpoint(ENDPOINT),
    )


def _body() -> dict[str, Any]:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise InvalidClientMetadataError("the request body must be a JSON object")
    return data


def _answer(data: dict[str, Any] | None, status: int) -> Response:
    resp = jsonify(data) if data is not None else Response(status=status)
    resp.status_code = status
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["Pragma"] = "no-cache"
    return resp


def _refusal(exc: OAuth2Error) -> Response:
    context.db_session().rollback()
    headers = {}
    if exc.status_code == 401:
        headers["WWW-Authenticate"] = f'Bearer error="{exc.error}"'
    return json_error(exc, headers=headers)


@bp.route(ENDPOINT, methods=["POST"])
def register() -> Response:
    """RFC 7591 §3.1: register a client with an initial access token; 201 with its secret."""
    session = context.db_session()
    try:
        result = registration.register_client(
            session, bearer_token(), _body(), _context(), ip=context.client_ip()
        )
    except OAuth2Error as exc:
        return _refusal(exc)
    session.commit()
    return _answer(result, 201)


@bp.route(f"{ENDPOINT}/<client_id>", methods=["GET", "PUT", "DELETE"])
def manage(client_id: str) -> Response:
    """RFC 7592 §2: read, replace or delete a client with its registration access token."""
    session = context.db_session()
    ctx = _context()
    try:
        client = registration.authorized_client(session, client_id, bearer_token())
        if request.method == "GET":
            return _answer(registration.registered_metadata(client, ctx), 200)
        if request.method == "PUT":
            result = registration.update_client(
                session, client, _body(), ctx, ip=context.client_ip()
            )
            session.commit()
            return _answer(result, 200)
        registration.delete_client(
            session, client, actor=f"registration:{client_id}", ip=context.client_ip()
        )
    except OAuth2Error as exc:
        return _refusal(exc)
    session.commit()
    return _answer(None, 204)

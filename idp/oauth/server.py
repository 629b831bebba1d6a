"""The composition root of the protocol layer: every grant, endpoint and extension, listed once.

(ory/fosite ``compose/compose.go`` is the model.)  Built per app by :func:`build_authorization_server`
and kept in ``app.extensions['yitong.oauth']``; there is no module-level server.

Grants: ``authorization_code`` (PKCE S256), ``refresh_token``, ``client_credentials``,
token exchange (RFC 8693, :mod:`idp.oauth.token_exchange`), the device authorization grant
(RFC 8628, :mod:`idp.oauth.device`).
Endpoints: ``revocation`` (RFC 7009), ``introspection`` (RFC 7662).
Client authentication: :class:`idp.oauth.client_auth.ClientAuthenticator` (the registered
method only: ``client_secret_basic``, ``client_secret_post``, ``client_secret_jwt``,
``private_key_jwt``, ``none``).
"""

from __future__ import annotations

from collections import defaultdict
from functools import cached_property
from typing import Any

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.integrations.flask_oauth2.requests import FlaskOAuth2Request
from authlib.oauth2.rfc6749 import OAuth2Payload
from flask import Flask, Response, current_app

from idp import context
from idp.oauth.client_auth import ClientAuthenticator
from idp.oauth.clients import OAuthClient
from idp.oauth.device import DeviceCodeGrant
from idp.oauth.endpoints import IntrospectionEndpoint, RevocationEndpoint
from idp.oauth.grants import (
    CLIENT_AUTH_METHODS,
    AuthorizationCodeGrant,
    ClientCredentialsGrant,
    RefreshTokenGrant,
    S256CodeChallenge,
)
from idp.oauth.token_exchange import TokenExchangeGrant


def query_client(client_id: str | None) -> OAuthClient | None:
    """The approved client, from this worker's snapshot (:mod:`idp.oauth.client_cache`)."""
    row = context.find_client(client_id)
    if row is None or row.status != "approved":
        return None
    return OAuthClient(row)


class _FormPayload(OAuth2Payload):  # type: ignore[misc]
    """Token-endpoint parameters come from the body only (RFC 6749 §3.2, §4.1.3).

    Authlib reads ``request.values`` (query and body merged); a ``grant_type`` or ``client_id``
    in the query string of a POST is not a parameter of ours.
    """

    def __init__(self, form: Any) -> None:
        self._form = form

    @property
    def data(self) -> Any:
        return self._form

    @cached_property
    def datalist(self) -> dict[str, list[Any]]:
        values: dict[str, list[Any]] = defaultdict(list)
        for key in self._form:
            values[key].extend(self._form.getlist(key))
        return values


class YitongAuthorizationServer(AuthorizationServer):  # type: ignore[misc]
    """Authlib's Flask server with our client authentication and body-only parameters."""

    def __init__(self, app: Flask) -> None:
        super().__init__(query_client=query_client, save_token=lambda token, request: None)
        self.client_authenticator = ClientAuthenticator(query_client)
        self._issuer_url = app.extensions["yitong"].settings.issuer
        self._json = app.json
        self.init_app(app)

    def handle_response(self, status_code: int, payload: Any, headers: Any) -> Response:
        # Authlib's, with the app's JSON provider bound once (``flask.json.dumps`` finds it
        # through ``current_app`` on every answer).
        if isinstance(payload, dict):
            payload = self._json.dumps(payload)
        return Response(payload, status=status_code, headers=headers)

    def authenticate_client(self, request: Any, methods: Any, endpoint: str = "token") -> Any:
        return self.client_authenticator(request, methods, endpoint)

    def create_oauth2_request(self, request: Any) -> FlaskOAuth2Request:
        # Built without OAuth2Request.__init__: its transport check reconstructs and parses the
        # request URL on every call, and our URLs all derive from the configured issuer
        # (https in production, checked at start-up by idp.config.check_settings).  It holds
        # the request object itself, not Flask's proxy: Authlib and the grants read
        # ``request.form`` through it several times per request.
        current = context.current_request()
        req = FlaskOAuth2Request.__new__(FlaskOAuth2Request)
        req.method = current.method
        req.uri = self._issuer_url
        req.headers = current.headers
        req._body = None
        req._request = current
        req.payload = _FormPayload(current.form)
        req.client = req.auth_method = req.user = None
        req.authorization_code = req.refresh_token = req.credential = req._scope = None
        return req


def authenticate_endpoint_client(endpoint: str, methods: list[str] | None = None) -> OAuthClient:
    """Authenticate the current request's client as at the token endpoint (for PAR and others).

    Raises Authlib's ``InvalidClientError`` (401) on failure; the caller answers with it.
    """
    server: YitongAuthorizationServer = current_app.extensions["yitong.oauth"]
    req = server.create_oauth2_request(None)
    client: OAuthClient = server.authenticate_client(req, methods or CLIENT_AUTH_METHODS, endpoint)
    return client


def build_authorization_server(app: Flask) -> AuthorizationServer:
    server = YitongAuthorizationServer(app)
    server.register_grant(AuthorizationCodeGrant, [S256CodeChallenge(required=True)])
    server.register_grant(RefreshTokenGrant)
    server.register_grant(ClientCredentialsGrant)
    server.register_grant(TokenExchangeGrant)
    server.register_grant(DeviceCodeGrant)
    server.register_endpoint(RevocationEndpoint)
    server.register_endpoint(IntrospectionEndpoint)
    return server

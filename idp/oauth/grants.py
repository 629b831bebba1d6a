"""Token-endpoint grants (RFC 6749 §4.1, §4.4, §6) on Authlib's grant machinery.

What we change from Authlib's defaults, and why (checklist 7-8, 24-31, AL notes):
- PKCE is required for every client and only ``S256`` exists (RFC 9700 §2.1.1);
- the code is consumed with an atomic compare-and-set, and a second redemption revokes the
  grant the first one produced (RFC 6749 §4.1.2, RFC 9700 §4.2.4);
- codes are bound to the client and the redirect URI sent at authorization.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from typing import Any

from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.errors import InvalidGrantError, InvalidRequestError
from authlib.oauth2.rfc7636 import CodeChallenge

from idp import context
from idp.storage import repo
from idp.storage.models import AuthorizationCode, Grant, User, utcnow

log = logging.getLogger(__name__)

# Every method a client may register; each client may use only its own (checklist 32).
CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]


class S256CodeChallenge(CodeChallenge):  # type: ignore[misc]
    """PKCE with S256 only; a verifier without a challenge is a downgrade (RFC 9700 §4.8)."""

    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]


class _CodeView:
    """What Authlib's grant and CodeChallenge read from an authorization code."""

    def __init__(self, row: AuthorizationCode, grant: Grant) -> None:
        self.row = row
        self.grant = grant
        self.code_challenge = row.code_challenge
        self.code_challenge_method = row.code_challenge_method

    def get_redirect_uri(self) -> str | None:
        # Only a redirect_uri sent at authorization must be repeated (RFC 6749 §4.1.3).
        return self.row.redirect_uri if self.row.redirect_uri_sent else None

    def get_scope(self) -> str:
        return self.row.scope


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):  # type: ignore[misc]
    """``grant_type=authorization_code`` (RFC 6749 §4.1.3), OpenID Connect aware."""

    TOKEN_ENDPOINT_AUTH_METHODS = CLIENT_AUTH_METHODS

    def query_authorization_code(self, code: str, client: Any) -> _CodeView | None:
        session = context.db_session()
        row = repo.query_code(session, code)
        now = utcnow()
        # RFC 6749 §4.1.3: the code must have been issued to this client.
        if row is None or row.client_id != client.get_client_id():
            return None
        grant = session.get(Grant, row.grant_id)
        if grant is None:
            return None
        if row.consumed_at is not None or not repo.consume_code(session, row, now):
            # Second redemption: revoke everything the first one produced (checklist 25).
            repo.revoke_grant(session, grant.id, "code_reuse", now)
            session.commit()
            log.warning("authorization code reused; grant %s revoked", grant.id)
            return None
        if row.expires_at <= now or grant.revoked_at is not None:
            return None
        return _CodeView(row, grant)

    def validate_token_request(self) -> None:
        super().validate_token_request()
        code: _CodeView = self.request.authorization_code
        # A redirect_uri sent only at the token endpoint must still be the one used.
        if self.request.payload.redirect_uri and self.request.payload.redirect_uri != code.row.redirect_uri:
            raise InvalidGrantError("redirect_uri does not match the authorization request")

    def authenticate_user(self, authorization_code: _CodeView) -> User | None:
        user = context.db_session().get(User, authorization_code.row.user_id)
        return user if user is not None and user.is_active else None

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        code: _CodeView = self.request.authorization_code
        user = self.authenticate_user(code)
        if user is None:
            raise InvalidGrantError("the account is not active")
        client_row = self.request.client.row
        session = context.db_session()
        issuer = context.services().tokens
        now = utcnow()
        grant = code.grant
        scope = code.row.scope
        access, _ = issuer.access_token(session, grant, client_row, user, scope, now)
        body: dict[str, Any] = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": context.settings().access_token_lifetime,
            "scope": scope,
        }
        if self._issues_refresh_token(grant, client_row.grant_types, scope):
            refresh, _ = issuer.refresh_token(session, grant, client_row, scope, now)
            body["refresh_token"] = refresh
        if "openid" in scope.split():
            body["id_token"] = issuer.id_token(
                grant, client_row, user, scope, now, nonce=code.row.nonce, access_token=access
            )
        return 200, body, self.TOKEN_RESPONSE_HEADER

    @staticmethod
    def _issues_refresh_token(grant: Grant, client_grants: list[str], scope: str) -> bool:
        return "refresh_token" in client_grants

    def save_token(self, token: dict[str, Any]) -> None:  # stored while minting
        return None

    def delete_authorization_code(self, authorization_code: _CodeView) -> None:
        return None  # consumed atomically in query_authorization_code


def code_expiry(now: dt.datetime) -> dt.datetime:
    return now + dt.timedelta(seconds=context.settings().authorization_code_lifetime)


def require_pkce_params(data: dict[str, str]) -> tuple[str, str]:
    """Authorization-request PKCE policy: S256 challenge required for every client."""
    challenge = data.get("code_challenge")
    method = data.get("code_challenge_method")
    if not challenge:
        raise InvalidRequestError("code_challenge is required (PKCE with S256)")
    if method != "S256":
        raise InvalidRequestError("code_challenge_method must be S256")
    if not re.fullmatch(r"[A-Za-z0-9\-._~]{43}", challenge):
        raise InvalidRequestError("code_challenge must be a base64url SHA-256 digest (43 characters)")
    return challenge, method

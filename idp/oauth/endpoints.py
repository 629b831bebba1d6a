"""Token revocation (RFC 7009) and token introspection (RFC 7662).

https://www.rfc-editor.org/rfc/rfc7009 · https://www.rfc-editor.org/rfc/rfc7662

Both endpoints authenticate the calling client exactly like the token endpoint (its registered
method only).  What a client learns or changes is limited to its own tokens (checklist 43-44):

- revocation: a client's own refresh token revokes the whole grant (every access and refresh
  token it produced, RFC 7009 §2.1 "SHOULD also invalidate all access tokens based on the same
  authorization grant"); an own access token revokes that token.  Another client's token, an
  unknown, expired or garbage value all get the same ``200`` and nothing happens: the caller
  cannot tell them apart (RFC 7009 §2.2), and another client's token stays active;
- introspection: only confidential clients may call it (``401 invalid_client`` otherwise).
  A token is described to the client it was issued to, and to a resource server whose
  ``client_id`` or registered ``resources`` appear in the token's audience.  Everything else
  (unknown, expired, revoked, rotated, another client's) is ``{"active": false}`` and nothing
  more (RFC 7662 §2.2).
"""

from __future__ import annotations

import logging
from typing import Any

from authlib.consts import default_json_headers
from authlib.oauth2.rfc7009 import RevocationEndpoint as _RevocationEndpoint
from authlib.oauth2.rfc7662 import IntrospectionEndpoint as _IntrospectionEndpoint
from sqlalchemy import update
from sqlalchemy.orm import Session

from idp import context
from idp.accounts.mandates import authority_claim
from idp.errors import InvalidRequestError
from idp.oauth.authorization import live
from idp.oauth.claims import subject_for
from idp.oauth.clients import OAuthClient
from idp.oauth.grants import CLIENT_AUTH_METHODS, CONFIDENTIAL_AUTH_METHODS
from idp.oauth.tokens import find_token
from idp.storage import repo
from idp.storage.models import Client, Token, utcnow
from idp.storage.rows import FoundToken, TokenRow

log = logging.getLogger(__name__)

MAX_TOKEN_LENGTH = 4096
TOKEN_TYPE_HINTS = ("access_token", "refresh_token")


def _token_param(request: Any) -> str:
    values = request.form.getlist("token")
    if len(values) != 1:
        raise InvalidRequestError("exactly one token parameter is required")
    return str(values[0])


def _find(raw: str, session: Session | None = None) -> FoundToken | None:
    if not raw or len(raw) > MAX_TOKEN_LENGTH:
        return None
    # One lookup by digest finds either kind: the hint (RFC 7009 §2.1) only orders a search
    # we do not need, and an unknown hint is ignored rather than refused.
    return find_token(session or context.db_session(), raw)


class RevocationEndpoint(_RevocationEndpoint):  # type: ignore[misc]
    """``POST /revoke``: RFC 7009 with the policy in the module docstring."""

    CLIENT_AUTH_METHODS = CLIENT_AUTH_METHODS

    def authenticate_token(self, request: Any, client: OAuthClient) -> TokenRow | None:
        found = _find(_token_param(request))
        if found is None:
            return None
        row = found.token
        if row.client_id != client.get_client_id():
            log.warning("client %s tried to revoke a token of %s", client.client_id, row.client_id)
            return None  # answered like an unknown token; nothing is revoked
        return row

    def revoke_token(self, token: TokenRow, request: Any) -> None:
        session = context.db_session()
        now = utcnow()
        if token.kind == "refresh":
            repo.revoke_grant(session, token.grant_id, "revoked_by_client", now)
        else:
            session.execute(
                update(Token)
                .where(Token.id == token.id, Token.revoked_at.is_(None))
                .values(revoked_at=now)
                .execution_options(synchronize_session=False)
            )
        session.commit()

    def create_endpoint_response(self, request: Any) -> tuple[int, dict[str, Any], list[Any]]:
        client = self.authenticate_endpoint_client(request)
        token = self.authenticate_token(request, client)
        if token is not None:
            self.revoke_token(token, request)
        return 200, {}, default_json_headers


class IntrospectionEndpoint(_IntrospectionEndpoint):  # type: ignore[misc]
    """``POST /introspect``: RFC 7662 with the policy in the module docstring."""

    CLIENT_AUTH_METHODS = CONFIDENTIAL_AUTH_METHODS

    def create_endpoint_response(self, request: Any) -> tuple[int, dict[str, Any], list[Any]]:
        client = self.authenticate_endpoint_client(request)
        raw = _token_param(request)
        return 200, self.describe(raw, client.row), default_json_headers

    @staticmethod
    def may_see(token: TokenRow, caller: Client) -> bool:
        if token.client_id == caller.client_id:
            return True
        audience = set(token.audience or ())
        return caller.client_id in audience or bool(audience & set(caller.resources or ()))

    def describe(self, raw: str, caller: Client) -> dict[str, Any]:
        services = context.services()
        # A read-only request: no transaction on PostgreSQL, a deferred one on SQLite (no
        # write lock).
        with services.db.reads() as session:
            return self._describe(session, raw, caller)

    def _describe(self, session: Session, raw: str, caller: Client) -> dict[str, Any]:
        inactive: dict[str, Any] = {"active": False}
        found = _find(raw, session)
        if found is None or not self.may_see(found.token, caller):
            return inactive
        if not live(session, found):
            return inactive
        row, grant, user = found
        services = context.services()
        owner = context.find_client(row.client_id)
        assert owner is not None  # check_live verified it
        body: dict[str, Any] = {
            "active": True,
            "scope": row.scope,
            "client_id": row.client_id,
            "iss": services.settings.issuer,
            "iat": int(row.created_at.timestamp()),
            "exp": int(row.expires_at.timestamp()),
            "jti": row.id,
            "sub": (
                subject_for(user, owner, services.pairwise_secret)
                if user is not None
                else row.client_id
            ),
        }
        if row.jkt is not None:
            body["cnf"] = {"jkt": row.jkt}  # RFC 9449 §6.2: bound to this DPoP key
        if row.kind == "access":
            body["token_type"] = "DPoP" if row.jkt is not None else "Bearer"
            audience = list(row.audience or [row.client_id])
            body["aud"] = audience[0] if len(audience) == 1 else audience
        else:
            body["token_type"] = "refresh_token"
        if user is not None and grant.auth_time is not None:
            body["auth_time"] = int(grant.auth_time.timestamp())
        if user is not None and grant.acr:
            body["acr"] = grant.acr
        authority = authority_claim(session, services.vault, grant, row.scope.split())
        if authority is not None:
            body["authority"] = authority  # acting for a company (issue 10)
        if row.act is not None:
            body["act"] = row.act  # a token-exchange result: who acts (RFC 8693 §4.1)
        return body

    # Authlib's abstract hooks, unused: describe() does the work.
    def query_token(self, token_string: str, token_type_hint: str | None) -> TokenRow | None:
        found = _find(token_string)
        return found.token if found is not None else None

    def check_permission(self, token: TokenRow, client: OAuthClient, request: Any) -> bool:
        return self.may_see(token, client.row)

    def introspect_token(self, token: TokenRow) -> dict[str, Any]:
        raise NotImplementedError

"""Token-endpoint grants (RFC 6749 §4.1, §4.4, §6) on Authlib's grant machinery.

https://www.rfc-editor.org/rfc/rfc6749 · https://www.rfc-editor.org/rfc/rfc9700

What we change from Authlib's defaults, and why (checklist 7-8, 24-42):

- PKCE is required for every client and only ``S256`` exists (RFC 9700 §2.1.1); a code
  without a challenge is never redeemed (§4.8, downgrade);
- the code is consumed with an atomic compare-and-set, and a second redemption revokes the
  grant the first one produced (RFC 6749 §4.1.2, RFC 9700 §4.2.4);
- codes are bound to the client and the redirect URI sent at authorization;
- refresh tokens (RFC 6749 §6, RFC 9700 §4.14.2):

  * issued to clients registered for ``refresh_token``, for grants with ``offline_access``
    (which outlive the SSO session) and for session-bound grants (which die with it);
  * bound to the client and to the scope of the grant: a narrower ``scope`` is allowed for
    the new access token (and an ID token only if ``openid`` stays), a wider one is
    ``invalid_scope``; a rotated refresh token keeps the original scope (RFC 6749 §6);
  * **public clients: rotation on every use**, with reuse detection: presenting a rotated
    token again revokes the whole grant (every access and refresh token it produced);
  * **confidential clients: no rotation** (RFC 9700 §4.14.2 lets sender-constrained tokens
    stay; FAPI 2.0 §5.3.2.1 note 2 asks not to rotate, because a lost response then strands
    the client).  Their refresh token is bound to the client's authentication, and its idle
    expiry slides on each use up to the absolute limit.  Set
    :attr:`RefreshTokenGrant.ROTATE_CONFIDENTIAL` to rotate them too;
  * idle lifetime (``refresh_token_idle_lifetime``) and absolute lifetime
    (``refresh_token_absolute_lifetime``, counted from the grant) from the settings;
  * dead after logout (non-offline), password change, account disable, client disable.

Concurrency (checklist 26, 39, 43).  Every grant that mints tokens locks its ``grants`` row
(``SELECT … FOR UPDATE`` on PostgreSQL; SQLite serialises writers with ``BEGIN IMMEDIATE``)
and re-reads its state under that lock, so a revocation and a refresh of the same grant are
ordered: either the refresh sees the revocation and mints nothing, or the revocation (which
updates the grant row first, :func:`idp.storage.repo.revoke_grant`) waits and then revokes what
the refresh committed.  A rotated refresh token is consumed by compare-and-set *after* the new
tokens are written, just before the commit, so of N parallel refreshes exactly one commits.

Reuse versus duplicates: a rotated token presented by a request that *arrived before the
rotation happened* (``g.token_request_started`` < ``consumed_at``) is a concurrent duplicate of
the request that won, typically a client retrying or two tabs refreshing at once: it is
refused with ``invalid_grant`` and the grant is kept, so exactly one new refresh token lives.
A rotated token presented by a request that arrived *after* the rotation is a replay: the grant
is revoked.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from typing import Any, ClassVar, cast

from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc7636 import CodeChallenge
from flask import g
from sqlalchemy import Table, bindparam, select

from idp import context
from idp.accounts.mandates import acting_problem, authority_claim
from idp.errors import (
    InvalidDpopProofError,
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    InvalidTargetError,
    UnauthorizedClientError,
)
from idp.oauth.admin_scopes import grantable_scope, is_admin_scope
from idp.oauth.claims import SCOPE_CLAIMS
from idp.oauth.clients import DEVICE_CODE, TOKEN_EXCHANGE
from idp.oauth.tokens import DeadTokenError, check_live, find_token
from idp.storage import repo
from idp.storage.models import AuthorizationCode, Client, Grant, Token, User, utcnow
from idp.storage.prepared import PreparedSelect
from idp.storage.rows import GrantRow, TokenRow, UserRow

log = logging.getLogger(__name__)

# Every method a client may register; each client may use only its own (checklist 32).
CLIENT_AUTH_METHODS = [
    "client_secret_basic",
    "client_secret_post",
    "client_secret_jwt",
    "private_key_jwt",
    "none",
]
CONFIDENTIAL_AUTH_METHODS = [m for m in CLIENT_AUTH_METHODS if m != "none"]
GRANT_TYPES_SUPPORTED = [
    "authorization_code",
    "refresh_token",
    "client_credentials",
    TOKEN_EXCHANGE,
    DEVICE_CODE,
]

#: Scopes that only make sense with a user; never granted to client_credentials.
USER_SCOPES = frozenset({*SCOPE_CLAIMS, "offline_access"})
MAX_RESOURCES = 10
#: RFC 8707 §2: a resource indicator is an absolute URI without a fragment.
RESOURCE_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:[^#\s]+$")


class S256CodeChallenge(CodeChallenge):  # type: ignore[misc]
    """PKCE with S256 only; a verifier without a challenge is a downgrade (RFC 9700 §4.8)."""

    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD: ClassVar[list[str]] = ["S256"]


# ------------------------------------------------------------------ shared helpers
def request_started() -> dt.datetime:
    """When the token request arrived (set first thing by the view), else now."""
    started = g.get("token_request_started")
    return started if isinstance(started, dt.datetime) else utcnow()


def lock_grant(grant_id: str) -> Grant | None:
    """Lock the grant row for this transaction and return its current state.

    PostgreSQL: ``FOR UPDATE`` (waits for a concurrent revocation or refresh, then sees its
    result).  SQLite: the request's writer holds the database's write lock.  (A code's grant
    is locked as the code is read: :func:`~idp.storage.repo.code_for_redemption`.)
    """
    return context.db_session().scalars(_LOCK_GRANT, {"grant_id": grant_id}).first()


# Built once: every device-code redemption runs it.
_LOCK_GRANT = (
    select(Grant)
    .where(Grant.id == bindparam("grant_id"))
    .with_for_update()
    .execution_options(populate_existing=True)
)


_LOCK_GRANT_OF_TOKEN = PreparedSelect(
    select(Grant.id)
    .where(
        Grant.id
        == select(Token.grant_id)
        .where(Token.digest == bindparam("digest"), Token.kind == bindparam("kind"))
        .scalar_subquery()
    )
    .with_for_update()
)


def lock_grant_of_token(raw: str) -> None:
    """PostgreSQL: lock, for this transaction, the grant of the refresh token ``raw``.

    Only the lock: the caller reads the rows afterwards, in a statement whose snapshot
    starts once the lock is held (READ COMMITTED), so it sees what a concurrent
    revocation or refresh committed while it waited.
    """
    if len(raw) > 4096:
        return
    _LOCK_GRANT_OF_TOKEN.first(
        context.db_session(), {"digest": repo.digest(raw), "kind": "refresh"}
    )


def requested_resources(request: Any, client: Client) -> list[str]:
    """RFC 8707 ``resource`` values: absolute URIs without fragment, registered for the client."""
    values = request.form.getlist("resource") if hasattr(request.form, "getlist") else []
    if len(values) > MAX_RESOURCES:
        raise InvalidTargetError("too many resource values")
    out: list[str] = []
    for value in values:
        # RFC 8707 §2: an absolute URI, no fragment.
        if not RESOURCE_URI.match(value or ""):
            raise InvalidTargetError("resource must be an absolute URI without a fragment")
        if value not in client.resources:
            raise InvalidTargetError("resource is not registered for this client")
        if value not in out:
            out.append(value)
    return out


def dpop_binding(client: Client, bound_to: str | None = None) -> str | None:
    """The DPoP key (``jkt``) the new tokens are bound to, or None for Bearer tokens.

    The view verified the request's proof (``g.dpop_proof``, :mod:`idp.oauth.dpop`).  A proof
    is required when the client registered ``dpop_bound_access_tokens`` (RFC 9449 §5.2) and
    when what is redeemed is bound already (``bound_to``: a code's ``dpop_jkt``, §10; a public
    client's refresh token, §5), and then it must prove that very key (checklist 45).
    """
    proof = g.get("dpop_proof")
    if proof is None:
        if client.dpop_bound_access_tokens or bound_to is not None:
            raise InvalidDpopProofError("a DPoP proof is required")
        return None
    if bound_to is not None and proof.jkt != bound_to:
        raise InvalidDpopProofError("the DPoP proof is for another key")
    return str(proof.jkt)


def bearer_response(
    access: str,
    scope: str,
    refresh: str | None = None,
    id_token: str | None = None,
    *,
    dpop: bool = False,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "access_token": access,
        "token_type": "DPoP" if dpop else "Bearer",  # RFC 9449 §5
        "expires_in": context.settings().access_token_lifetime,
        "scope": scope,
    }
    if refresh is not None:
        body["refresh_token"] = refresh
    if id_token is not None:
        body["id_token"] = id_token
    return body


def issues_refresh_token(grant: Grant, client: Client) -> bool:
    """Refresh tokens for offline grants and session-bound grants of clients that may refresh."""
    return (
        "refresh_token" in client.grant_types
        and grant.user_id is not None
        and (grant.offline or grant.sid is not None)
    )


def grant_tokens(
    session: Any,
    grant: Grant,
    client: Client,
    user: User,
    scope: str,
    now: dt.datetime,
    resources: list[str],
    *,
    jkt: str | None,
    nonce: str | None,
) -> dict[str, Any]:
    """The token response for a person's grant just decided (authorization code or device
    code): the access token, a refresh token where the grant allows one, and an ID token for
    ``openid``.  One place, so both grants bind DPoP and carry the authority claim alike."""
    issuer = context.services().tokens
    access, _ = issuer.access_token(session, grant, client, user, scope, now, resources, jkt=jkt)
    refresh = None
    if issues_refresh_token(grant, client):
        # RFC 9449 §5: a public client's refresh token is bound to its DPoP key.
        refresh_jkt = jkt if client.public else None
        refresh, _ = issuer.refresh_token(session, grant, client, scope, now, refresh_jkt)
    id_token = None
    if "openid" in scope.split():
        id_token = issuer.id_token(
            session,
            grant,
            client,
            user,
            scope,
            now,
            nonce=nonce,
            access_token=access,
            authority=authority_claim(session, context.services().vault, grant, scope.split()),
        )
    return bearer_response(access, scope, refresh, id_token, dpop=jkt is not None)


# ------------------------------------------------------------------ authorization_code
class _CodeView:
    """What Authlib's grant and CodeChallenge read from an authorization code."""

    def __init__(self, row: AuthorizationCode, grant: Grant, user: User) -> None:
        self.row = row
        self.grant = grant  # locked for the request's transaction
        self.user = user
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
        found = repo.code_for_redemption(session, code)
        now = utcnow()
        # RFC 6749 §4.1.3: the code must have been issued to this client (checklist 28).
        if found is None or found[0].client_id != client.get_client_id():
            return None
        row, grant, user = found
        if row.consumed_at is not None or not repo.consume_code(session, row, now):
            # Second redemption: revoke everything the first one produced (checklist 25).
            repo.revoke_grant(session, grant.id, "code_reuse", now)
            session.commit()
            log.warning("authorization code reused; grant %s revoked", grant.id)
            return None
        if row.expires_at <= now or grant.revoked_at is not None:
            return None
        return _CodeView(row, grant, user)

    def validate_token_request(self) -> None:
        super().validate_token_request()
        code: _CodeView = self.request.authorization_code
        # A redirect_uri sent only at the token endpoint must still be the one used.
        if (
            self.request.payload.redirect_uri
            and self.request.payload.redirect_uri != code.row.redirect_uri
        ):
            raise InvalidGrantError("redirect_uri does not match the authorization request")
        # PKCE for every client (RFC 9700 §2.1.1): a code without a challenge is never redeemed.
        if not code.row.code_challenge:
            raise InvalidGrantError("the authorization request carried no PKCE challenge")
        self.request.resources = requested_resources(self.request, self.request.client.row)

    def authenticate_user(self, authorization_code: _CodeView) -> User | None:
        # A disabled account is refused; a password lock is not consulted: it stops password
        # checks from unknown devices, never a sign-in the owner already completed (known
        # device, recovery code, passkey) nor the owner's grants (checklist 81 over 82).
        user = authorization_code.user
        return user if user.is_active else None

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        code: _CodeView = self.request.authorization_code
        user = self.authenticate_user(code)
        if user is None:
            raise InvalidGrantError("the account is not active")
        grant = code.grant  # locked since the code was read; revocation checked there
        client_row: Client = self.request.client.row
        session = context.db_session()
        now = utcnow()
        # Admin scopes only for a current admin at the admin level (checklist 95).
        scope = grantable_scope(code.row.scope, user, grant.acr)
        if acting_problem(session, grant, now) is not None:
            raise InvalidGrantError("the authorization to act for the company has ended")
        jkt = dpop_binding(client_row, code.row.dpop_jkt)
        body = grant_tokens(
            session,
            grant,
            client_row,
            user,
            scope,
            now,
            self.request.resources,
            jkt=jkt,
            nonce=code.row.nonce,
        )
        return 200, body, self.TOKEN_RESPONSE_HEADER

    def save_token(self, token: dict[str, Any]) -> None:  # stored while minting
        return None

    def delete_authorization_code(self, authorization_code: _CodeView) -> None:
        return None  # consumed atomically in query_authorization_code


# ------------------------------------------------------------------ refresh_token
_TOKENS = cast(Table, Token.__table__)
_LIVE = (
    (_TOKENS.c.id == bindparam("b_id"))
    & _TOKENS.c.consumed_at.is_(None)
    & _TOKENS.c.revoked_at.is_(None)
)
#: Rotation: consume the presented token if and only if it is still live (compare-and-set).
_CONSUME = (
    _TOKENS.update()
    .where(_LIVE)
    .values(consumed_at=bindparam("b_now"), last_used_at=bindparam("b_now"))
)
#: No rotation: the same compare-and-set, sliding the idle expiry instead of consuming.
_SLIDE = (
    _TOKENS.update()
    .where(_LIVE)
    .values(last_used_at=bindparam("b_now"), expires_at=bindparam("b_expires"))
)


def _run_cas(session: Any, statement: Any, params: dict[str, Any]) -> bool:
    """Run a compare-and-set UPDATE (Core, prebuilt) and say whether it hit exactly one row."""
    return bool(session.connection().execute(statement, params).rowcount == 1)


class RefreshTokenGrant(grants.RefreshTokenGrant):  # type: ignore[misc]
    """``grant_type=refresh_token`` (RFC 6749 §6) with the policy in the module docstring."""

    TOKEN_ENDPOINT_AUTH_METHODS = CLIENT_AUTH_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True
    #: Rotate confidential clients' refresh tokens too (default: no, per FAPI 2.0).
    ROTATE_CONFIDENTIAL = False

    def validate_token_request(self) -> None:
        client = self._validate_request_client()
        self.request.client = client
        values = self.request.form.getlist("refresh_token")
        if len(values) != 1 or not values[0]:
            raise InvalidRequestError("refresh_token is required")
        session = context.db_session()
        if not context.services().db.is_sqlite:
            # PostgreSQL: lock the token's grant first (waits for a concurrent revocation or
            # refresh), then read token, grant and user in a statement whose snapshot starts
            # after the wait: their state under the lock in two statements, not three.
            # (SQLite: the request has held the database's write lock since its first
            # statement, so what find_token reads is already current.)
            lock_grant_of_token(values[0])
        found = find_token(session, values[0], "refresh")
        row = found.token if found is not None else None
        # RFC 6749 §6: the refresh token must have been issued to this client (checklist 36).
        if found is None or row is None or row.client_id != client.get_client_id():
            if row is not None:
                log.warning(
                    "client %s presented a refresh token of another client", client.client_id
                )
            raise InvalidGrantError("the refresh token is invalid")
        grant, user = found.grant, found.user
        now = utcnow()
        if row.consumed_at is not None and row.revoked_at is None and grant.revoked_at is None:
            self._reused(row, grant, now)
        try:
            check_live(session, found, context.services().keys, now, clients=context.find_client)
        except DeadTokenError as exc:
            log.info("refresh refused for grant %s: %s", grant.id, exc)
            raise InvalidGrantError("the refresh token is invalid, expired or revoked") from None
        # check_live refused a disabled account; a password lock does not end the owner's
        # grants (checklist 81 over 82).  Re-checked on every refresh: a role taken away
        # ends the admin scope (checklist 95).
        scope = grantable_scope(self._narrowed_scope(row), user, grant.acr)
        self.request.refresh_token = row
        self.request.grant = grant
        self.request.user = user
        self.request.scope = scope
        self.request.resources = requested_resources(self.request, client.row)

    def _reused(self, row: TokenRow, grant: GrantRow, now: dt.datetime) -> None:
        assert row.consumed_at is not None
        if request_started() < row.consumed_at:
            # Arrived before the rotation: a duplicate of the request that won, not a replay.
            log.info("concurrent refresh of grant %s refused (duplicate)", grant.id)
            raise InvalidGrantError("the refresh token has already been used")
        # RFC 9700 §4.14.2: a rotated token used again means it leaked; revoke the grant.
        session = context.db_session()
        repo.revoke_grant(session, grant.id, "refresh_token_reuse", now)
        session.commit()
        log.warning("refresh token reused; grant %s revoked", grant.id)
        raise InvalidGrantError("the refresh token has already been used")

    def _narrowed_scope(self, row: TokenRow) -> str:
        values = self.request.form.getlist("scope")
        if len(values) > 1:
            raise InvalidRequestError("scope was sent more than once")
        if not values:
            return row.scope
        requested = values[0].split()
        granted = row.scope.split()
        # RFC 6749 §6: the scope must not include any scope not originally granted (checklist 37).
        if not requested or not set(requested) <= set(granted):
            raise InvalidScopeError("the requested scope exceeds the granted scope")
        return " ".join(s for s in granted if s in requested)

    def rotates(self, client: Client) -> bool:
        return client.public or self.ROTATE_CONFIDENTIAL

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        row: TokenRow = self.request.refresh_token
        grant: GrantRow = self.request.grant
        user: UserRow | None = self.request.user
        client_row: Client = self.request.client.row
        scope: str = self.request.scope
        session = context.db_session()
        issuer = context.services().tokens
        settings = context.settings()
        now = utcnow()
        jkt = dpop_binding(client_row, row.jkt)
        access, _ = issuer.access_token(
            session, grant, client_row, user, scope, now, self.request.resources, jkt=jkt
        )
        id_token = None
        if user is not None and "openid" in scope.split():
            # OIDC Core §12.2: same iss/sub/aud, the original auth_time, no nonce.
            id_token = issuer.id_token(
                session,
                grant,
                client_row,
                user,
                scope,
                now,
                nonce=None,
                access_token=access,
                authority=authority_claim(session, context.services().vault, grant, scope.split()),
            )
        refresh = None
        if self.rotates(client_row):
            refresh_jkt = jkt if client_row.public else None
            refresh, _ = issuer.refresh_token(
                session, grant, client_row, row.scope, now, refresh_jkt
            )
            consumed = _run_cas(session, _CONSUME, {"b_id": row.id, "b_now": utcnow()})
        else:
            idle_end = now + dt.timedelta(seconds=settings.refresh_token_idle_lifetime)
            consumed = self._slide(session, row, min(idle_end, grant.expires_at), now)
        if not consumed:
            # Another request rotated or revoked it while we were minting: nothing we wrote
            # survives (the view rolls back every non-200 answer).
            raise InvalidGrantError("the refresh token has already been used")
        body = bearer_response(access, scope, refresh, id_token, dpop=jkt is not None)
        return 200, body, self.TOKEN_RESPONSE_HEADER

    @staticmethod
    def _slide(session: Any, row: TokenRow, expires: dt.datetime, now: dt.datetime) -> bool:
        return _run_cas(session, _SLIDE, {"b_id": row.id, "b_now": now, "b_expires": expires})

    def authenticate_refresh_token(self, refresh_token: str) -> TokenRow | None:
        raise NotImplementedError  # replaced by validate_token_request

    def authenticate_user(self, refresh_token: TokenRow) -> UserRow | None:
        return self.request.user  # type: ignore[no-any-return]

    def revoke_old_credential(self, refresh_token: TokenRow) -> None:
        return None  # consumed by compare-and-set in create_token_response


# ------------------------------------------------------------------ client_credentials
class ClientCredentialsGrant(grants.ClientCredentialsGrant):  # type: ignore[misc]
    """``grant_type=client_credentials`` (RFC 6749 §4.4) for department-to-department APIs.

    Confidential clients only; the scope is limited to the client's registered non-user
    scopes (none requested: all of them); the audience comes from RFC 8707 ``resource`` values
    the client registered (unknown: ``invalid_target``).  Each token gets a grant row with no
    user, so revocation and introspection work as for any other token.
    """

    TOKEN_ENDPOINT_AUTH_METHODS = CONFIDENTIAL_AUTH_METHODS

    def validate_token_request(self) -> None:
        client = self.authenticate_token_endpoint_client()
        if client.row.public or not client.check_grant_type(self.GRANT_TYPE):
            raise UnauthorizedClientError("this client may not use client_credentials")
        self.request.client = client
        allowed = [s for s in client.row.scopes if s not in USER_SCOPES and not is_admin_scope(s)]
        values = self.request.form.getlist("scope")
        if len(values) > 1:
            raise InvalidRequestError("scope was sent more than once")
        if values:
            requested = list(dict.fromkeys(values[0].split()))
            if not requested or any(s not in allowed for s in requested):
                raise InvalidScopeError("scope not allowed for this client")
        else:
            requested = allowed
        self.request.scope = " ".join(requested)
        self.request.resources = requested_resources(self.request, client.row)

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        client_row: Client = self.request.client.row
        services = context.services()
        settings = services.settings
        now = utcnow()
        grant = GrantRow(  # a plain row: nothing in this request reads it back
            id=repo.new_id(),
            user_id=None,
            client_id=client_row.client_id,
            scope=self.request.scope,
            claims=None,
            resources=list(self.request.resources),
            sid=None,
            offline=False,
            auth_time=None,
            acr=None,
            amr=[],
            created_at=now,
            expires_at=now + dt.timedelta(seconds=settings.access_token_lifetime),
            revoked_at=None,
            entity_id=None,
            mandate_id=None,
        )
        jkt = dpop_binding(client_row)
        access = services.tokens.client_credentials_token(
            services.db, context.db_session, grant, client_row, self.request.scope, jkt
        )
        body = bearer_response(access, self.request.scope, dpop=jkt is not None)
        return 200, body, self.TOKEN_RESPONSE_HEADER


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
        raise InvalidRequestError(
            "code_challenge must be a base64url SHA-256 digest (43 characters)"
        )
    return challenge, method

"""Issuing and checking tokens: opaque by default, RFC 9068 JWT access tokens per client.

RFC 6749 §1.4-1.5, RFC 9068 (https://www.rfc-editor.org/rfc/rfc9068), OIDC Core §2, §12.

Access and refresh tokens are 256-bit random strings stored by SHA-256 digest; a JWT access
token carries its row id as ``jti`` and is also stored by digest, so revocation, introspection
and userinfo treat both formats alike.  ID tokens are signed with the client's registered
algorithm by the key store (key objects built once per kid, never a PEM parsed per call).

:func:`find_token` is the one token lookup (plain rows, :mod:`idp.storage.rows`) and
:func:`check_live` the one definition of "this token may still be used", shared by the
refresh grant, token exchange, introspection, userinfo, the admin API and the bridge.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from idp.accounts.mandates import acting_problem
from idp.accounts.privacy import IdentityVault
from idp.config import Settings
from idp.oauth.claims import subject_for, user_claims
from idp.oauth.verified_claims import verified_claims_for, with_entity_verified_claims
from idp.storage.db import Database
from idp.storage.models import AuthorizationCode, Client, Grant, SsoSession, Token, User
from idp.storage.prepared import PreparedInsert, PreparedInsertChain, PreparedSelect
from idp.storage.repo import digest, new_id, new_secret
from idp.storage.rows import FoundToken, GrantRow, TokenRow, UserRow
from keys.store import KeyStore

_insert_token = PreparedInsert(Token.__table__)  # type: ignore[arg-type]
_insert_grant = PreparedInsert(Grant.__table__)  # type: ignore[arg-type]
_insert_grant_and_token = PreparedInsertChain(_insert_grant, _insert_token)
_insert_code = PreparedInsert(AuthorizationCode.__table__)  # type: ignore[arg-type]
_insert_grant_and_code = PreparedInsertChain(_insert_grant, _insert_code)


def insert_token(session: Session, **values: Any) -> None:
    """Store a token row (see :class:`PreparedInsert`); nothing reads it back in the request."""
    _insert_token(session, values)


def _grant_values(grant: Grant | GrantRow) -> dict[str, Any]:
    if isinstance(grant, GrantRow):
        return grant._asdict()  # its fields are the columns' names
    return {
        "id": grant.id,
        "user_id": grant.user_id,
        "client_id": grant.client_id,
        "scope": grant.scope,
        "claims": grant.claims,
        "resources": list(grant.resources or []),
        "sid": grant.sid,
        "offline": bool(grant.offline),
        "auth_time": grant.auth_time,
        "acr": grant.acr,
        "amr": list(grant.amr or []),
        "nonce": grant.nonce,
        "created_at": grant.created_at,
        "expires_at": grant.expires_at,
        "entity_id": grant.entity_id,
        "mandate_id": grant.mandate_id,
    }


def insert_grant(session: Session, grant: Grant | GrantRow) -> None:
    """Store a (transient) grant row; see :class:`PreparedInsert`."""
    _insert_grant(session, _grant_values(grant))


def store_grant_and_code(
    db: Database, session: Session, grant: Grant, code: dict[str, Any]
) -> None:
    """Store a person's new grant and its authorization code (``code``: the row's values).

    PostgreSQL: what ``session`` did so far is committed first (the grant may refer to it;
    nothing to send when the request only read through ``reads()``), then both rows are
    stored by one statement that commits itself (:class:`PreparedInsertChain`): one round
    trip where a transaction of two INSERTs is four.  SQLite: both rows in ``session``,
    which the caller commits.
    """
    if db.is_sqlite:
        insert_grant(session, grant)
        _insert_code(session, code)
    else:
        session.commit()
        _insert_grant_and_code.run(db, [_grant_values(grant), code])


def half_hash(value: str, alg: str) -> str:
    """``at_hash``/``c_hash``: left half of the hash matching ``alg`` (OIDC Core §3.1.3.6)."""
    if alg == "EdDSA":
        h = hashlib.sha512(value.encode("ascii")).digest()
    else:
        bits = alg[2:] if alg[:2] in ("RS", "PS", "ES", "HS") else "256"
        h = getattr(hashlib, f"sha{bits}")(value.encode("ascii")).digest()
    return base64.urlsafe_b64encode(h[: len(h) // 2]).rstrip(b"=").decode("ascii")


@dataclass
class TokenIssuer:
    """Mints tokens for a grant; one per app, kept in ``app.extensions``."""

    settings: Settings
    keys: KeyStore
    pairwise_secret: bytes
    vault: IdentityVault | None = None  # opens identity numbers for verified_claims

    @property
    def access_token_alg(self) -> str:
        """ES256 when configured: a tenth of RS256's cost (ARCHITECTURE.md, performance)."""
        algs = self.settings.signing_algorithms
        return "ES256" if "ES256" in algs or not algs else algs[0]

    def wants_jwt(self, client: Client, resources: list[str] | None) -> bool:
        """RFC 9068 JWT access tokens for the client, or for a resource server that asked for
        them (``jwt_access_token_resources``: it validates tokens itself, without
        introspection); opaque otherwise."""
        if client.access_token_format == "jwt":
            return True
        jwt_resources = self.settings.jwt_access_token_resources
        return bool(resources and jwt_resources and any(r in jwt_resources for r in resources))

    def access_token(
        self,
        session: Session,
        grant: Grant | GrantRow,
        client: Client,
        user: User | UserRow | None,
        scope: str,
        now: dt.datetime,
        resources: list[str] | None = None,
        *,
        act: dict[str, Any] | None = None,
        not_after: dt.datetime | None = None,
        jkt: str | None = None,
    ) -> tuple[str, str]:
        """Mint an access token for ``grant``; ``resources`` (RFC 8707) narrow its audience.

        ``act`` (RFC 8693 §4.1) names who acts with it, for a token-exchange result, which
        never outlives its subject token (``not_after``).  ``jkt`` binds it to a DPoP key
        (RFC 9449 §6: ``cnf.jkt``).
        """
        raw, row = self._mint_access(
            grant, client, user, scope, now, resources, act=act, not_after=not_after, jkt=jkt
        )
        insert_token(session, **row)
        return raw, row["id"]

    def client_credentials_token(
        self,
        db: Database,
        session: Callable[[], Session],
        grant: GrantRow,
        client: Client,
        scope: str,
        jkt: str | None = None,
    ) -> str:
        """Store ``grant`` (not yet stored) and a new access token for it; return the token.

        PostgreSQL: both rows in one statement that commits itself, before the answer leaves
        (:class:`PreparedInsertChain`); SQLite: in the request's ``session()``, which the
        caller commits.
        """
        now = grant.created_at
        raw, row = self._mint_access(grant, client, None, scope, now, grant.resources, jkt=jkt)
        if db.is_sqlite:
            insert_grant(session(), grant)
            insert_token(session(), **row)
        else:
            _insert_grant_and_token.run(db, [_grant_values(grant), row])
        return raw

    def _mint_access(
        self,
        grant: Grant | GrantRow,
        client: Client,
        user: User | UserRow | None,
        scope: str,
        now: dt.datetime,
        resources: list[str] | None,
        *,
        act: dict[str, Any] | None = None,
        not_after: dt.datetime | None = None,
        jkt: str | None = None,
    ) -> tuple[str, dict[str, Any]]:
        """A new access token and the row that stores it (by digest)."""
        token_id = new_id()
        expires = now + dt.timedelta(seconds=self.settings.access_token_lifetime)
        if not_after is not None:
            expires = min(expires, not_after)
        audience = list(resources or grant.resources) or [client.client_id]
        kid = None
        if self.wants_jwt(client, resources or grant.resources):
            key = self.keys.signing_key(self.access_token_alg)
            kid = key.kid
            claims: dict[str, Any] = {
                "iss": self.settings.issuer,
                "exp": int(expires.timestamp()),
                "aud": audience[0] if len(audience) == 1 else audience,
                "sub": subject_for(user, client, self.pairwise_secret)
                if user
                else client.client_id,
                "client_id": client.client_id,
                "iat": int(now.timestamp()),
                "jti": token_id,
                "scope": scope,
            }
            if grant.auth_time and user:
                claims["auth_time"] = int(grant.auth_time.timestamp())
            if grant.acr and user:
                claims["acr"] = grant.acr
            if act is not None:
                claims["act"] = act
            if jkt is not None:
                claims["cnf"] = {"jkt": jkt}
            raw = key.sign_jwt(claims, {"typ": "at+jwt"})
        else:
            raw = new_secret(32)
        return raw, {
            "id": token_id,
            "digest": digest(raw),
            "kind": "access",
            "grant_id": grant.id,
            "client_id": client.client_id,
            "user_id": user.id if user else None,
            "scope": scope,
            "audience": audience,
            "kid": kid,
            "created_at": now,
            "expires_at": expires,
            "act": act,
            "jkt": jkt,
        }

    def refresh_token(
        self,
        session: Session,
        grant: Grant | GrantRow,
        client: Client,
        scope: str,
        now: dt.datetime,
        jkt: str | None = None,
    ) -> tuple[str, str]:
        """Mint a refresh token: idle expiry from now, never beyond the grant's absolute end;
        ``jkt`` binds it to a public client's DPoP key (RFC 9449 §5)."""
        raw = new_secret(32)
        idle = now + dt.timedelta(seconds=self.settings.refresh_token_idle_lifetime)
        token_id = new_id()
        insert_token(
            session,
            id=token_id,
            digest=digest(raw),
            kind="refresh",
            grant_id=grant.id,
            client_id=client.client_id,
            user_id=grant.user_id,
            scope=scope,
            audience=[],
            kid=None,
            created_at=now,
            expires_at=min(idle, grant.expires_at),
            jkt=jkt,
        )
        return raw, token_id

    def id_token(
        self,
        session: Session,
        grant: Grant | GrantRow,
        client: Client,
        user: User | UserRow,
        scope: str,
        now: dt.datetime,
        *,
        nonce: str | None,
        access_token: str | None = None,
        code: str | None = None,
        authority: dict[str, Any] | None = None,
    ) -> str:
        """Sign an ID token; ``authority`` is the acting-for-a-company claim (issue 10).

        A release of verified claims is audited in ``session`` (the caller commits).
        """
        alg = client.id_token_signed_response_alg
        claims: dict[str, Any] = {
            "iss": self.settings.issuer,
            "sub": subject_for(user, client, self.pairwise_secret),
            "aud": client.client_id,
            "exp": int(now.timestamp()) + self.settings.id_token_lifetime,
            "iat": int(now.timestamp()),
        }
        if grant.auth_time:
            claims["auth_time"] = int(grant.auth_time.timestamp())
        if nonce:
            claims["nonce"] = nonce
        if grant.acr:
            claims["acr"] = grant.acr
        if grant.amr:
            claims["amr"] = list(grant.amr)
        if grant.sid:
            claims["sid"] = grant.sid
        if access_token:
            claims["at_hash"] = half_hash(access_token, alg)
        if code:
            claims["c_hash"] = half_hash(code, alg)
        claims.update(user_claims(user, scope.split(), client))
        if grant.claims and self.vault is not None:
            # OIDC4IDA verified_claims asked for the ID token (audited in the same session).
            claims.update(
                verified_claims_for(session, user, client, grant.claims, "id_token", self.vault)
            )
        if authority is not None and grant.claims and self.vault:
            # The company's own verified claims, when asked for (issue 10; audited).
            authority = with_entity_verified_claims(
                session, authority, grant, client, "id_token", self.vault
            )
        if authority is not None:
            claims["authority"] = authority
        return self.keys.signing_key(alg).sign_jwt(claims)


_T, _G, _U = Token.__table__, Grant.__table__, User.__table__
_FIND_TOKEN = (
    select(
        *(_T.c[name] for name in TokenRow._fields),
        *(_G.c[name] for name in GrantRow._fields),
        *(_U.c[name] for name in UserRow._fields),
    )
    .select_from(_T.join(_G, _G.c.id == _T.c.grant_id).outerjoin(_U, _U.c.id == _G.c.user_id))
    .where(_T.c.digest == bindparam("digest"))
)
_find_token = PreparedSelect(_FIND_TOKEN)
_find_token_of_kind = PreparedSelect(_FIND_TOKEN.where(_T.c.kind == bindparam("kind")))
_GRANT_AT = len(TokenRow._fields)
_USER_AT = _GRANT_AT + len(GrantRow._fields)


def find_token(session: Session, raw: str | None, kind: str | None = None) -> FoundToken | None:
    """The token stored under ``raw``'s digest, with its grant and user, in one statement.

    The one token lookup: plain rows (:mod:`idp.storage.rows`), not ORM entities.
    """
    if not raw or len(raw) > 4096:
        return None
    if kind is None:
        values = _find_token.first(session, {"digest": digest(raw)})
    else:
        values = _find_token_of_kind.first(session, {"digest": digest(raw), "kind": kind})
    if values is None:
        return None
    user = UserRow._make(values[_USER_AT:]) if values[_USER_AT] is not None else None
    return FoundToken(
        TokenRow._make(values[:_GRANT_AT]), GrantRow._make(values[_GRANT_AT:_USER_AT]), user
    )


class DeadTokenError(Exception):
    """The token may not be used; the message (for logs only) says why."""


def check_live(
    session: Session,
    found: FoundToken,
    keys: KeyStore,
    now: dt.datetime,
    *,
    clients: Callable[[str], Client | None],
) -> None:
    """Raise :class:`DeadTokenError` unless the token found may still be used.

    A token dies with (checklist 25, 38, 41, 42, 43): its own revocation, rotation or expiry;
    the key that signed it (JWT access tokens: ``keys.find(kid)`` is None once revoked); its
    grant (revoked, or past its absolute lifetime); its client (no longer approved; looked up
    in ``clients``); its user (gone, disabled, or a password changed after the grant was
    made); and, for a refresh token of a grant without ``offline_access``, the SSO session it
    was issued in.
    """
    row, grant, user = found
    if row.revoked_at is not None:
        raise DeadTokenError("revoked")
    if row.consumed_at is not None:
        raise DeadTokenError("already used")
    if row.expires_at <= now:
        raise DeadTokenError("expired")
    if row.kid is not None and keys.find(row.kid) is None:
        raise DeadTokenError("signing key revoked")
    if grant.revoked_at is not None:
        raise DeadTokenError("grant revoked")
    if grant.expires_at <= now:
        raise DeadTokenError("grant expired")
    client = clients(row.client_id)
    if client is None or client.status != "approved":
        raise DeadTokenError("client not approved")
    if grant.user_id is not None:
        if user is None or not user.is_active:
            raise DeadTokenError("account disabled or deleted")
        if user.password_changed_at is not None and user.password_changed_at > grant.created_at:
            raise DeadTokenError("password changed since the grant")
    if row.kind == "refresh" and not grant.offline and grant.sid is not None:
        sso = session.get(SsoSession, grant.sid)
        if sso is None or sso.ended_at is not None or sso.expires_at <= now:
            raise DeadTokenError("SSO session ended")
    if grant.entity_id is not None:
        # Acting for a company (issue 10): the company still active, the mandate still live.
        problem = acting_problem(session, grant, now)
        if problem is not None:
            raise DeadTokenError(problem)

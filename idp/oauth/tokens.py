"""Issuing and checking tokens: opaque by default, RFC 9068 JWT access tokens per client.

RFC 6749 §1.4-1.5, RFC 9068 (https://www.rfc-editor.org/rfc/rfc9068), OIDC Core §2, §12.

Access and refresh tokens are 256-bit random strings stored by SHA-256 digest; a JWT access
token carries its row id as ``jti`` and is also stored by digest, so revocation, introspection
and userinfo treat both formats alike.  ID tokens are signed with the client's registered
algorithm by the key store (key objects built once per kid, never a PEM parsed per call).

:func:`check_live` is the one definition of "this token may still be used", shared by the
refresh grant, introspection and userinfo.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from idp.config import Settings
from idp.oauth.claims import subject_for, user_claims
from idp.storage.models import Client, Grant, SsoSession, Token, User, utcnow
from idp.storage.repo import digest, new_id, new_secret
from keys.store import KeyStore


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

    @property
    def access_token_alg(self) -> str:
        """ES256 when configured: a tenth of RS256's cost (ARCHITECTURE.md, performance)."""
        algs = self.settings.signing_algorithms
        return "ES256" if "ES256" in algs or not algs else algs[0]

    def access_token(
        self,
        session: Session,
        grant: Grant,
        client: Client,
        user: User | None,
        scope: str,
        now: dt.datetime,
        resources: list[str] | None = None,
    ) -> tuple[str, Token]:
        """Mint an access token for ``grant``; ``resources`` (RFC 8707) narrow its audience."""
        token_id = new_id()
        expires = now + dt.timedelta(seconds=self.settings.access_token_lifetime)
        audience = list(resources or grant.resources) or [client.client_id]
        kid = None
        if client.access_token_format == "jwt":
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
            raw = key.sign_jwt(claims, {"typ": "at+jwt"})
        else:
            raw = new_secret(32)
        row = Token(
            id=token_id,
            digest=digest(raw),
            kind="access",
            grant_id=grant.id,
            client_id=client.client_id,
            user_id=user.id if user else None,
            scope=scope,
            audience=audience,
            kid=kid,
            created_at=now,
            expires_at=expires,
        )
        session.add(row)
        return raw, row

    def refresh_token(
        self, session: Session, grant: Grant, client: Client, scope: str, now: dt.datetime
    ) -> tuple[str, Token]:
        """Mint a refresh token: idle expiry from now, never beyond the grant's absolute end."""
        raw = new_secret(32)
        idle = now + dt.timedelta(seconds=self.settings.refresh_token_idle_lifetime)
        row = Token(
            id=new_id(),
            digest=digest(raw),
            kind="refresh",
            grant_id=grant.id,
            client_id=client.client_id,
            user_id=grant.user_id,
            scope=scope,
            created_at=now,
            expires_at=min(idle, grant.expires_at),
        )
        session.add(row)
        return raw, row

    def id_token(
        self,
        grant: Grant,
        client: Client,
        user: User,
        scope: str,
        now: dt.datetime,
        *,
        nonce: str | None,
        access_token: str | None = None,
        code: str | None = None,
    ) -> str:
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
        return self.keys.signing_key(alg).sign_jwt(claims)


class DeadTokenError(Exception):
    """The token may not be used; the message (for logs only) says why."""


def check_live(
    session: Session,
    row: Token,
    keys: KeyStore,
    now: dt.datetime,
    *,
    grant: Grant | None = None,
) -> tuple[Grant, User | None]:
    """Return the token's grant and user if the token may still be used, else raise.

    A token dies with (checklist 25, 38, 41, 42, 43): its own revocation, rotation or expiry;
    the key that signed it (JWT access tokens: ``keys.find(kid)`` is None once revoked); its
    grant (revoked, or past its absolute lifetime); its client (no longer approved); its user
    (gone, disabled, or a password changed after the grant was made); and, for a refresh
    token of a grant without ``offline_access``, the SSO session it was issued in.
    """
    if row.revoked_at is not None:
        raise DeadTokenError("revoked")
    if row.consumed_at is not None:
        raise DeadTokenError("already used")
    if row.expires_at <= now:
        raise DeadTokenError("expired")
    if row.kid is not None and keys.find(row.kid) is None:
        raise DeadTokenError("signing key revoked")
    grant = grant or session.get(Grant, row.grant_id)
    if grant is None or grant.revoked_at is not None:
        raise DeadTokenError("grant revoked")
    if grant.expires_at <= now:
        raise DeadTokenError("grant expired")
    client = session.get(Client, row.client_id)
    if client is None or client.status != "approved":
        raise DeadTokenError("client not approved")
    user = None
    if grant.user_id is not None:
        user = session.get(User, grant.user_id)
        if user is None or not user.is_active:
            raise DeadTokenError("account disabled or deleted")
        if user.password_changed_at is not None and user.password_changed_at > grant.created_at:
            raise DeadTokenError("password changed since the grant")
    if row.kind == "refresh" and not grant.offline and grant.sid is not None:
        sso = session.get(SsoSession, grant.sid)
        if sso is None or sso.ended_at is not None or sso.expires_at <= now:
            raise DeadTokenError("SSO session ended")
    return grant, user


def token_is_live(token: Token | None, now: dt.datetime | None = None) -> bool:
    now = now or utcnow()
    return bool(
        token is not None
        and token.revoked_at is None
        and token.consumed_at is None
        and token.expires_at > now
    )

"""Issuing and finding tokens: opaque by default, RFC 9068 JWT per client.

Access and refresh tokens are 256-bit random strings stored by SHA-256 digest; a JWT access
token carries its row id as ``jti`` so revocation applies to it too.  ID tokens are signed
with the client's registered algorithm by the key store (never a PEM parsed per call).
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
from idp.storage.models import Client, Grant, Token, User, utcnow
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

    def access_token(
        self,
        session: Session,
        grant: Grant,
        client: Client,
        user: User | None,
        scope: str,
        now: dt.datetime,
    ) -> tuple[str, Token]:
        token_id = new_id()
        expires = now + dt.timedelta(seconds=self.settings.access_token_lifetime)
        audience = list(grant.resources) or [client.client_id]
        kid = None
        if client.access_token_format == "jwt":
            key = self.keys.signing_key("ES256")
            kid = key.kid
            claims: dict[str, Any] = {
                "iss": self.settings.issuer,
                "exp": int(expires.timestamp()),
                "aud": audience[0] if len(audience) == 1 else audience,
                "sub": subject_for(user, client, self.pairwise_secret) if user else client.client_id,
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


def token_is_live(token: Token | None, now: dt.datetime | None = None) -> bool:
    now = now or utcnow()
    return bool(
        token is not None
        and token.revoked_at is None
        and token.consumed_at is None
        and token.expires_at > now
    )

"""The token lookup's rows: a token, its grant and its user as plain immutable tuples.

Introspection, userinfo, the bridge, refresh and token exchange all start by finding a token
by digest (:func:`idp.oauth.tokens.find_token`).  Reading it as three ORM entities (59
columns) was about 45 % of an introspection's CPU: psycopg builds a column descriptor and a
loader per column, SQLAlchemy an identity-mapped instance per entity.  These rows hold only
the columns that liveness (:func:`idp.oauth.tokens.check_live`) and the answers read; each
field is named exactly as its column, so the statement is built from ``_fields``.

They are detached values, so they stay readable after the read session has closed (userinfo
releases verified claims through another session).  Code that changes a row goes through
the ORM or a statement of its own, never through these.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, NamedTuple


class TokenRow(NamedTuple):
    """An access or refresh token (``tokens``), without its digest."""

    id: str
    kind: str
    grant_id: str
    client_id: str
    scope: str
    audience: list[Any]
    kid: str | None
    created_at: dt.datetime
    expires_at: dt.datetime
    consumed_at: dt.datetime | None
    revoked_at: dt.datetime | None
    act: dict[str, Any] | None
    jkt: str | None


class GrantRow(NamedTuple):
    """The token's grant (``grants``), without its nonce and revocation reason."""

    id: str
    user_id: str | None
    client_id: str
    scope: str
    claims: dict[str, Any] | None
    resources: list[Any]
    sid: str | None
    offline: bool
    auth_time: dt.datetime | None
    acr: str | None
    amr: list[Any]
    created_at: dt.datetime
    expires_at: dt.datetime
    revoked_at: dt.datetime | None
    entity_id: str | None
    mandate_id: str | None


class UserRow(NamedTuple):
    """The grant's person (``users``): status, what claims are made of, roles.

    ``id_number_ciphertext`` is here for verified claims, released after the read session
    has closed (:func:`idp.oauth.verified_claims.verified_claims_for`); it is only opened
    when a claim needs it.
    """

    id: str
    kind: str
    name: str
    status: str
    password_changed_at: dt.datetime | None
    email: str | None
    email_verified: bool
    phone: str | None
    phone_verified: bool
    locale: str | None
    roles: list[Any]
    groups: list[Any]
    directory_id: str | None
    attributes: dict[str, Any]
    updated_at: dt.datetime
    id_number_ciphertext: bytes | None

    @property
    def is_active(self) -> bool:
        """As :attr:`idp.storage.models.User.is_active`."""
        return self.status == "active"


class FoundToken(NamedTuple):
    """A token found by digest, with its grant and its user (None: a client's own grant,
    or the account is gone)."""

    token: TokenRow
    grant: GrantRow
    user: UserRow | None

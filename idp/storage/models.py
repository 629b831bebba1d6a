"""Every table Yitong keeps, in one place (SQLAlchemy 2.0 typed declarative models).

Conventions (see ARCHITECTURE.md "Storage"): secrets are never stored, only their SHA-256
digests (codes, tokens, session references, client secrets) or argon2id hashes (passwords);
identity numbers and TOTP seeds are AES-GCM ciphertexts; every datetime is timezone-aware UTC.
Schema changes go through Alembic (``idp/storage/migrations``); ``tests/storage`` checks that
the migrations and these models agree.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware datetime on every backend (SQLite drops the zone; we put it back)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        return value.astimezone(dt.UTC)

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dt.datetime: UTCDateTime(),
        dict[str, Any]: JSON,
        list[Any]: JSON,
    }


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# ----------------------------------------------------------------------------- accounts
class User(Base):
    """A natural person: a citizen (local password) or department staff (bridged from LDAP).

    ``id`` is random and never reused, so it doubles as the public subject identifier.
    Staff are namespaced by ``(directory_id, directory_key)`` so that ``uid=jdoe`` in two
    departments are two people and never collide with a citizen (checklist item 91).
    """

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), default="citizen")  # citizen | staff
    name: Mapped[str] = mapped_column(String(200))
    id_number_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    id_number_digest: Mapped[str | None] = mapped_column(String(64), unique=True, nullable=True)
    id_number_masked: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # An ID number this account declared while another account, verified below L3, held it
    # (issue 15 item 2): the keyed digest only; the number moves to ``id_number_digest`` when
    # this account is verified at L3 or above and the unverified holder is released.
    id_claim_digest: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    phone: Mapped[str | None] = mapped_column(String(32), unique=True, nullable=True)
    phone_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    email: Mapped[str | None] = mapped_column(String(320), unique=True, nullable=True)
    email_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    password_hash: Mapped[str | None] = mapped_column(String(200), nullable=True)
    password_changed_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="active")  # |disabled|closing|closed
    # Closing the account (注销, issue 15 item 5): asked at, and completed after (cooling-off).
    close_requested_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    close_after: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    locale: Mapped[str | None] = mapped_column(String(8), nullable=True)
    roles: Mapped[list[Any]] = mapped_column(default=list)
    # staff (LDAP) identities
    directory_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    directory_key: Mapped[str | None] = mapped_column(String(256), nullable=True)
    directory_dn: Mapped[str | None] = mapped_column(Text, nullable=True)
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    groups: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (UniqueConstraint("directory_id", "directory_key", name="uq_users_directory"),)

    @property
    def is_active(self) -> bool:
        return self.status == "active"


# ----------------------------------------------------------------------------- legal entities
class LegalEntity(Base):
    """A company (or other organisation with a unified social credit code) as an account.

    The credit code identifies a person's business to others, so it is kept like an identity
    number: AES-GCM ciphertext, found by keyed digest, shown masked (issue 10).  The
    ``representative_id`` is the citizen account of the legal representative (法定代表人).
    """

    __tablename__ = "legal_entities"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    credit_code_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    credit_code_digest: Mapped[str] = mapped_column(String(64), unique=True)
    credit_code_masked: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(32), default="enterprise")
    region: Mapped[str] = mapped_column(String(6))  # administrative division code
    status: Mapped[str] = mapped_column(String(16), default="active")  # |suspended|deregistered
    representative_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="RESTRICT"), index=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    status_changed_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)


class Mandate(Base):
    """A mandate (经办人): a citizen may act for a company in a role, for some clients, a while.

    ``client_ids`` None covers every client.  Offered by the representative or a company
    admin, ``accepted_at`` set by the agent, ``ended_at`` by either side (or an operator).
    """

    __tablename__ = "mandates"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    entity_id: Mapped[str] = mapped_column(
        ForeignKey("legal_entities.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(32))
    client_ids: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    valid_from: Mapped[dt.datetime] = mapped_column()
    valid_until: Mapped[dt.datetime] = mapped_column()
    granted_by: Mapped[str] = mapped_column(String(200))  # an account id, or an operator actor
    # In what capacity: legal-representative, company-admin or operator (the claim says it).
    granted_as: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    accepted_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    ended_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    ended_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    end_reason: Mapped[str | None] = mapped_column(String(64), nullable=True)


# ----------------------------------------------------------------------------- departments
class Department(Base):
    """A government department: it owns clients and has department admins (issue 11)."""

    __tablename__ = "departments"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    # The staff directories whose people belong to this department: its department admins
    # administer them, and a directory group mapped to ``department-admin`` makes its members
    # admins of this department.
    directories: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class AdminRole(Base):
    """An admin role held by an account, scoped to a department for ``department-admin``.

    ``User.roles`` says *whether* an account holds a role (the admin API checks it at every
    call); these rows say *where* a department-scoped role applies.  A ``department-admin``
    without a row here administers no department at all.
    """

    __tablename__ = "admin_roles"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(32))
    department_id: Mapped[str | None] = mapped_column(
        ForeignKey("departments.id", ondelete="CASCADE"), nullable=True
    )
    granted_by: Mapped[str] = mapped_column(String(200), default="")
    granted_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        UniqueConstraint("user_id", "role", "department_id", name="uq_admin_roles_grant"),
    )


class RegistrationToken(Base):
    """An RFC 7591 initial access token issued to a department; kept only as a digest.

    ``uses_left`` is spent by an atomic compare-and-set (:func:`idp.storage.repo.spend_use`),
    so a single-use token registers one client however many requests race for it.
    """

    __tablename__ = "registration_tokens"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    department_id: Mapped[str] = mapped_column(
        ForeignKey("departments.id", ondelete="CASCADE"), index=True
    )
    uses_left: Mapped[int] = mapped_column(Integer, default=1)
    expires_at: Mapped[dt.datetime] = mapped_column()
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)


# ----------------------------------------------------------------------------- clients
class Client(Base):
    """A department's service registered as an OAuth 2.0 / OpenID Connect client.

    Registration metadata follows RFC 7591 / OpenID Connect Registration names so that the
    admin API can speak them directly.  The secret is stored as a SHA-256 digest: secrets are
    server-generated with 256 bits, so a fast digest with constant-time comparison suffices.
    """

    __tablename__ = "clients"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    secret_digest: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # client_secret_jwt needs the shared secret itself (HMAC); stored encrypted, only then.
    secret_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    # After a rotation the previous secret keeps working until this moment (a grace period
    # for the client's deployment to pick up the new one); digest only, never the secret.
    previous_secret_digest: Mapped[str | None] = mapped_column(String(64), nullable=True)
    previous_secret_expires_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    public: Mapped[bool] = mapped_column(Boolean, default=False)
    redirect_uris: Mapped[list[Any]] = mapped_column(default=list)
    post_logout_redirect_uris: Mapped[list[Any]] = mapped_column(default=list)
    scopes: Mapped[list[Any]] = mapped_column(default=list)
    grant_types: Mapped[list[Any]] = mapped_column(default=list)
    response_types: Mapped[list[Any]] = mapped_column(default=list)
    token_endpoint_auth_method: Mapped[str] = mapped_column(String(32))
    jwks: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    jwks_uri: Mapped[str | None] = mapped_column(Text, nullable=True)
    id_token_signed_response_alg: Mapped[str] = mapped_column(String(16), default="RS256")
    subject_type: Mapped[str] = mapped_column(String(16), default="public")
    sector_identifier_uri: Mapped[str | None] = mapped_column(Text, nullable=True)
    sector: Mapped[str | None] = mapped_column(String(255), nullable=True)
    access_token_format: Mapped[str] = mapped_column(String(16), default="opaque")
    require_pushed_authorization_requests: Mapped[bool] = mapped_column(Boolean, default=False)
    backchannel_logout_uri: Mapped[str | None] = mapped_column(Text, nullable=True)
    frontchannel_logout_uri: Mapped[str | None] = mapped_column(Text, nullable=True)
    web_origins: Mapped[list[Any]] = mapped_column(default=list)
    default_acr_values: Mapped[list[Any]] = mapped_column(default=list)
    allowed_claims: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    resources: Mapped[list[Any]] = mapped_column(default=list)
    # RFC 8693: the resources this client may ask a token for by token exchange (none: it may
    # exchange for none); set by operators, not by the client (idp/oauth/token_exchange.py).
    exchange_targets: Mapped[list[Any]] = mapped_column(default=list)
    # The department that owns the client (issue 11): its admins see and change it, no others.
    department_id: Mapped[str | None] = mapped_column(
        ForeignKey("departments.id", ondelete="RESTRICT"), nullable=True, index=True
    )
    # RFC 7592: the digest of the registration access token of a dynamically registered client.
    registration_access_digest: Mapped[str | None] = mapped_column(String(64), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="approved")  # pending|approved|disabled
    # Shown to people and to the approving security admin (issue 11): the English name (the
    # ``client_name#en`` of RFC 7591 §2.2), the logo, what the service is for, and the release
    # the department asked for (claims, account types, minimum assurance) before approval.
    name_en: Mapped[str | None] = mapped_column(String(200), nullable=True)
    logo_uri: Mapped[str | None] = mapped_column(Text, nullable=True)
    purpose: Mapped[str | None] = mapped_column(Text, nullable=True)
    requested_release: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    first_party: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # Release policy (issue 10 item 7; idp/oauth/release.py).  ``allowed_claims`` above is
    # the plain-claim list; verified claims are released only when listed here (None: none).
    allowed_verified_claims: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    min_assurance: Mapped[str | None] = mapped_column(String(4), nullable=True)  # L2..L5
    account_types: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)  # None: all
    # RFC 9449 §5.2: every token request of this client must carry a DPoP proof.
    dpop_bound_access_tokens: Mapped[bool] = mapped_column(Boolean, default=False)


# ----------------------------------------------------------------------------- SSO sessions
class SsoSession(Base):
    """The server-side single-sign-on session; the browser holds only a random reference.

    ``sid`` is the public session identifier put in ID and logout tokens; the cookie value
    is looked up by digest, so a database leak does not hand out live sessions.
    """

    __tablename__ = "sso_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # the sid
    token_digest: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    auth_time: Mapped[dt.datetime] = mapped_column(default=utcnow)
    acr: Mapped[str] = mapped_column(String(64), default="urn:yitong:acr:pwd")
    amr: Mapped[list[Any]] = mapped_column(default=list)
    factors: Mapped[dict[str, Any]] = mapped_column(default=dict)  # factor -> epoch seconds
    expires_at: Mapped[dt.datetime] = mapped_column()
    ended_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    user_agent: Mapped[str | None] = mapped_column(String(300), nullable=True)


class Consent(Base):
    """A user's remembered consent for one client and a set of scopes (OIDC Core §3.1.2.4)."""

    __tablename__ = "consents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.client_id", ondelete="CASCADE"))
    scopes: Mapped[list[Any]] = mapped_column(default=list)
    # The claims agreed to ("name", "v:resident_id_number", "authority:<entity id>"...); a
    # consent is asked again when the released set grows (issue 10 item 7).  None: recorded
    # before the set was kept, so it covers its scopes' plain claims only.
    released: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    granted_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column()

    __table_args__ = (UniqueConstraint("user_id", "client_id", name="uq_consents_user_client"),)


# ----------------------------------------------------------------------------- grants and tokens
class Grant(Base):
    """One authorization: everything a code (or a client-credentials request) gave rise to.

    Tokens point at their grant, so revoking the grant (code reuse, refresh-token reuse,
    logout) kills every token it produced in one statement.
    """

    __tablename__ = "grants"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=True, index=True
    )
    client_id: Mapped[str] = mapped_column(
        ForeignKey("clients.client_id", ondelete="CASCADE"), index=True
    )
    scope: Mapped[str] = mapped_column(Text, default="")
    claims: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    resources: Mapped[list[Any]] = mapped_column(default=list)
    sid: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    offline: Mapped[bool] = mapped_column(Boolean, default=False)
    auth_time: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    acr: Mapped[str | None] = mapped_column(String(64), nullable=True)
    amr: Mapped[list[Any]] = mapped_column(default=list)
    nonce: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column()
    revoked_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    revoked_reason: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Acting for a company (issue 10): the entity chosen at the picker, and the mandate it
    # rests on (None when the person is its legal representative).
    entity_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    mandate_id: Mapped[str | None] = mapped_column(String(64), nullable=True)


class AuthorizationCode(Base):
    """A one-time authorization code, found by digest and consumed by compare-and-set."""

    __tablename__ = "authorization_codes"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    grant_id: Mapped[str] = mapped_column(ForeignKey("grants.id", ondelete="CASCADE"), index=True)
    client_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(String(64))
    redirect_uri: Mapped[str] = mapped_column(Text)
    redirect_uri_sent: Mapped[bool] = mapped_column(Boolean, default=True)
    scope: Mapped[str] = mapped_column(Text)
    nonce: Mapped[str | None] = mapped_column(Text, nullable=True)
    code_challenge: Mapped[str | None] = mapped_column(String(128), nullable=True)
    code_challenge_method: Mapped[str | None] = mapped_column(String(16), nullable=True)
    # RFC 9449 §10: the thumbprint of the key the token request must prove (``dpop_jkt``).
    dpop_jkt: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column()
    consumed_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)


class Token(Base):
    """An access or refresh token, stored only as the SHA-256 digest of its value."""

    __tablename__ = "tokens"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # also the JWT jti
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # access | refresh
    grant_id: Mapped[str] = mapped_column(ForeignKey("grants.id", ondelete="CASCADE"), index=True)
    client_id: Mapped[str] = mapped_column(String(64), index=True)
    user_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    scope: Mapped[str] = mapped_column(Text, default="")
    audience: Mapped[list[Any]] = mapped_column(default=list)
    kid: Mapped[str | None] = mapped_column(String(128), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column()
    last_used_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    consumed_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)  # rotated refresh
    revoked_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    # RFC 8693 §4.1 ``act``: who acts with this token (a token-exchange result), else None.
    act: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # RFC 9449: the JWK SHA-256 thumbprint of the key the token is bound to (None: Bearer).
    jkt: Mapped[str | None] = mapped_column(String(64), nullable=True)


class PushedRequest(Base):
    """A pushed authorization request (RFC 9126), single-use and bound to its client."""

    __tablename__ = "pushed_requests"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    expires_at: Mapped[dt.datetime] = mapped_column()
    used_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)


class DeviceRequest(Base):
    """A decoupled sign-in waiting for a person's decision on another device (RFC 8628).

    ``kind`` ``qr``: the login page showed a QR code carrying the secret whose digest is
    ``code_digest``; only the browser holding the cookie whose digest is ``browser_digest``
    may take the session once the government app approved.  ``kind`` ``device``: the RFC 8628
    device authorization grant; ``code_digest`` is the device_code's, ``user_code_digest`` the
    (normalised) user_code's, and ``grant_id`` the grant the approval wrote.  Both are single
    use: ``status`` moves pending -> approved or denied -> used by compare-and-set only
    (:mod:`idp.interaction.decoupled`).
    """

    __tablename__ = "device_requests"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))  # qr | device
    code_digest: Mapped[str] = mapped_column(String(64), unique=True)
    user_code_digest: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    browser_digest: Mapped[str | None] = mapped_column(String(64), nullable=True)
    client_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    scope: Mapped[str] = mapped_column(Text, default="")
    matching_number: Mapped[str] = mapped_column(String(8))
    ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    user_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    acr: Mapped[str | None] = mapped_column(String(64), nullable=True)
    amr: Mapped[list[Any]] = mapped_column(default=list)
    interval: Mapped[int] = mapped_column(Integer, default=5)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)
    decided_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    last_polled_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    # ``device``: the grant the person's approval wrote; the device's tokens belong to it.
    grant_id: Mapped[str | None] = mapped_column(String(64), nullable=True)


class SeenJti(Base):
    """Replay cache for one-time JWT identifiers (client assertions, request objects)."""

    __tablename__ = "seen_jtis"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)


class LogoutDelivery(Base):
    """Persistent outbox of back-channel logout messages, retried with back-off.

    ``logout_token`` is the form value POSTed under the name ``parameter``: a Back-Channel
    Logout token (``logout_token``) or a CAS single-logout ``LogoutRequest``
    (``logoutRequest``); ``client_id`` is the client's id or ``cas:<service id>``.
    """

    __tablename__ = "logout_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    client_id: Mapped[str] = mapped_column(String(64))
    uri: Mapped[str] = mapped_column(Text)
    logout_token: Mapped[str] = mapped_column(Text)
    parameter: Mapped[str] = mapped_column(
        String(32), default="logout_token", server_default="logout_token"
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    abandoned_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


# ----------------------------------------------------------------------------- CAS
class CasService(Base):
    """A service allowed to use the CAS server (issue 13 item 1), registered like a client.

    A service matches by exact URL (``service_url``) or by an anchored regular expression an
    administrator set (``service_pattern``, ``^…$``; never a bare wildcard).  ``attributes``
    names the claims released to it on ``/cas/p3/serviceValidate``.
    """

    __tablename__ = "cas_services"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    service_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    service_pattern: Mapped[str | None] = mapped_column(Text, nullable=True)
    attributes: Mapped[list[Any]] = mapped_column(default=list)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class CasTicket(Base):
    """A CAS service ticket (``ST-…``), kept by digest; spent once, bound to its service.

    ``session_index`` is set only when a validation succeeded: the spent ticket is then the
    ``SessionIndex`` of the single-logout request (it grants nothing any more).
    """

    __tablename__ = "cas_tickets"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    service_id: Mapped[str] = mapped_column(
        ForeignKey("cas_services.id", ondelete="CASCADE"), index=True
    )
    service: Mapped[str] = mapped_column(Text)  # the exact URL the ticket was issued for
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    sid: Mapped[str] = mapped_column(String(64), index=True)
    primary: Mapped[bool] = mapped_column(Boolean, default=False)  # from fresh credentials
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column()
    consumed_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    session_index: Mapped[str | None] = mapped_column(Text, nullable=True)


# ----------------------------------------------------------------------------- upstream federation
class UpstreamLink(Base):
    """An account linked to an identity at the upstream provider (issue 13 item 3).

    Made only with the person's consent, after the upstream asserted a *verified* identity
    number equal to the account's (never by e-mail); one account per upstream subject and
    one upstream subject per account.
    """

    __tablename__ = "upstream_links"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    issuer: Mapped[str] = mapped_column(String(255))
    subject: Mapped[str] = mapped_column(String(255))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        UniqueConstraint("issuer", "subject", name="uq_upstream_links_subject"),
        UniqueConstraint("issuer", "user_id", name="uq_upstream_links_user"),
    )


class UpstreamSession(Base):
    """Which of our SSO sessions began with which upstream session: the upstream's
    back-channel logout (by ``sid``, or by ``sub``) ends ours."""

    __tablename__ = "upstream_sessions"

    sid: Mapped[str] = mapped_column(
        ForeignKey("sso_sessions.id", ondelete="CASCADE"), primary_key=True
    )
    issuer: Mapped[str] = mapped_column(String(255))
    subject: Mapped[str] = mapped_column(String(255), index=True)
    upstream_sid: Mapped[str | None] = mapped_column(String(255), nullable=True, index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


# ----------------------------------------------------------------------------- keys
class SigningKey(Base):
    """A signing key and its lifecycle state (next -> active -> retired -> removed; revoked).

    ``private_ciphertext`` is AES-GCM under the key-encryption key named by ``kek_id``; keys
    held in a hardware module store only a handle (``backend='pkcs11'``, ``hsm_label``).
    """

    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(String(128), primary_key=True)
    alg: Mapped[str] = mapped_column(String(16), index=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    backend: Mapped[str] = mapped_column(String(16), default="sql")
    public_jwk: Mapped[dict[str, Any]] = mapped_column(default=dict)
    private_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    kek_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    hsm_label: Mapped[str | None] = mapped_column(String(128), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    activated_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    retired_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    remove_after: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)


# ----------------------------------------------------------------------------- MFA and policy
class TotpCredential(Base):
    """A TOTP seed (encrypted) and the last accepted time step, advanced atomically."""

    __tablename__ = "totp_credentials"

    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    secret_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    last_step: Mapped[int] = mapped_column(BigInteger, default=0)
    confirmed_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class RecoveryCode(Base):
    __tablename__ = "recovery_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    digest: Mapped[str] = mapped_column(String(200))
    used_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class WebAuthnCredential(Base):
    __tablename__ = "webauthn_credentials"

    credential_id: Mapped[str] = mapped_column(String(512), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    sign_count: Mapped[int] = mapped_column(BigInteger, default=0)
    transports: Mapped[list[Any]] = mapped_column(default=list)
    name: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)


class OneTimeCode(Base):
    """SMS (or e-mail) one-time codes, stored by digest, single-use, expiring."""

    __tablename__ = "one_time_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    destination: Mapped[str] = mapped_column(String(320), index=True)
    purpose: Mapped[str] = mapped_column(String(32))
    digest: Mapped[str] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column()
    used_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)


class OutboxMessage(Base):
    """Development outbox: messages the demo 'sends' (SMS, e-mail), shown by ``make demo``."""

    __tablename__ = "outbox_messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(16))
    destination: Mapped[str] = mapped_column(String(320))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Throttle(Base):
    """Failure counters for back-off and lockout, keyed by account or client address."""

    __tablename__ = "throttles"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_failure_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    blocked_until: Mapped[dt.datetime | None] = mapped_column(nullable=True)


class Policy(Base):
    """A security policy value set by a security admin (MFA, passwords, sessions, lockout)."""

    __tablename__ = "policies"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    updated_by: Mapped[str | None] = mapped_column(String(200), nullable=True)


class DirectoryConfig(Base):
    """A department LDAP directory added through the admin API (settings-file ones are not stored)."""

    __tablename__ = "directories"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


# ----------------------------------------------------------------------------- identity assurance
class IdentityVerification(Base):
    """One proof of who a person is (issue 10 item 5; docs/identity-assurance.md).

    Separate from authentication strength (``acr``): it says how well the *identity* behind
    the account was established, by which method, on what evidence and by whom.  Records are
    only ever added; the account's level is the highest one recorded.
    """

    __tablename__ = "identity_verifications"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    level: Mapped[str] = mapped_column(String(4))  # L2 | L3 | L4 | L5
    method: Mapped[str] = mapped_column(String(16))  # self-declared|registry|face|counter|...
    evidence: Mapped[list[Any]] = mapped_column(default=list)  # OIDC4IDA evidence objects
    txn: Mapped[str] = mapped_column(String(64))  # verification_process reference
    verifier: Mapped[str] = mapped_column(String(200))
    verified_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class EntityVerification(Base):
    """One proof of a company's identity (issue 10; docs/identity-assurance.md "Companies"):
    L3 an enterprise-registry match, L5 an electronic business licence.  It counts until
    ``expires_at`` unless ``withdrawn_at`` (re-verification found the registry disagreeing).
    """

    __tablename__ = "entity_verifications"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    entity_id: Mapped[str] = mapped_column(
        ForeignKey("legal_entities.id", ondelete="CASCADE"), index=True
    )
    level: Mapped[str] = mapped_column(String(4))  # L3 | L5
    method: Mapped[str] = mapped_column(String(16))  # registry | e-licence
    evidence: Mapped[list[Any]] = mapped_column(default=list)  # OIDC4IDA evidence objects
    txn: Mapped[str] = mapped_column(String(64))
    verifier: Mapped[str] = mapped_column(String(200))
    verified_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column()
    withdrawn_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    withdrawn_reason: Mapped[str | None] = mapped_column(String(64), nullable=True)


# ----------------------------------------------------------------------------- audit
class AuditEvent(Base):
    """One hash-chained audit entry; ``digest`` covers the entry and the previous digest."""

    __tablename__ = "audit_events"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(64), index=True)
    target: Mapped[str | None] = mapped_column(String(200), nullable=True)
    outcome: Mapped[str] = mapped_column(String(16), default="success")
    ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    prev_digest: Mapped[str] = mapped_column(String(64))
    digest: Mapped[str] = mapped_column(String(64))


Index("ix_tokens_grant_kind", Token.grant_id, Token.kind)

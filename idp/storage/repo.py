"""Narrow storage functions, keyed by digest (fosite ``handler/oauth2/storage.go`` style).

Raw codes, tokens and session references exist only in HTTP responses and cookies; the
database keeps their SHA-256 digests.  The compare-and-set helpers here are the only places
where a one-time credential is consumed, so their atomicity is easy to audit.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from idp.storage.hot import RedisStore
from idp.storage.models import (
    AuthorizationCode,
    CasTicket,
    Client,
    DeviceRequest,
    Grant,
    RegistrationToken,
    SeenJti,
    Token,
    User,
    utcnow,
)


def digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def new_secret(nbytes: int = 32) -> str:
    """A random credential of ``nbytes`` bytes (256 bits by default), base64url."""
    return secrets.token_urlsafe(nbytes)


def new_id() -> str:
    return secrets.token_hex(16)


# ---------------------------------------------------------------------- queries
def usable_identifier(value: str | None, limit: int) -> bool:
    """A lookup key worth a query: present, not too long, and without control characters
    (PostgreSQL refuses NUL in text; every backend must answer "not found" alike)."""
    return bool(value) and len(value or "") <= limit and (value or "").isprintable()


def query_client(session: Session, client_id: str | None) -> Client | None:
    if not usable_identifier(client_id, 64):
        return None
    return session.get(Client, client_id)


def query_user(session: Session, user_id: str | None) -> User | None:
    if not user_id:
        return None
    return session.get(User, user_id)


def query_token(session: Session, raw: str, kind: str | None = None) -> Token | None:
    if not raw or len(raw) > 4096:
        return None
    stmt = select(Token).where(Token.digest == digest(raw))
    if kind:
        stmt = stmt.where(Token.kind == kind)
    return session.scalars(stmt).first()


def query_code(session: Session, raw: str) -> AuthorizationCode | None:
    if not raw or len(raw) > 512:
        return None
    return session.scalars(_CODE, {"code_digest": digest(raw)}).first()


# Built once: a prepared SELECT costs less than ``session.get``'s lookup machinery.
_CODE = select(AuthorizationCode).where(AuthorizationCode.digest == bindparam("code_digest"))


def code_for_redemption(session: Session, raw: str) -> tuple[AuthorizationCode, Grant, User] | None:
    """An authorization code with its grant and account, read by one statement, the grant
    row locked until the transaction ends (PostgreSQL ``FOR UPDATE``; SQLite's request holds
    the database's write lock from its first statement): a concurrent revocation or second
    redemption waits for this one, then sees its result."""
    if not raw or len(raw) > 512:
        return None
    found = session.execute(_CODE_GRANT_USER, {"code_digest": digest(raw)}).first()
    return (found[0], found[1], found[2]) if found is not None else None


_CODE_GRANT_USER = (
    select(AuthorizationCode, Grant, User)
    .join(Grant, Grant.id == AuthorizationCode.grant_id)
    .join(User, User.id == AuthorizationCode.user_id)
    .where(AuthorizationCode.digest == bindparam("code_digest"))
    .with_for_update(of=Grant)
    .execution_options(populate_existing=True)
)


# ---------------------------------------------------------------------- one-time consumption
def consume_once(session: Session, purpose: str, value: str, expires_at: dt.datetime) -> bool:
    """Record that ``value`` was used for ``purpose``; False if it already was.

    The one helper for "use exactly once" of things that have no row of their own (client
    assertion ``jti``, WebAuthn challenges, interaction tokens, pending logins): an insert
    into ``seen_jtis`` whose primary key makes the second use fail, atomically on every
    database and across workers.  It commits ``session`` (the caller's earlier writes too);
    the entry is kept until ``expires_at``, after which the value is dead anyway.
    """
    now = utcnow()
    if secrets.randbelow(100) == 0:  # purge now and then; the table stays small
        session.execute(
            delete(SeenJti)
            .where(SeenJti.expires_at < now)
            .execution_options(synchronize_session=False)
        )
    session.add(SeenJti(digest=digest(f"{purpose}\x00{value}"), expires_at=expires_at))
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        return False
    return True


def consume_once_shared(
    session: Session, hot: RedisStore | None, purpose: str, value: str, expires_at: dt.datetime
) -> bool:
    """:func:`consume_once` in Redis when it is configured (issue 12: a replay cache written on
    every client authentication, seen by every node at once, no row), else in the database.

    Redis down raises :class:`~idp.errors.StateStoreUnavailable`: the value is neither accepted
    unchecked nor checked against the database, which never saw the earlier uses.
    """
    if hot is None:
        return consume_once(session, purpose, value, expires_at)
    ttl = int((expires_at - utcnow()).total_seconds()) + 1
    return hot.claim_once(purpose, digest(f"{purpose}\x00{value}"), ttl)


def was_consumed(session: Session, purpose: str, value: str) -> bool:
    """Whether :func:`consume_once` already recorded ``value`` for ``purpose``."""
    return session.get(SeenJti, digest(f"{purpose}\x00{value}")) is not None


def consume_code(session: Session, code: AuthorizationCode, now: dt.datetime) -> bool:
    """Mark the code used if and only if nobody did before (atomic compare-and-set)."""
    result = session.execute(_CONSUME_CODE, {"code_digest": code.digest, "consumed": now})
    return result.rowcount == 1  # type: ignore[attr-defined,no-any-return]


# Built once: run at every code redemption.
_CONSUME_CODE = (
    update(AuthorizationCode)
    .where(
        AuthorizationCode.digest == bindparam("code_digest"),
        AuthorizationCode.consumed_at.is_(None),
    )
    .values(consumed_at=bindparam("consumed", type_=AuthorizationCode.consumed_at.type))
    .execution_options(synchronize_session=False)
)


def consume_cas_ticket(session: Session, ticket: CasTicket, now: dt.datetime) -> bool:
    """Spend a CAS service ticket if and only if nobody did before (atomic compare-and-set).

    CAS 3.0 §3.1.1: any validation attempt spends the ticket, whatever its outcome.
    """
    result = session.execute(
        update(CasTicket)
        .where(CasTicket.digest == ticket.digest, CasTicket.consumed_at.is_(None))
        .values(consumed_at=now)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined,no-any-return]


def advance_device_request(
    session: Session,
    request_id: str,
    *,
    expect: str,
    now: dt.datetime,
    user_id: str | None = None,
    **values: object,
) -> bool:
    """Move a decoupled sign-in (QR login, RFC 8628) out of status ``expect`` if and only if
    it is still there and unexpired (and, with ``user_id``, claimed by that account): the
    atomic compare-and-set behind "approved once", "denied once", "used once"."""
    stmt = update(DeviceRequest).where(
        DeviceRequest.id == request_id,
        DeviceRequest.status == expect,
        DeviceRequest.expires_at > now,
    )
    if user_id is not None:
        stmt = stmt.where(DeviceRequest.user_id == user_id)
    result = session.execute(stmt.values(**values).execution_options(synchronize_session=False))
    return result.rowcount == 1  # type: ignore[attr-defined,no-any-return]


def poll_device_request(
    session: Session,
    request_id: str,
    last_polled: dt.datetime | None,
    *,
    now: dt.datetime,
    interval: int,
) -> bool:
    """Record an RFC 8628 poll if no other poll was recorded since ``last_polled``
    (compare-and-set), with the interval the device must keep from now on."""
    seen = (
        DeviceRequest.last_polled_at.is_(None)
        if last_polled is None
        else DeviceRequest.last_polled_at == last_polled
    )
    result = session.execute(
        update(DeviceRequest)
        .where(DeviceRequest.id == request_id, DeviceRequest.status == "pending", seen)
        .values(last_polled_at=now, interval=interval)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined,no-any-return]


def claim_device_request(session: Session, request_id: str, user_id: str) -> bool:
    """The first account to read a decoupled sign-in takes it (compare-and-set)."""
    result = session.execute(
        update(DeviceRequest)
        .where(DeviceRequest.id == request_id, DeviceRequest.user_id.is_(None))
        .values(user_id=user_id)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined,no-any-return]


def consume_refresh_token(session: Session, token: Token, now: dt.datetime) -> bool:
    """Rotate: mark a refresh token used if it is still live (atomic compare-and-set)."""
    result = session.execute(
        update(Token)
        .where(Token.id == token.id, Token.consumed_at.is_(None), Token.revoked_at.is_(None))
        .values(consumed_at=now, last_used_at=now)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined,no-any-return]


def spend_use(session: Session, token: RegistrationToken, now: dt.datetime) -> bool:
    """Spend one use of an initial access token if it is still live (atomic compare-and-set).

    The decrement happens in the database, guarded by ``uses_left > 0``, so two requests
    racing for the last use cannot both win (issue 11).
    """
    result = session.execute(
        update(RegistrationToken)
        .where(
            RegistrationToken.id == token.id,
            RegistrationToken.uses_left > 0,
            RegistrationToken.expires_at > now,
            RegistrationToken.revoked_at.is_(None),
        )
        .values(uses_left=RegistrationToken.uses_left - 1)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined,no-any-return]


# ---------------------------------------------------------------------- revocation
def revoke_grant(
    session: Session, grant_id: str, reason: str, now: dt.datetime | None = None
) -> None:
    """Revoke a grant and every token it produced, in one transaction."""
    now = now or utcnow()
    session.execute(
        update(Grant)
        .where(Grant.id == grant_id, Grant.revoked_at.is_(None))
        .values(revoked_at=now, revoked_reason=reason)
        .execution_options(synchronize_session=False)
    )
    session.execute(
        update(Token)
        .where(Token.grant_id == grant_id, Token.revoked_at.is_(None))
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )


def revoke_user_grants(
    session: Session,
    user_id: str,
    reason: str,
    *,
    include_offline: bool = True,
    sid: str | None = None,
    except_sid: str | None = None,
) -> list[str]:
    """Revoke a user's grants (all, those of one SSO session, or all but one session's);
    returns their ids."""
    stmt = select(Grant.id).where(Grant.user_id == user_id, Grant.revoked_at.is_(None))
    if not include_offline:
        stmt = stmt.where(Grant.offline.is_(False))
    if sid is not None:
        stmt = stmt.where(Grant.sid == sid)
    if except_sid is not None:
        stmt = stmt.where((Grant.sid.is_(None)) | (Grant.sid != except_sid))
    ids = list(session.scalars(stmt))
    for gid in ids:
        revoke_grant(session, gid, reason)
    return ids


def revoke_client_grants(session: Session, client_id: str, reason: str) -> list[str]:
    """Revoke every live grant of a client (and so every token): a disabled client's tokens
    die at once, not only when the next check notices its status (issue 11)."""
    stmt = select(Grant.id).where(Grant.client_id == client_id, Grant.revoked_at.is_(None))
    ids = list(session.scalars(stmt))
    for gid in ids:
        revoke_grant(session, gid, reason)
    return ids

"""Ticket bridge protocol v1: signed requests, tickets, tokens, user info, logout.

The protocol text is docs/integrating.md, "Ticket bridge"; what each step enforces:

- **Signed browser requests** (:func:`verify_request`): every parameter once; ``version=1``;
  a registered, enabled ``system_id``; ``timestamp`` within ``bridge_request_max_skew`` of
  our clock; ``signature`` = hex HMAC-SHA-256, keyed with the system's secret, of
  :func:`canonical` (the endpoint path, a newline, the other parameters sorted by name and
  percent-encoded as RFC 3986 unreserved characters); and only then the ``nonce``, spent
  once per system by :func:`~idp.storage.repo.consume_once` (a replay inside the window is
  ``replayed_request``; nothing unsigned can spend a nonce).  Or, equivalently, a
  ``request`` JWT (HS256 with the secret, ``typ: bridge-request+jwt``) whose ``iss``,
  ``aud``, ``iat`` and ``jti`` are the system, the endpoint URL, the timestamp and the nonce.
- **Tickets** (:func:`issue_ticket`): ``BT-`` and 256 random bits, the authorization code of a
  new grant for the system (digest stored only), ``bridge_ticket_lifetime`` seconds.
- **Exchange** (:func:`exchange_ticket`): spent by compare-and-set whatever follows; a ticket
  of another system is spent too (it leaked) and a second use revokes the grant and every
  token it gave (RFC 6749 §4.1.2's rule for codes); then expiry and the session's life.
- **User info** (:func:`user_info`): the token must be this system's and pass
  :func:`~idp.oauth.tokens.check_live` (revoked at logout, a mandate ended, the account
  disabled…); claims are the system's allow-list only; ``acting_for`` is the ``authority``
  claim of :func:`~idp.accounts.mandates.authority_claim`.
- **Logout** (:func:`end_token_session`): server to server, the SSO session the token was
  issued in ends through :func:`~idp.interaction.sessions.end_sessions`.

Every call is audited (``bridge.*``), refusals too.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from joserfc.jwk import OctKey
from sqlalchemy.orm import Session

from idp import audit
from idp.accounts.mandates import authority_claim
from idp.bridge.registry import is_system, system_secret
from idp.errors import (
    BridgeError,
    BridgeInvalidRequestError,
    BridgeInvalidSignatureError,
    BridgeInvalidTicketError,
    BridgeInvalidTokenError,
    BridgeReplayedRequestError,
    BridgeStaleRequestError,
    BridgeUnknownSystemError,
)
from idp.interaction.sessions import Ended, end_sessions
from idp.oauth.claims import subject_for, user_claims
from idp.oauth.jose_inbound import InboundJwtError, check_times, verify_jws
from idp.oauth.tokens import DeadTokenError, check_live, find_token
from idp.services import Services
from idp.storage import repo
from idp.storage.models import AuthorizationCode, Client, Grant, SsoSession, User, utcnow
from idp.storage.rows import GrantRow, UserRow

VERSION = "1"
TICKET_PREFIX = "BT-"
MAX_TICKET = 128
REQUIRED = ("version", "system_id", "timestamp", "nonce", "signature")
_NONCE = re.compile(r"[A-Za-z0-9_-]{16,128}")
_SIGNATURE = re.compile(r"[0-9a-f]{64}")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
MAX_VALUE = 2048
MAX_JWT = 8192
JWT_TYP = "bridge-request+jwt"
JWT_PROTOCOL_CLAIMS = frozenset({"iss", "aud", "iat", "exp", "jti", "version"})


def _encode(value: str) -> str:
    return quote(value, safe="-_.~")


def canonical(path: str, params: Mapping[str, str]) -> bytes:
    """What a v1 signature covers: ``path`` LF ``k=v&…`` sorted by name, ``signature`` left
    out, names and values UTF-8 and percent-encoded except ``A-Z a-z 0-9 - _ . ~``."""
    pairs = sorted((k, v) for k, v in params.items() if k != "signature")
    return (path + "\n" + "&".join(f"{_encode(k)}={_encode(v)}" for k, v in pairs)).encode()


def signature_of(secret: bytes, path: str, params: Mapping[str, str]) -> str:
    return hmac.new(secret, canonical(path, params), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class SignedRequest:
    """A browser request that verified: the system and its (single-valued) parameters."""

    system: Client
    params: dict[str, str]


def find_system(session: Session, system_id: str | None) -> Client:
    row = repo.query_client(session, system_id)
    if row is None or not is_system(row) or row.status != "approved":
        raise BridgeUnknownSystemError("no enabled system is registered under this system_id")
    return row


def verify_request(
    session: Session,
    services: Services,
    multi: Mapping[str, list[str]],
    path: str,
    *,
    now: dt.datetime | None = None,
) -> SignedRequest:
    """Check a signed browser request (see the module docstring); raise a BridgeError.

    Two equivalent forms: the parameters with an HMAC ``signature``, or ``system_id`` and a
    ``request`` JWT (HS256 with the system's secret) carrying them as claims.
    """
    now = now or utcnow()
    if any(len(values) != 1 for values in multi.values()):
        raise BridgeInvalidRequestError("a parameter was sent more than once")
    params = {k: v[0] for k, v in multi.items()}
    if any(len(k) > 64 or len(v) > MAX_JWT for k, v in params.items()):
        raise BridgeInvalidRequestError("a parameter is too long")
    if "request" in params:
        return _verify_jwt(session, services, params, path, now)
    missing = [name for name in REQUIRED if not params.get(name)]
    if missing:
        raise BridgeInvalidRequestError(f"missing parameter(s): {', '.join(missing)}")
    if any(len(v) > MAX_VALUE for v in params.values()):
        raise BridgeInvalidRequestError("a parameter is too long")
    if params["version"] != VERSION:
        raise BridgeInvalidRequestError("unsupported protocol version (this server speaks 1)")
    system = find_system(session, params["system_id"])
    if not _TIMESTAMP.fullmatch(params["timestamp"]):
        raise BridgeInvalidRequestError("timestamp must be whole seconds since the epoch")
    _check_time(services, int(params["timestamp"]), now)
    _check_nonce(params["nonce"])
    if not _SIGNATURE.fullmatch(params["signature"]):
        raise BridgeInvalidSignatureError("signature must be 64 lower-case hex digits")
    expected = signature_of(system_secret(system, services.kek), path, params)
    if not hmac.compare_digest(expected, params["signature"]):
        raise BridgeInvalidSignatureError("signature does not verify with the system's secret")
    _spend_nonce(session, services, system, params["nonce"], now)
    return SignedRequest(system, params)


def _check_time(services: Services, timestamp: int, now: dt.datetime) -> None:
    skew = services.settings.bridge_request_max_skew
    if abs(int(now.timestamp()) - timestamp) > skew:
        raise BridgeStaleRequestError(f"timestamp is more than {skew} seconds from server time")


def _check_nonce(nonce: str) -> None:
    if not _NONCE.fullmatch(nonce):
        raise BridgeInvalidRequestError("nonce must be 16 to 128 characters of A-Z a-z 0-9 - _")


def _spend_nonce(
    session: Session, services: Services, system: Client, nonce: str, now: dt.datetime
) -> None:
    """Only a verified request spends its nonce: nothing unsigned can burn one."""
    expires = now + dt.timedelta(seconds=2 * services.settings.bridge_request_max_skew)
    if not repo.consume_once(session, f"bridge-nonce:{system.client_id}", nonce, expires):
        raise BridgeReplayedRequestError("this nonce was used already")


def _verify_jwt(
    session: Session, services: Services, params: dict[str, str], path: str, now: dt.datetime
) -> SignedRequest:
    """The JWT form: ``iss`` the system, ``aud`` the endpoint's URL, ``iat`` the timestamp,
    ``jti`` the nonce, ``version`` 1; the other claims are the parameters (strings)."""
    if set(params) != {"system_id", "request"}:
        raise BridgeInvalidRequestError("with request, send system_id and nothing else")
    system = find_system(session, params["system_id"])
    key = OctKey.import_key(system_secret(system, services.kek))
    try:
        verified = verify_jws(
            params["request"],
            algorithms=("HS256",),
            resolve_key=lambda _header: [key],
            typ=(JWT_TYP,),
            max_size=MAX_JWT,
        )
    except InboundJwtError as exc:
        raise BridgeInvalidSignatureError(f"request JWT refused: {exc}") from None
    claims = verified.claims
    if claims.get("iss") != system.client_id:
        raise BridgeInvalidSignatureError("request JWT: iss must be the system_id")
    if claims.get("aud") != services.settings.endpoint(path):
        raise BridgeInvalidSignatureError("request JWT: aud must be this endpoint's URL")
    if claims.get("version") != VERSION:
        raise BridgeInvalidRequestError("unsupported protocol version (this server speaks 1)")
    iat, jti = claims.get("iat"), claims.get("jti")
    if not isinstance(iat, int) or isinstance(iat, bool) or not isinstance(jti, str):
        raise BridgeInvalidRequestError("request JWT needs iat (seconds) and jti (the nonce)")
    _check_time(services, iat, now)
    try:
        check_times(claims, now=now, require_exp=False)
    except InboundJwtError as exc:
        raise BridgeStaleRequestError(f"request JWT: {exc}") from None
    _check_nonce(jti)
    extra = {k: v for k, v in claims.items() if k not in JWT_PROTOCOL_CLAIMS}
    if not all(isinstance(v, str) and len(v) <= MAX_VALUE for v in extra.values()):
        raise BridgeInvalidRequestError("request JWT parameters must be short strings")
    _spend_nonce(session, services, system, jti, now)
    return SignedRequest(system, {"system_id": system.client_id, **extra})


def audit_refusal(
    services: Services, action: str, error: BridgeError, *, system_id: str | None, ip: str | None
) -> None:
    """Record a refused call in a transaction of its own (nothing else of it is kept)."""
    audit.record_now(
        services.db,
        action,
        actor=f"bridge:{(system_id or 'unknown')[:64]}",
        outcome="failure",
        ip=ip,
        details={"error": error.code, "reason": error.description},
    )


# ------------------------------------------------------------------ tickets
def issue_ticket(
    session: Session,
    services: Services,
    system: Client,
    user: User,
    sso: SsoSession,
    *,
    entity_id: str | None = None,
    mandate_id: str | None = None,
    ip: str | None = None,
    now: dt.datetime | None = None,
) -> str:
    """A new one-time ticket for ``system`` from ``sso``; the caller commits."""
    now = now or utcnow()
    settings = services.settings
    grant = Grant(
        id=repo.new_id(),
        user_id=user.id,
        client_id=system.client_id,
        scope=" ".join(system.scopes),
        sid=sso.id,
        offline=False,
        auth_time=sso.auth_time,
        acr=sso.acr,
        amr=list(sso.amr),
        created_at=now,
        expires_at=now + dt.timedelta(seconds=settings.session_absolute_timeout),
        entity_id=entity_id,
        mandate_id=mandate_id,
    )
    session.add(grant)
    session.flush()
    ticket = TICKET_PREFIX + repo.new_secret(32)
    session.add(
        AuthorizationCode(
            digest=repo.digest(ticket),
            grant_id=grant.id,
            client_id=system.client_id,
            user_id=user.id,
            redirect_uri=system.redirect_uris[0],
            scope=grant.scope,
            created_at=now,
            expires_at=now + dt.timedelta(seconds=settings.bridge_ticket_lifetime),
        )
    )
    audit.record(
        session,
        "bridge.ticket.issue",
        actor=user.id,
        target=f"bridge:{system.client_id}",
        ip=ip,
        details={"sid": sso.id, "entity": entity_id, "mandate": mandate_id},
    )
    return ticket


def exchange_ticket(
    session: Session,
    services: Services,
    system: Client,
    ticket: str | None,
    *,
    ip: str | None = None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """Spend ``ticket`` and mint an access token for ``system``; commits either way."""
    now = now or utcnow()
    if not ticket:
        raise BridgeInvalidRequestError("ticket is required")
    if not ticket.startswith(TICKET_PREFIX) or not repo.usable_identifier(ticket, MAX_TICKET):
        raise BridgeInvalidTicketError("ticket not recognized")
    code = repo.query_code(session, ticket)
    if code is None or not code.digest:
        raise BridgeInvalidTicketError("ticket not recognized")
    if not repo.consume_code(session, code, now):
        repo.revoke_grant(session, code.grant_id, "ticket_reuse", now)
        session.commit()
        raise BridgeInvalidTicketError("ticket already used; what it gave is revoked")
    session.commit()  # spent, whatever follows
    if code.client_id != system.client_id:
        raise BridgeInvalidTicketError("ticket was issued to another system")
    if now >= code.expires_at:
        raise BridgeInvalidTicketError("ticket expired")
    grant = session.get(Grant, code.grant_id)
    user = session.get(User, code.user_id)
    sso = session.get(SsoSession, grant.sid) if grant is not None and grant.sid else None
    if grant is None or grant.revoked_at is not None or user is None or not user.is_active:
        raise BridgeInvalidTicketError("ticket is no longer valid")
    if sso is None or sso.ended_at is not None:
        raise BridgeInvalidTicketError("the sign-in session of this ticket has ended")
    access, _token_id = services.tokens.access_token(session, grant, system, user, grant.scope, now)
    audit.record(
        session,
        "bridge.token",
        actor=f"bridge:{system.client_id}",
        target=user.id,
        ip=ip,
        details={"sid": grant.sid, "grant": grant.id},
    )
    session.commit()
    return {
        "version": VERSION,
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": services.settings.access_token_lifetime,
    }


# ------------------------------------------------------------------ tokens
def _live_token(
    session: Session, services: Services, system: Client, raw: str | None, now: dt.datetime
) -> tuple[GrantRow, UserRow]:
    if not raw:
        raise BridgeInvalidRequestError("access_token is required")
    found = find_token(session, raw, "access")
    if found is None:
        raise BridgeInvalidTokenError("access token not recognized")
    if found.token.client_id != system.client_id:
        raise BridgeInvalidTokenError("access token was issued to another system")
    try:
        check_live(session, found, services.keys, now, clients=services.clients.get)
    except DeadTokenError as exc:
        raise BridgeInvalidTokenError(f"access token is no longer valid ({exc})") from None
    assert found.user is not None  # a ticket's grant is a person's
    return found.grant, found.user


def user_info(
    session: Session,
    services: Services,
    system: Client,
    raw: str | None,
    *,
    ip: str | None = None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """The person (and the company they act for) as the system may see them."""
    now = now or utcnow()
    grant, user = _live_token(session, services, system, raw, now)
    scopes = grant.scope.split()
    authority = authority_claim(session, services.vault, grant, scopes)
    attributes = user_claims(user, scopes, system)
    audit.record(
        session,
        "bridge.userinfo",
        actor=f"bridge:{system.client_id}",
        target=user.id,
        ip=ip,
        details={"attributes": sorted(attributes), "entity": grant.entity_id},
    )
    session.commit()
    return {
        "version": VERSION,
        "sub": subject_for(user, system, services.pairwise_secret),
        "attributes": attributes,
        "acting_for": authority,
        "acr": grant.acr,
        "auth_time": int(grant.auth_time.timestamp()) if grant.auth_time else None,
        "sid": grant.sid,
    }


def end_token_session(
    session: Session,
    services: Services,
    system: Client,
    raw: str | None,
    *,
    ip: str | None = None,
) -> tuple[bool, Ended | None]:
    """End the SSO session the token was issued in (server-to-server logout).

    Answers for a token already dead (its session ended) too, so a retry is harmless: the
    token must still be this system's.  The caller kicks delivery after this commits.
    """
    if not raw:
        raise BridgeInvalidRequestError("access_token is required")
    found = find_token(session, raw, "access")
    if found is None or found.token.client_id != system.client_id:
        raise BridgeInvalidTokenError("access token not recognized")
    sso = session.get(SsoSession, found.grant.sid) if found.grant.sid else None
    ended = None
    if sso is not None and sso.ended_at is None:
        ended = end_sessions(session, services, [sso], reason="logout")
    audit.record(
        session,
        "bridge.logout",
        actor=f"bridge:{system.client_id}",
        target=found.grant.user_id,
        ip=ip,
        details={"sid": found.grant.sid, "ended": ended is not None},
    )
    session.commit()
    return ended is not None, ended

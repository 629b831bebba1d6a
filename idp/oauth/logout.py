"""Logout across services: RP-initiated, back-channel and front-channel logout.

Specs: OpenID Connect RP-Initiated Logout 1.0
(https://openid.net/specs/openid-connect-rpinitiated-1_0.html), Back-Channel Logout 1.0
(https://openid.net/specs/openid-connect-backchannel-1_0.html) and Front-Channel Logout 1.0
(https://openid.net/specs/openid-connect-frontchannel-1_0.html).

- **RP-initiated** (:func:`check_logout_request`): ``id_token_hint`` must be an ID token we
  signed (expired is fine, RP-Initiated §2); only then may ``post_logout_redirect_uri`` be
  used, and only if it exactly matches one the hinted client registered (§3).  Without a
  valid hint the user confirms, and is never redirected (checklist 63, ASVS 10.6.2).
- **Ending the session** (:func:`end_sso_session`): the SSO session ends, the grants made
  in it that are not ``offline_access`` are revoked with their tokens (checklist 64), and
  every client with a grant in the session is told: back-channel clients through the
  persistent :class:`~idp.storage.models.LogoutDelivery` outbox, written in the same
  transaction; front-channel clients through iframes on the signed-out page.
- **Back-channel delivery** (:func:`deliver_due`, :class:`LogoutDispatcher`): after the
  commit a background thread POSTs each logout token (``typ: logout+jwt``, §2.4) with a short
  timeout; failures are retried with exponential back-off by the next pass (the thread, or
  ``yitong logout deliver``).  A slow or failing client never delays or undoes the user's
  logout (checklist 65).  Deliveries go through the SSRF guard (https to public addresses).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlencode, urlsplit

import urllib3
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from idp.oauth.claims import subject_for
from idp.oauth.outbound import OutboundError, host_header, pinned_pool, resolve_target
from idp.storage import repo
from idp.storage.models import Client, Grant, LogoutDelivery, SsoSession, User, utcnow
from keys.store import KeyStore

log = logging.getLogger(__name__)

BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"
LOGOUT_TOKEN_LIFETIME = 120  # seconds: a logout token is delivered at once or retried fresh
DELIVERY_TIMEOUT = 5.0  # seconds per attempt (checklist 59: at most 5 s)
BACKOFF_BASE = 10  # seconds before the first retry; doubled each time
BACKOFF_MAX = 3600
MAX_ATTEMPTS = 10  # about 2.5 hours of retries, then abandoned (and logged)
LEASE = dt.timedelta(seconds=60)  # a claimed delivery is not picked again for this long
MAX_STATE_LENGTH = 2048


# ------------------------------------------------------------------ RP-initiated logout
@dataclass(frozen=True)
class LogoutRequest:
    """A checked end-session request (RP-Initiated Logout §2)."""

    client_id: str | None  # the client named by a valid id_token_hint
    redirect_uri: str | None  # set only when the hint is valid and the URI registered
    state: str | None
    hint_valid: bool
    hint_sid: str | None
    hint_sub: str | None
    refused: bool = False  # something was asked that we will not do: the user confirms

    def matches(
        self,
        sso: SsoSession | None,
        user: User | None,
        client: Client | None,
        pairwise_secret: bytes,
    ) -> bool:
        """The hint names the browser's current session (so no confirmation is needed)."""
        if self.refused or not self.hint_valid or sso is None or user is None or client is None:
            return False
        if self.hint_sid is not None:
            return self.hint_sid == sso.id
        return self.hint_sub == subject_for(user, client, pairwise_secret)


def check_logout_request(
    params: Mapping[str, str],
    *,
    repeated: bool = False,
    verify_id_token: Callable[[str], dict[str, Any] | None],
    find_client: Callable[[str], Client | None],
) -> LogoutRequest:
    """Validate ``id_token_hint``, ``client_id``, ``post_logout_redirect_uri`` and ``state``.

    Never raises: a bad request simply yields no redirect (the user confirms instead).
    ``repeated``: a parameter was sent more than once (RFC 6749 §3.1), which is refused too.
    """
    state = params.get("state")
    if state is not None and len(state) > MAX_STATE_LENGTH:
        state = None
    hint = params.get("id_token_hint")
    claims = verify_id_token(hint) if hint else None
    client: Client | None = None
    if claims is not None:
        aud = claims.get("aud")
        audiences = aud if isinstance(aud, list) else [aud]
        named = claims.get("azp") if len(audiences) > 1 else audiences[0]
        client = find_client(named) if isinstance(named, str) else None
        if client is None or client.status != "approved":
            claims, client = None, None
    refused = repeated or (hint is not None and claims is None)
    asked_client = params.get("client_id")
    if client is not None and asked_client is not None and asked_client != client.client_id:
        # §2: client_id and the hint's audience must agree; trust neither otherwise.
        claims, client, refused = None, None, True
    redirect_uri = None
    wanted = params.get("post_logout_redirect_uri")
    if client is not None and wanted is not None and wanted in client.post_logout_redirect_uris:
        redirect_uri = wanted  # exact string match (checklist 63: no added query, no near-miss)
    elif wanted is not None:
        refused = True
    sid = claims.get("sid") if claims else None
    sub = claims.get("sub") if claims else None
    return LogoutRequest(
        client_id=client.client_id if client else None,
        redirect_uri=redirect_uri,
        state=state if redirect_uri else None,
        hint_valid=claims is not None,
        hint_sid=sid if isinstance(sid, str) else None,
        hint_sub=sub if isinstance(sub, str) else None,
        refused=refused,
    )


def post_logout_location(redirect_uri: str, state: str | None) -> str:
    """The post-logout redirect with ``state`` echoed (RP-Initiated Logout §3)."""
    if state is None:
        return redirect_uri
    sep = "&" if urlsplit(redirect_uri).query else "?"
    return redirect_uri + sep + urlencode({"state": state})


# ------------------------------------------------------------------ ending the session
@dataclass(frozen=True)
class FrontChannelFrame:
    client_id: str
    url: str
    origin: str


@dataclass(frozen=True)
class LogoutOutcome:
    """What ending a session produced for the page and the dispatcher."""

    sid: str
    frames: list[FrontChannelFrame]
    deliveries: list[int]
    revoked_grants: list[str]


def logout_token(
    keys: KeyStore, issuer: str, client: Client, sid: str, sub: str | None, now: dt.datetime
) -> str:
    """A Back-Channel Logout token (§2.4): ``typ: logout+jwt``, ``events``, ``sid``/``sub``,
    ``iat``/``exp``/``jti``, and never a ``nonce`` (§2.4 forbids it)."""
    iat = int(now.timestamp())
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": client.client_id,
        "iat": iat,
        "exp": iat + LOGOUT_TOKEN_LIFETIME,
        "jti": repo.new_id(),
        "events": {BACKCHANNEL_EVENT: {}},
        "sid": sid,
    }
    if sub is not None:
        claims["sub"] = sub
    key = keys.signing_key(client.id_token_signed_response_alg)
    return key.sign_jwt(claims, {"typ": "logout+jwt"})


def frontchannel_url(uri: str, issuer: str, sid: str) -> str:
    """Front-Channel Logout §2: the registered URI with ``iss`` and ``sid`` added."""
    sep = "&" if urlsplit(uri).query else "?"
    return uri + sep + urlencode({"iss": issuer, "sid": sid})


def end_sso_session(
    session: Session,
    sso: SsoSession,
    *,
    issuer: str,
    keys: KeyStore,
    pairwise_secret: bytes,
    reason: str = "logout",
    now: dt.datetime | None = None,
) -> LogoutOutcome:
    """End ``sso`` and queue the notifications; the caller commits, then kicks delivery."""
    now = now or utcnow()
    if sso.ended_at is None:
        sso.ended_at = now
    client_ids = sorted(set(session.scalars(select(Grant.client_id).where(Grant.sid == sso.id))))
    revoked = repo.revoke_user_grants(
        session, sso.user_id, reason, include_offline=False, sid=sso.id
    )
    user = session.get(User, sso.user_id)
    frames: list[FrontChannelFrame] = []
    deliveries: list[LogoutDelivery] = []
    for client_id in client_ids:
        client = session.get(Client, client_id)
        if client is None or client.status != "approved":
            continue
        if client.frontchannel_logout_uri:
            parts = urlsplit(client.frontchannel_logout_uri)
            frames.append(
                FrontChannelFrame(
                    client_id,
                    frontchannel_url(client.frontchannel_logout_uri, issuer, sso.id),
                    f"{parts.scheme}://{parts.netloc}",
                )
            )
        if client.backchannel_logout_uri:
            sub = subject_for(user, client, pairwise_secret) if user is not None else None
            row = LogoutDelivery(
                client_id=client_id,
                uri=client.backchannel_logout_uri,
                logout_token=logout_token(keys, issuer, client, sso.id, sub, now),
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
            session.add(row)
            deliveries.append(row)
    session.flush()
    return LogoutOutcome(sso.id, frames, [d.id for d in deliveries], revoked)


# ------------------------------------------------------------------ back-channel delivery
class Poster(Protocol):
    """POSTs one outbox message: ``parameter`` is the form field (``logout_token``, or
    ``logoutRequest`` for CAS single logout); returns the HTTP status."""

    def __call__(
        self, uri: str, token: str, timeout: float, parameter: str = "logout_token"
    ) -> int: ...


def backoff(attempts: int) -> dt.timedelta:
    """Seconds to wait after the ``attempts``-th failure: 10, 20, 40, … capped at an hour."""
    return dt.timedelta(seconds=min(BACKOFF_BASE * 2 ** max(attempts - 1, 0), BACKOFF_MAX))


def post_logout_token(
    uri: str,
    token: str,
    timeout: float,
    allowlist: Collection[str] = (),
    private_hosts: Collection[str] = (),
    parameter: str = "logout_token",
) -> int:
    """POST ``logout_token`` (§2.5) — or, under ``parameter``, a CAS ``logoutRequest`` — to
    the checked address of ``uri``; return the status.

    The address is resolved and checked once (public only, https only, unless allow-listed)
    and connected to directly, so DNS cannot swap it; no redirects; the body is ignored.
    """
    target = resolve_target(uri, allowlist, private_hosts)
    pool = pinned_pool(target)
    try:
        resp = pool.urlopen(
            "POST",
            target.path,
            body=urlencode({parameter: token}).encode("ascii"),
            headers={
                "Host": host_header(target),
                "Content-Type": "application/x-www-form-urlencoded",
                "User-Agent": "yitong",
                "Cache-Control": "no-store",
            },
            redirect=False,
            retries=False,
            timeout=urllib3.Timeout(total=timeout),
            preload_content=False,
        )
        try:
            resp.read(4096, decode_content=False)
        finally:
            resp.release_conn()
        return int(resp.status)
    except urllib3.exceptions.HTTPError as exc:
        raise OutboundError(f"delivery failed: {type(exc).__name__}") from None
    finally:
        pool.close()


def _claim(session: Session, row: LogoutDelivery, now: dt.datetime) -> bool:
    """Lease one delivery (compare-and-set), so parallel workers never send it twice."""
    result = session.execute(
        update(LogoutDelivery)
        .where(
            LogoutDelivery.id == row.id,
            LogoutDelivery.next_attempt_at == row.next_attempt_at,
            LogoutDelivery.delivered_at.is_(None),
            LogoutDelivery.abandoned_at.is_(None),
        )
        .values(next_attempt_at=now + LEASE)
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return result.rowcount == 1  # type: ignore[attr-defined,no-any-return]


def _refused(error: str) -> bool:
    """§2.8: a 4xx means the relying party refused this token; sending it again cannot help
    (except 408 and 429, which are about the moment, not the token)."""
    if not error.startswith("HTTP 4"):
        return False
    return error not in ("HTTP 408", "HTTP 429")


@dataclass
class DeliveryReport:
    delivered: int = 0
    failed: int = 0
    abandoned: int = 0


def deliver_due(
    db: Any,
    poster: Poster,
    *,
    now: Callable[[], dt.datetime] = utcnow,
    ids: Collection[int] | None = None,
    limit: int = 100,
    timeout: float = DELIVERY_TIMEOUT,
) -> DeliveryReport:
    """One pass over the outbox: deliver what is due (or just ``ids``), reschedule failures."""
    report = DeliveryReport()
    with db.session() as session:
        stmt = select(LogoutDelivery).where(
            LogoutDelivery.delivered_at.is_(None),
            LogoutDelivery.abandoned_at.is_(None),
            LogoutDelivery.next_attempt_at <= now(),
        )
        if ids is not None:
            stmt = stmt.where(LogoutDelivery.id.in_(list(ids)))
        rows = list(session.scalars(stmt.order_by(LogoutDelivery.next_attempt_at).limit(limit)))
        for row in rows:
            if not _claim(session, row, now()):
                continue
            error: str | None = None
            try:
                status = poster(row.uri, row.logout_token, timeout, row.parameter)
                if not 200 <= status < 300:  # §2.8: 200 (or 204) means received
                    error = f"HTTP {status}"
            except OutboundError as exc:
                error = str(exc)
            except Exception as exc:  # one client's failure must not stop the rest
                error = f"unexpected: {type(exc).__name__}"
            attempts = row.attempts + 1
            values: dict[str, Any] = {"attempts": attempts, "last_error": error}
            if error is None:
                values["delivered_at"] = now()
                report.delivered += 1
            elif attempts >= MAX_ATTEMPTS or _refused(error):
                values["abandoned_at"] = now()
                report.abandoned += 1
                log.warning("back-channel logout to %s abandoned: %s", row.client_id, error)
            else:
                values["next_attempt_at"] = now() + backoff(attempts)
                report.failed += 1
                log.info(
                    "back-channel logout to %s failed (%s); retry %d",
                    row.client_id,
                    error,
                    attempts,
                )
            session.execute(
                update(LogoutDelivery)
                .where(LogoutDelivery.id == row.id)
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            session.commit()
    return report


class LogoutDispatcher:
    """Delivers queued logout tokens off the request thread.

    :meth:`kick` starts (at most) one background pass; a pass that is already running picks
    up new work before it ends.  ``background=False`` delivers inline (for tests that want
    determinism); :meth:`wait` lets tests join the background pass.
    """

    def __init__(
        self, db: Any, poster: Poster, *, background: bool = True, timeout: float = DELIVERY_TIMEOUT
    ) -> None:
        self.db = db
        self.poster = poster
        self.background = background
        self.timeout = timeout
        self._lock = threading.Lock()
        self._again = False
        self._thread: threading.Thread | None = None
        self._timer: threading.Timer | None = None

    @classmethod
    def from_settings(cls, settings: Any, db: Any) -> LogoutDispatcher:
        """The app's dispatcher: posts through the SSRF guard with the configured allow-lists."""
        allowlist = tuple(settings.outbound_test_allowlist)
        development = settings.env == "development"

        def poster(uri: str, token: str, timeout: float, parameter: str = "logout_token") -> int:
            allowed = allowlist
            if development:
                # The demo's relying parties listen on loopback over http; only in development.
                parts = urlsplit(uri)
                if parts.hostname in ("127.0.0.1", "localhost", "::1"):
                    port = parts.port or (443 if parts.scheme == "https" else 80)
                    allowed = (*allowed, f"{parts.hostname}:{port}")
            return post_logout_token(
                uri, token, timeout, allowed, settings.outbound_private_hosts, parameter
            )

        return cls(db, poster)

    def kick(self, ids: Collection[int] | None = None) -> None:
        if not self.background:
            self._run_once(ids)
            return
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                self._again = True
                return
            self._again = False
            self._thread = threading.Thread(target=self._loop, name="logout-delivery", daemon=True)
            self._thread.start()

    def _run_once(self, ids: Collection[int] | None) -> None:
        try:
            deliver_due(self.db, self.poster, ids=ids, timeout=self.timeout)
        except Exception:  # the outbox keeps the work; the next pass retries
            log.exception("back-channel logout pass failed")

    def _loop(self) -> None:
        while True:
            self._run_once(None)
            with self._lock:
                if not self._again:
                    self._thread = None
                    break
                self._again = False
        self._schedule_retry()

    def _schedule_retry(self) -> None:
        """Come back when the earliest failed delivery is due (one timer at a time)."""
        try:
            with self.db.session() as session:
                due = session.scalars(
                    select(LogoutDelivery.next_attempt_at)
                    .where(
                        LogoutDelivery.delivered_at.is_(None), LogoutDelivery.abandoned_at.is_(None)
                    )
                    .order_by(LogoutDelivery.next_attempt_at)
                    .limit(1)
                ).first()
        except Exception:  # the next kick or `yitong logout deliver` retries
            return
        if due is None:
            return
        delay = max((due - utcnow()).total_seconds(), 1.0)
        with self._lock:
            if self._timer is not None and self._timer.is_alive():
                return
            self._timer = threading.Timer(delay, self.kick)
            self._timer.daemon = True
            self._timer.start()

    def close(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    def wait(self, timeout: float = 10.0) -> None:
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

"""Decoupled sign-in: a request shown on one device, approved on another (RFC 8628).

One store and one state machine (``device_requests``) serve two flows: QR-code login from the
government app (``kind`` ``qr``, below) and the standard RFC 8628 device authorization grant
(``kind`` ``device``: a television or a command-line tool shows a user code, the person enters
it at ``/device``; :mod:`idp.oauth.device`).

https://www.rfc-editor.org/rfc/rfc8628 (device authorization grant), cross-device as in
draft-ietf-oauth-cross-device-security (https://datatracker.ietf.org/doc/draft-ietf-oauth-cross-device-security/).

The login page (the "device") shows a QR code carrying a one-time *code* (256 bits, the
``device_code`` of RFC 8628 in spirit); the government app, already holding the person's
tokens, reads it, shows the person which service and which browser location asks, with a
two-digit matching number that the browser shows too and a phishing warning, and approves or
denies.  What makes it safe against the classic cross-device phishing (a fake site relaying a
real QR code, draft-ietf-oauth-cross-device-security §4):

- **bound to the browser that showed it**: showing the code sets a cookie whose digest is
  stored with the request; only that browser may poll its status and take the session;
  another browser presenting the same request id or code gets nothing;
- **short-lived and single use**: ``qr_login_lifetime`` (2 minutes); the status moves
  ``pending`` -> ``approved``/``denied`` -> ``used`` by compare-and-set only, so a second
  approval, a second denial or a second session from one code is impossible;
- **one account**: the first app to read the request claims it for its account; another
  account can neither read nor decide it;
- **the person sees where the request comes from**: service, approximate location from the
  browser's address, matching number, and a warning never to approve a code someone sent;
- **rate limited** (``rate_limit_qr_per_minute``) and **audited** (``qr_login.approved`` /
  ``qr_login.denied`` / ``qr_login.completed``).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from idp import audit
from idp.storage.models import DeviceRequest
from idp.storage.repo import (
    advance_device_request,
    claim_device_request,
    digest,
    new_id,
    new_secret,
    poll_device_request,
)
from idp.storage.rows import GrantRow

#: How often the browser may ask for news (RFC 8628 §3.2 ``interval``).
POLL_INTERVAL = 2
MAX_CODE = 128
#: RFC 8628 §6.1: user codes from 20 consonants (no vowels, so no words; no digits or letters
#: that look alike), 8 characters shown as ``XXXX-XXXX``: 20^8 (34.6 bits) against guessing
#: that is rate limited per account and address, for the few minutes a code lives.
USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
USER_CODE_LENGTH = 8
#: RFC 8628 §3.2: seconds a device waits between polls (default 5), and §3.5: what each
#: ``slow_down`` adds to it "for this and all subsequent requests".
DEVICE_INTERVAL = 5
SLOW_DOWN_STEP = 5


class DecoupledRefusal(Exception):
    """The app may not act on this request; ``reason`` is a stable word for the API."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Shown:
    """A QR code just shown: what goes in the page and what goes in the cookie."""

    request_id: str
    code: str  # in the QR code only
    browser_secret: str  # in the browser's cookie only
    matching_number: str
    expires_in: int


def show_qr(
    session: Session,
    *,
    client_id: str | None,
    ip: str,
    now: dt.datetime,
    lifetime: int,
    browser_secret: str | None = None,
) -> Shown:
    """Create a pending QR request for the browser asking (the caller commits).

    ``browser_secret``: the browser's cookie when it has one already (several tabs share it),
    else a new one.
    """
    code = new_secret(32)
    browser_secret = browser_secret or new_secret(32)
    row = DeviceRequest(
        id=new_id(),
        kind="qr",
        code_digest=digest(code),
        browser_digest=digest(browser_secret),
        client_id=client_id,
        scope="",
        matching_number=f"{secrets.randbelow(100):02d}",
        ip=ip,
        status="pending",
        amr=[],
        interval=POLL_INTERVAL,
        created_at=now,
        expires_at=now + dt.timedelta(seconds=lifetime),
    )
    session.add(row)
    return Shown(row.id, code, browser_secret, row.matching_number, lifetime)


@dataclass(frozen=True)
class DeviceStarted:
    """An RFC 8628 device request just started: the codes go to the device, once."""

    request_id: str
    device_code: str  # 256 bits, for the device's polling only
    user_code: str  # XXXX-XXXX, for the person to type
    expires_in: int
    interval: int


def normalise_user_code(text: str | None) -> str | None:
    """The user code as stored (``BCDFGHJK``) from what a person typed (``bcdf-ghjk``,
    spaces, dashes), or None when it cannot be one (RFC 8628 §6.1: forgiving input)."""
    if not text or len(text) > 32:
        return None
    code = "".join(c for c in text.upper() if c not in " -\t")
    if len(code) != USER_CODE_LENGTH or any(c not in USER_CODE_ALPHABET for c in code):
        return None
    return code


def display_user_code(code: str) -> str:
    """``BCDFGHJK`` as the person reads it: ``BCDF-GHJK``."""
    half = USER_CODE_LENGTH // 2
    return f"{code[:half]}-{code[half:]}"


def start_device(
    session: Session,
    *,
    client_id: str,
    scope: str,
    ip: str,
    now: dt.datetime,
    lifetime: int,
) -> DeviceStarted:
    """Create a pending RFC 8628 request (the caller commits).

    A user code is unique over every stored request, so the one a person types names one
    request only; a collision (about one in 10^10 per stored code) draws again.
    """
    device_code = new_secret(32)
    for _attempt in range(8):
        user_code = "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(USER_CODE_LENGTH))
        taken = session.scalar(
            select(DeviceRequest.id).where(DeviceRequest.user_code_digest == digest(user_code))
        )
        if taken is None:
            break
    else:  # pragma: no cover - eight collisions in a row: the table needs purging
        raise RuntimeError("no free user code")
    row = DeviceRequest(
        id=new_id(),
        kind="device",
        code_digest=digest(device_code),
        user_code_digest=digest(user_code),
        client_id=client_id,
        scope=scope,
        matching_number="",
        ip=ip,
        status="pending",
        amr=[],
        interval=DEVICE_INTERVAL,
        created_at=now,
        expires_at=now + dt.timedelta(seconds=lifetime),
    )
    session.add(row)
    return DeviceStarted(row.id, device_code, display_user_code(user_code), lifetime, row.interval)


def _by_digest(session: Session, column: Any, secret: str, kind: str) -> DeviceRequest | None:
    """The request of ``kind`` whose ``column`` holds the digest of ``secret``, any state.
    One lookup for QR codes, device codes and user codes: a code of one kind never finds a
    request of the other."""
    return session.scalars(
        select(DeviceRequest).where(column == digest(secret), DeviceRequest.kind == kind)
    ).first()


def _plausible(code: str | None) -> str | None:
    return code if code and len(code) <= MAX_CODE and code.isprintable() else None


def find_device_by_user_code(session: Session, text: str | None) -> DeviceRequest | None:
    """The device request a typed user code names, whatever its state."""
    code = normalise_user_code(text)
    return (
        None
        if code is None
        else _by_digest(session, DeviceRequest.user_code_digest, code, "device")
    )


def find_device_by_code(session: Session, device_code: str | None) -> DeviceRequest | None:
    """The device request a ``device_code`` (presented by the polling device) names."""
    code = _plausible(device_code)
    return None if code is None else _by_digest(session, DeviceRequest.code_digest, code, "device")


def device_request(session: Session, request_id: str | None) -> DeviceRequest | None:
    """A device request by id (from a sealed interaction), or None."""
    if not request_id or len(request_id) > 64 or not request_id.isalnum():
        return None
    row = session.get(DeviceRequest, request_id)
    return row if row is not None and row.kind == "device" else None


def decide_device(
    session: Session,
    row: DeviceRequest,
    *,
    user_id: str,
    approve: bool,
    grant_id: str | None,
    acr: str | None,
    amr: Sequence[str],
    ip: str,
    now: dt.datetime,
) -> None:
    """The person approves (``grant_id``: the grant written for the device) or denies, once
    (compare-and-set), and it is audited (the caller commits).

    Raises :class:`DecoupledRefusal` (``expired``, ``used``, ``other_account``).
    """
    claim(session, row, user_id, now)
    _settle(
        session,
        row,
        user_id=user_id,
        approve=approve,
        now=now,
        event="device",
        target=f"device:{row.id}",
        ip=ip,
        details={"client_id": row.client_id, "scope": row.scope, "device_ip": row.ip},
        grant_id=grant_id if approve else None,
        acr=acr,
        amr=list(amr),
    )


def poll_device(session: Session, row: DeviceRequest, now: dt.datetime) -> str:
    """What a device polling now learns (RFC 8628 §3.5): ``used``, ``expired``, ``denied``,
    ``approved``, ``slow_down`` or ``pending``.

    A pending request remembers the poll; one sooner than ``interval`` after the last is
    ``slow_down`` and adds :data:`SLOW_DOWN_STEP` to the interval.  The bookkeeping is a
    compare-and-set on ``last_polled_at``, so of two concurrent polls one is ``slow_down``.
    """
    if row.status == "used":
        return "used"
    if row.expires_at <= now:
        return "expired"
    if row.status in ("denied", "approved"):
        return str(row.status)
    last = row.last_polled_at
    too_soon = last is not None and (now - last).total_seconds() < row.interval
    interval = row.interval + SLOW_DOWN_STEP if too_soon else row.interval
    moved = poll_device_request(session, row.id, last, now=now, interval=interval)
    if moved:
        row.last_polled_at, row.interval = now, interval
    return "slow_down" if too_soon or not moved else "pending"


def redeem_device(session: Session, row: DeviceRequest, now: dt.datetime) -> bool:
    """Spend an approved request, once: the device's single token response."""
    if not advance_device_request(session, row.id, expect="approved", now=now, status="used"):
        return False
    audit.record(
        session,
        "device.completed",
        actor=f"client:{row.client_id}",
        target=f"device:{row.id}",
        ip=row.ip,
        details={"user": row.user_id, "grant": row.grant_id},
    )
    return True


def find_by_code(session: Session, code: str | None) -> DeviceRequest | None:
    """The QR request a code (read from the QR) names, whatever its state."""
    plausible = _plausible(code)
    return (
        None
        if plausible is None
        else _by_digest(session, DeviceRequest.code_digest, plausible, "qr")
    )


def claim(session: Session, row: DeviceRequest, user_id: str, now: dt.datetime) -> None:
    """The app of ``user_id`` reads the request: it is that account's from now on.

    Raises :class:`DecoupledRefusal` (``expired``, ``used``, ``other_account``).
    """
    if row.expires_at <= now:
        raise DecoupledRefusal("expired")
    if row.status != "pending":
        raise DecoupledRefusal("used")
    if row.user_id is not None and row.user_id != user_id:
        raise DecoupledRefusal("other_account")
    if row.user_id is None:
        if not claim_device_request(session, row.id, user_id):
            raise DecoupledRefusal("other_account")
        row.user_id = user_id


def decide(
    session: Session,
    row: DeviceRequest,
    *,
    user_id: str,
    grant: GrantRow,
    approve: bool,
    matching_number: str | None,
    app_client_id: str,
    ip: str,
    now: dt.datetime,
) -> None:
    """Approve or deny, once (compare-and-set), and audit it (the caller commits).

    Approval needs the matching number the person confirmed; the session it leads to carries
    the app's level (``grant.acr``) and ``mca`` (multiple-channel authentication, RFC 8176).
    """
    claim(session, row, user_id, now)
    if approve and matching_number != row.matching_number:
        raise DecoupledRefusal("number_mismatch")
    _settle(
        session,
        row,
        user_id=user_id,
        approve=approve,
        now=now,
        event="qr_login",
        target=f"qr:{row.id}",
        ip=ip,
        details={"client_id": row.client_id, "app": app_client_id, "browser_ip": row.ip},
        acr=grant.acr,
        amr=list(dict.fromkeys(["mca", *(grant.amr or [])])),
    )


def _settle(
    session: Session,
    row: DeviceRequest,
    *,
    user_id: str,
    approve: bool,
    now: dt.datetime,
    event: str,
    target: str,
    ip: str,
    details: dict[str, Any],
    **values: object,
) -> None:
    """Approve or deny a claimed, pending request once (compare-and-set) and audit it as
    ``<event>.approved`` or ``<event>.denied``: QR logins and device requests alike."""
    status = "approved" if approve else "denied"
    done = advance_device_request(
        session,
        row.id,
        expect="pending",
        now=now,
        user_id=user_id,
        status=status,
        decided_at=now,
        **values,
    )
    if not done:
        raise DecoupledRefusal("used")
    audit.record(
        session,
        f"{event}.{status}",
        actor=f"user:{user_id}",
        target=target,
        ip=ip,
        details=details,
    )


def browser_status(
    session: Session, request_id: str | None, browser_secret: str | None, now: dt.datetime
) -> str:
    """What the browser that showed the code may know: ``pending``, ``approved``,
    ``denied``, ``expired``, or ``unknown`` (no such request *for this browser*)."""
    row = _for_browser(session, request_id, browser_secret)
    if row is None:
        return "unknown"
    if row.status in ("approved", "denied") and row.expires_at > now:
        return str(row.status)
    if row.status == "used" or row.expires_at <= now:
        return "expired"
    return "pending"


def take_approved(
    session: Session, request_id: str | None, browser_secret: str | None, now: dt.datetime
) -> DeviceRequest | None:
    """Spend an approved request for the browser that showed it, once; None otherwise."""
    row = _for_browser(session, request_id, browser_secret)
    if row is None or row.user_id is None:
        return None
    if not advance_device_request(session, row.id, expect="approved", now=now, status="used"):
        return None
    audit.record(
        session,
        "qr_login.completed",
        actor=f"user:{row.user_id}",
        target=f"qr:{row.id}",
        ip=row.ip,
        details={"client_id": row.client_id},
    )
    return row


def _for_browser(
    session: Session, request_id: str | None, browser_secret: str | None
) -> DeviceRequest | None:
    if not request_id or not browser_secret or len(request_id) > 64 or len(browser_secret) > 128:
        return None
    row = session.get(DeviceRequest, request_id) if request_id.isalnum() else None
    if row is None or row.kind != "qr" or row.browser_digest != digest(browser_secret):
        return None  # another browser: it learns nothing, not even that the request exists
    return row


# ------------------------------------------------------------------ where the browser is
def approximate_location(ip: str | None, named: Sequence[str] = ()) -> tuple[str, str]:
    """``(kind, network)`` for the app's screen: the browser's network, never its address.

    ``named``: ``"CIDR=name"`` entries (``qr_login_networks``) naming an operator's networks
    (a city's range, the provincial government network).  Kinds: ``named`` (network is the
    name), ``local`` (loopback or a private network), ``public`` (network is the /24 or /48
    the address is in), ``unknown``.
    """
    try:
        address = ipaddress.ip_address(ip or "")
    except ValueError:
        return "unknown", ""
    for entry in named:
        cidr, _, name = entry.partition("=")
        try:
            if address in ipaddress.ip_network(cidr.strip(), strict=False):
                return "named", name.strip()
        except ValueError:
            continue
    if address.is_loopback or address.is_private or address.is_link_local:
        return "local", ""
    prefix = 24 if address.version == 4 else 48
    return "public", str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))

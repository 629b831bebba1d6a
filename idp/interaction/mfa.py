"""Second factors and authentication levels: TOTP, recovery codes, SMS codes, WebAuthn.

Specs: RFC 6238 (TOTP) §5.2 "the verifier MUST NOT accept the second attempt of the same OTP
after the successful validation has been issued for the first OTP"; RFC 8176 (``amr``
values); W3C Web Authentication Level 2 (https://www.w3.org/TR/webauthn-2/); NIST SP
800-63B-4 (look-up secrets §3.1.2, out-of-band/SMS as a restricted authenticator §3.1.3.3,
OTP §3.1.4/§3.1.5, phishing resistance §3.2.5).

Everything here is pure storage and decision logic; the pages are in
:mod:`idp.blueprints.mfa`.  Each one-time credential is consumed by one atomic compare-and-set
``UPDATE``, never by read-then-write:

* TOTP: ``UPDATE totp_credentials SET last_step = :step WHERE user_id = :u AND last_step <
  :step`` -- a code works once, and a code from an older step than the last accepted one never
  works again (checklist 70, 71: 10 parallel submissions -> exactly one success);
* recovery codes and SMS codes: ``UPDATE … SET used_at = now WHERE … AND used_at IS NULL``.

Authentication levels (the ``acr`` ladder, :mod:`idp.interaction.sessions`):
``urn:yitong:acr:pwd`` one factor; ``urn:yitong:acr:mfa`` two factors (password + TOTP, SMS or
recovery code); ``urn:yitong:acr:phr`` phishing resistant (a WebAuthn credential bound to our
origin, with the password or with user verification on the authenticator).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pyotp
from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.orm import Session

from idp import untrusted_json
from idp.interaction.policies import PolicyStore, user_classes
from idp.interaction.sessions import (
    ACR_MFA,
    ACR_PASSWORD,
    ACR_PHISHING_RESISTANT,
    acr_rank,
)
from idp.storage.db import Database
from idp.storage.models import (
    Client,
    OneTimeCode,
    RecoveryCode,
    TotpCredential,
    User,
    WebAuthnCredential,
    utcnow,
)
from keys.crypto import Kek

TOTP_PERIOD = 30
TOTP_DIGITS = 6
TOTP_WINDOW = 1  # RFC 6238 §5.2 / ASVS 6.5.5: at most one step either side (checklist 73)
TOTP_SECRET_BYTES = 20  # 160 bits (RFC 4226 §4 R6, ASVS 6.5.3, checklist 74)
RECOVERY_CODE_COUNT = 10
RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i
RECOVERY_CODE_LENGTH = 16  # 16 symbols of 31: 79 bits
SMS_CODE_MAX_ATTEMPTS = 5

# Factors kept in SsoSession.factors (name -> epoch seconds) and their RFC 8176 amr values.
FACTOR_AMR = {
    "pwd": "pwd",
    "otp": "otp",
    "recovery": "otp",  # a look-up secret is a one-time code the user holds
    "sms": "sms",
    "hwk": "hwk",
    "swk": "swk",
}
POSSESSION = frozenset({"otp", "recovery", "sms", "hwk", "swk"})
WEBAUTHN = frozenset({"hwk", "swk"})


# ------------------------------------------------------------------ levels
def acr_for(factors: Iterable[str]) -> str:
    """The level reached by a set of factors (``uv``: user verified on the authenticator)."""
    f = set(factors)
    if f & WEBAUTHN and ("pwd" in f or "uv" in f):
        return ACR_PHISHING_RESISTANT
    if "pwd" in f and f & POSSESSION:
        return ACR_MFA
    if f & WEBAUTHN and "uv" in f:
        return ACR_PHISHING_RESISTANT
    return ACR_PASSWORD


def amr_for(factors: Iterable[str]) -> list[str]:
    """RFC 8176 ``amr`` for a set of factors, with ``mfa`` when more than one kind was used."""
    f = set(factors)
    amr = sorted({FACTOR_AMR[x] for x in f if x in FACTOR_AMR})
    if acr_rank(acr_for(f)) >= acr_rank(ACR_MFA):
        amr.append("mfa")
    return amr


def higher(a: str | None, b: str | None) -> str | None:
    if a is None:
        return b
    if b is None:
        return a
    return a if acr_rank(a) >= acr_rank(b) else b


def lowest_known(values: Iterable[str]) -> str | None:
    """Of the acr values a client accepts, the lowest we know (any of them satisfies it)."""
    known = [v for v in values if acr_rank(v) >= 0]
    if not known:
        return None
    return min(known, key=acr_rank)


def _claims_request(ctx: Any) -> Mapping[str, Any]:
    claims = getattr(ctx, "claims", None)
    if isinstance(claims, Mapping):
        return claims
    raw = (getattr(ctx, "params", None) or {}).get("claims")
    if not raw or len(raw) > 8192:
        return {}
    try:
        parsed = untrusted_json.loads(raw)
    except ValueError:  # UntrustedJsonError is a ValueError
        return {}
    return parsed if isinstance(parsed, Mapping) else {}


def requested_acr(ctx: Any) -> str | None:
    """What the authorization request and the client ask for (OIDC Core §3.1.2.1, §5.5.1.1).

    ``acr_values`` and an essential ``acr`` claim name acceptable levels; the lowest of them
    is required.  A client's registered ``default_acr_values`` always apply too, because a
    user can edit ``acr_values`` out of the front-channel request but cannot edit the
    client's registration (so the stricter of the two wins).
    """
    wanted: str | None = None
    values = list(getattr(ctx, "acr_values", None) or [])
    if not values:
        values = ((getattr(ctx, "params", None) or {}).get("acr_values") or "").split()
    wanted = higher(wanted, lowest_known(values))
    claims = _claims_request(ctx)
    for target in ("id_token", "userinfo"):
        section = claims.get(target)
        if not isinstance(section, Mapping):
            continue
        acr = section.get("acr")
        if isinstance(acr, Mapping) and acr.get("essential") is True:
            options: list[str] = []
            if isinstance(acr.get("value"), str):
                options.append(acr["value"])
            if isinstance(acr.get("values"), list):
                options.extend(v for v in acr["values"] if isinstance(v, str))
            wanted = higher(wanted, lowest_known(options))
    client = getattr(ctx, "client", None)
    if client is not None:
        wanted = higher(wanted, lowest_known(client.default_acr_values or []))
    return wanted


def policy_acr(
    policies: PolicyStore, user: User | None, client: Client | None, scopes: Iterable[str] = ()
) -> str | None:
    """What the security policies demand for this user and client."""
    wanted: str | None = None
    if client is not None:
        if client.client_id in policies.get_list("mfa.phishing_resistant_clients"):
            wanted = ACR_PHISHING_RESISTANT
        elif client.client_id in policies.get_list("mfa.required_clients"):
            wanted = ACR_MFA
    required_for = set(policies.get_list("mfa.required_for"))
    if user is not None and required_for:
        if "everyone" in required_for or required_for & user_classes(user, scopes):
            wanted = higher(wanted, ACR_MFA)
    elif user is None and "everyone" in required_for:
        wanted = higher(wanted, ACR_MFA)
    return wanted


def mfa_required_by_policy(policies: PolicyStore, user: User) -> bool:
    """Whether a policy (not a client) makes a second factor mandatory for this user."""
    return policy_acr(policies, user, None) is not None


# ------------------------------------------------------------------ what a user has
@dataclass
class UserFactors:
    totp: bool = False
    webauthn: list[WebAuthnCredential] = field(default_factory=list)
    recovery_left: int = 0
    sms_phone: str | None = None  # a verified phone, when SMS may serve as a factor

    @property
    def any_second_factor(self) -> bool:
        """Factors that stand on their own (recovery codes are only a back-up)."""
        return self.totp or bool(self.webauthn) or self.sms_phone is not None

    def can_reach(self, acr: str | None) -> bool:
        if acr is None or acr_rank(acr) <= acr_rank(ACR_PASSWORD):
            return True
        if acr == ACR_PHISHING_RESISTANT:
            return bool(self.webauthn)
        return self.any_second_factor or self.recovery_left > 0


def factors_of(session: Session, policies: PolicyStore, user: User) -> UserFactors:
    totp = session.scalar(
        select(func.count())
        .select_from(TotpCredential)
        .where(TotpCredential.user_id == user.id, TotpCredential.confirmed_at.is_not(None))
    )
    creds = list(
        session.scalars(
            select(WebAuthnCredential)
            .where(WebAuthnCredential.user_id == user.id)
            .order_by(WebAuthnCredential.created_at)
        )
    )
    left = session.scalar(
        select(func.count())
        .select_from(RecoveryCode)
        .where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None))
    )
    phone = None
    if user.phone and user.phone_verified and sms_allowed(policies, user):
        phone = user.phone
    return UserFactors(bool(totp), creds, int(left or 0), phone)


def has_second_factor(session: Session, policies: PolicyStore, user: User) -> bool:
    """``factors_of(...).any_second_factor`` in one query (asked on every authorization)."""
    if user.phone and user.phone_verified and sms_allowed(policies, user):
        return True
    return bool(session.scalar(_HAS_TOTP_OR_KEY, {"user_id": user.id}))


# Built once: constructing a SELECT costs several times what executing its cached compiled
# form does, and this one runs on every authorization.
_HAS_TOTP_OR_KEY = select(
    select(TotpCredential.user_id)
    .where(TotpCredential.user_id == bindparam("user_id"), TotpCredential.confirmed_at.is_not(None))
    .exists()
    | select(WebAuthnCredential.credential_id)
    .where(WebAuthnCredential.user_id == bindparam("user_id"))
    .exists()
)


def sms_allowed(policies: PolicyStore, user: User) -> bool:
    """SMS is a restricted authenticator: only for the classes the policy names."""
    allowed = set(policies.get_list("mfa.sms_allowed_for"))
    classes = user_classes(user)
    # Every class the user belongs to must allow it (an admin who is also a citizen: no).
    return bool(classes) and classes <= allowed


# ------------------------------------------------------------------ TOTP
def new_totp_secret() -> str:
    """160 random bits from the CSPRNG, base32 (RFC 4648) as authenticator apps expect."""
    return base64.b32encode(secrets.token_bytes(TOTP_SECRET_BYTES)).decode("ascii")


def totp_uri(secret: str, account: str, issuer: str = "Yitong") -> str:
    return pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_PERIOD).provisioning_uri(
        name=account, issuer_name=issuer
    )


def _aad(user_id: str) -> bytes:
    return b"totp-secret:" + user_id.encode()


def seal_totp_secret(kek: Kek, user_id: str, secret: str) -> bytes:
    return kek.encrypt(secret.encode("ascii"), _aad(user_id))


def open_totp_secret(kek: Kek, user_id: str, blob: bytes) -> str:
    return kek.decrypt(blob, _aad(user_id)).decode("ascii")


def matching_steps(secret: str, code: str, now: float) -> list[int]:
    """Time steps within ±TOTP_WINDOW whose code equals ``code`` (server clock only)."""
    code = (code or "").strip().replace(" ", "")
    if not re.fullmatch(r"\d{6}", code):
        return []
    totp = pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_PERIOD)
    current = int(now // TOTP_PERIOD)
    found = []
    for step in range(current - TOTP_WINDOW, current + TOTP_WINDOW + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            found.append(step)
    return found


def verify_totp(db: Database, kek: Kek, user_id: str, code: str, now: float | None = None) -> bool:
    """Accept a code once: the step advances atomically and never goes back (checklist 70/71)."""
    now = utcnow().timestamp() if now is None else now
    with db.session() as session:
        cred = session.get(TotpCredential, user_id)
        if cred is None or cred.confirmed_at is None:
            return False
        secret = open_totp_secret(kek, user_id, cred.secret_ciphertext)
    for step in matching_steps(secret, code, now):
        with db.transaction() as session:
            result = session.execute(
                update(TotpCredential)
                .where(
                    TotpCredential.user_id == user_id,
                    TotpCredential.confirmed_at.is_not(None),
                    TotpCredential.last_step < step,
                )
                .values(last_step=step)
                .execution_options(synchronize_session=False)
            )
            if result.rowcount == 1:  # type: ignore[attr-defined]
                return True
    return False


def activate_totp(
    session: Session, kek: Kek, user_id: str, secret: str, code: str, now: float | None = None
) -> bool:
    """Store a new secret as the user's TOTP only if ``code`` proves the user holds it.

    The proving step becomes ``last_step``, so the enrolment code cannot log in (checklist 74).
    Replaces an earlier TOTP of the same user.  The caller commits.
    """
    now = utcnow().timestamp() if now is None else now
    steps = matching_steps(secret, code, now)
    if not steps:
        return False
    blob = seal_totp_secret(kek, user_id, secret)
    row = session.get(TotpCredential, user_id)
    if row is None:
        session.add(
            TotpCredential(
                user_id=user_id,
                secret_ciphertext=blob,
                last_step=max(steps),
                confirmed_at=utcnow(),
                created_at=utcnow(),
            )
        )
    else:
        row.secret_ciphertext = blob
        row.last_step = max(steps)
        row.confirmed_at = utcnow()
        row.created_at = utcnow()
    session.flush()
    return True


def remove_totp(session: Session, user_id: str) -> bool:
    result = session.execute(delete(TotpCredential).where(TotpCredential.user_id == user_id))
    return bool(result.rowcount)  # type: ignore[attr-defined]


# ------------------------------------------------------------------ recovery codes
def _recovery_digest(secret: bytes, user_id: str, code: str) -> str:
    normalized = re.sub(r"[\s-]", "", code or "").lower()
    return hmac.new(secret, f"{user_id}|{normalized}".encode(), hashlib.sha256).hexdigest()


def new_recovery_codes(session: Session, secret: bytes, user_id: str) -> list[str]:
    """Replace the user's recovery codes with 10 new ones; only their keyed digests are kept.

    The caller shows the returned codes once and commits.
    """
    session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
    codes = []
    for _ in range(RECOVERY_CODE_COUNT):
        raw = "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(RECOVERY_CODE_LENGTH))
        code = "-".join(raw[i : i + 4] for i in range(0, RECOVERY_CODE_LENGTH, 4))
        codes.append(code)
        session.add(RecoveryCode(user_id=user_id, digest=_recovery_digest(secret, user_id, code)))
    session.flush()
    return codes


def recovery_code_valid(db: Database, secret: bytes, user_id: str, code: str) -> bool:
    """Whether the code is one of the user's unused codes (without using it)."""
    if not code or len(code) > 64:
        return False
    digest = _recovery_digest(secret, user_id, code)
    with db.session() as session:
        found = session.scalar(
            select(RecoveryCode.id).where(
                RecoveryCode.user_id == user_id,
                RecoveryCode.digest == digest,
                RecoveryCode.used_at.is_(None),
            )
        )
    return found is not None


def use_recovery_code(db: Database, secret: bytes, user_id: str, code: str) -> bool:
    """Consume a recovery code: exactly one caller can ever succeed with it."""
    if not code or len(code) > 64:
        return False
    digest = _recovery_digest(secret, user_id, code)
    with db.transaction() as session:
        result = session.execute(
            update(RecoveryCode)
            .where(
                RecoveryCode.user_id == user_id,
                RecoveryCode.digest == digest,
                RecoveryCode.used_at.is_(None),
            )
            .values(used_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]


# ------------------------------------------------------------------ SMS (and other OOB) codes
class SendRefused(Exception):
    """Too many codes for this number (or address); ``retry_after`` in seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__("too many codes requested")
        self.retry_after = retry_after


def _code_digest(secret: bytes, purpose: str, destination: str, code: str) -> str:
    # Keyed: a 6-digit code's plain SHA-256 would be reversed by trying all 10^6 values.
    return hmac.new(secret, f"{purpose}|{destination}|{code}".encode(), hashlib.sha256).hexdigest()


def issue_code(
    db: Database,
    secret: bytes,
    policies: PolicyStore,
    *,
    destination: str,
    purpose: str,
    user_id: str | None,
    now: dt.datetime | None = None,
) -> str:
    """Create a 6-digit code for ``destination``; earlier unused codes stop working.

    Refused (``SendRefused``) when the number had a code less than ``sms.interval`` seconds ago
    or ``sms.per_phone_per_hour`` in the last hour, so nobody can flood a phone (or our bill).
    """
    now = now or utcnow()
    interval = policies.get_int("sms.interval")
    per_hour = policies.get_int("sms.per_phone_per_hour")
    code = f"{secrets.randbelow(10**6):06d}"
    with db.transaction() as session:
        recent = list(
            session.scalars(
                select(OneTimeCode.created_at)
                .where(
                    OneTimeCode.destination == destination,
                    OneTimeCode.created_at > now - dt.timedelta(hours=1),
                )
                .order_by(OneTimeCode.created_at.desc())
            )
        )
        if recent and interval and (now - recent[0]).total_seconds() < interval:
            raise SendRefused(max(1, int(interval - (now - recent[0]).total_seconds()) + 1))
        if len(recent) >= per_hour:
            oldest = recent[per_hour - 1]
            raise SendRefused(max(1, int(3600 - (now - oldest).total_seconds()) + 1))
        session.execute(
            update(OneTimeCode)
            .where(
                OneTimeCode.destination == destination,
                OneTimeCode.purpose == purpose,
                OneTimeCode.used_at.is_(None),
            )
            .values(used_at=now)
            .execution_options(synchronize_session=False)
        )
        session.add(
            OneTimeCode(
                user_id=user_id,
                destination=destination,
                purpose=purpose,
                digest=_code_digest(secret, purpose, destination, code),
                created_at=now,
                expires_at=now + dt.timedelta(seconds=policies.get_int("sms.code_lifetime")),
            )
        )
    return code


def check_code(
    db: Database,
    secret: bytes,
    *,
    destination: str,
    purpose: str,
    user_id: str | None,
    code: str,
    now: dt.datetime | None = None,
) -> bool:
    """Use the live code for ``destination`` if ``code`` matches; single use, expiring.

    Each wrong guess counts on the code; after ``SMS_CODE_MAX_ATTEMPTS`` it is dead.
    """
    now = now or utcnow()
    code = (code or "").strip()
    with db.transaction() as session:
        row = session.scalars(
            select(OneTimeCode)
            .where(
                OneTimeCode.destination == destination,
                OneTimeCode.purpose == purpose,
                OneTimeCode.used_at.is_(None),
                OneTimeCode.expires_at > now,
            )
            .order_by(OneTimeCode.created_at.desc())
            .limit(1)
        ).first()
        if row is None or (user_id is not None and row.user_id != user_id):
            return False
        if re.fullmatch(r"\d{6}", code) and hmac.compare_digest(
            row.digest, _code_digest(secret, purpose, destination, code)
        ):
            result = session.execute(
                update(OneTimeCode)
                .where(OneTimeCode.id == row.id, OneTimeCode.used_at.is_(None))
                .values(used_at=now)
                .execution_options(synchronize_session=False)
            )
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]
        session.execute(
            update(OneTimeCode)
            .where(OneTimeCode.id == row.id)
            .values(attempts=OneTimeCode.attempts + 1)
            .execution_options(synchronize_session=False)
        )
        # The last allowed wrong guess burns the code.
        session.execute(
            update(OneTimeCode)
            .where(
                OneTimeCode.id == row.id,
                OneTimeCode.attempts >= SMS_CODE_MAX_ATTEMPTS,
                OneTimeCode.used_at.is_(None),
            )
            .values(used_at=now)
            .execution_options(synchronize_session=False)
        )
        return False


# ------------------------------------------------------------------ WebAuthn
def rp_id_for(issuer: str) -> str:
    """The relying-party id: the issuer's host name (WebAuthn §5.1.4)."""
    return urlsplit(issuer).hostname or "localhost"


def origin_for(issuer: str) -> str:
    parts = urlsplit(issuer)
    return f"{parts.scheme}://{parts.netloc}"


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64u_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def webauthn_user_handle(user_id: str, secret: bytes) -> bytes:
    """An opaque handle (WebAuthn §14.6.1: no personal data in user.id)."""
    return hmac.new(secret, b"webauthn-user|" + user_id.encode(), hashlib.sha256).digest()[:32]

"""Throttling and lockout of password and second-factor attempts (checklist 80-84, 94).

NIST SP 800-63B-4 §3.2.2 (https://pages.nist.gov/800-63-4/sp800-63b.html): a verifier SHALL
limit consecutive failed attempts on one account to no more than 100, and MAY make the
claimant wait between attempts.  We do both, per account (exponential back-off after a few
free attempts, a hard lock at ``lockout.max_failures`` <= 100) and per client address.

Counters live in the ``throttles`` table (:class:`Counters`), or in Redis when ``redis_url``
is set (:class:`~idp.interaction.redis_counters.RedisCounters`, same contract), so they survive
restarts of the flow and of the process and are shared by every worker and node (checklist 72).
In Redis they fail closed: Redis down means no password is checked (a 503), never an
uncounted attempt (checklist 117).

**Reservation, not after-the-fact counting.**  An attempt is counted *before* the password is
checked, by one atomic ``UPDATE … SET failures = failures + 1 WHERE key = ? AND <allowed>``;
a success then resets the counter.  So 50 parallel wrong passwords raise the counter by exactly
50, and parallel requests can never all slip through under the threshold (Keycloak #31726,
checklist 82).  Refused attempts are answered before any hashing.

**The owner is never locked out by someone else** (checklist 81, ASVS 6.1.1): a browser that
has signed in to the account before carries a signed device cookie, and its attempts are
counted on a key of its own (``dev:<user>:<device>``) instead of the shared account key, so an
attacker spraying the account from 500 addresses exhausts only the shared key.  Without a
known device the owner can add a recovery code to the password, or sign in with a passkey.

**Counters are keyed per kind of name, and never say whether names belong together**
(checklist 83, PIPL).  A citizen's account has one counter per kind of login name typed
(``acct:<id>:phone``, ``…:id_number``, ``…:email``): five wrong passwords through the phone
number lock only the phone number, so the ID number then answers exactly as an unknown name
does, and nobody learns that the two belong to one person.  Unknown login names are counted
exactly like accounts (keyed by a digest of the name, same rule), so a locked unknown name
looks like a locked account.  A staff member's names (``sAMAccountName``,
``userPrincipalName``) are all names of one directory entry, counted on one key per entry
(``staff:<digest of directory and entryUUID/objectGUID>``), so a second spelling never
doubles the cap.

**A lock only stops password checks.**  It never ends a sign-in the owner completed (known
device, recovery code, passkey) nor the owner's existing grants and tokens (checklist 81
over 82): the token endpoint does not consult these counters.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import case, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from idp.accounts.identifiers import classify_login
from idp.interaction.policies import PolicyStore
from idp.storage.db import Database
from idp.storage.models import Throttle, User, utcnow


@dataclass(frozen=True)
class Rule:
    """How one kind of counter limits attempts."""

    free: int  # failures allowed before waits begin
    base_delay: float  # seconds; doubles with each further failure
    max_delay: float
    cap: int | None = None  # hard lock at this many consecutive failures
    window: int | None = None  # failures older than this many seconds are forgotten

    def delay(self, failures: int) -> float:
        if failures < self.free or failures <= 0:
            return 0.0
        exponent = min(failures - self.free, 40)
        return float(min(self.base_delay * (2**exponent), self.max_delay))


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    failures: int = 0
    retry_after: int = 0  # seconds; 0 when allowed or hard-locked
    locked: bool = False  # hard lock (cap reached)


class Blocked(str):
    """A refusal message that also says when to retry (for ``Retry-After``)."""

    retry_after: int
    locked: bool

    def __new__(cls, message: str, retry_after: int = 0, locked: bool = False) -> Blocked:
        obj = super().__new__(cls, message)
        obj.retry_after = retry_after
        obj.locked = locked
        return obj


def _key_digest(text: str) -> str:
    folded = unicodedata.normalize("NFKC", text).strip().casefold()
    return hashlib.sha256(folded.encode("utf-8")).hexdigest()[:40]


class AttemptCounters(Protocol):
    """Reserve-then-settle failure counters; the database's and Redis' implement it alike."""

    def reserve(self, key: str, rule: Rule, now: dt.datetime | None = None) -> Verdict: ...

    def reserve_all(
        self, items: list[tuple[str, Rule]], now: dt.datetime | None = None
    ) -> list[Verdict]: ...

    def settle(self, *, release: tuple[str, ...] = (), reset: tuple[str, ...] = ()) -> None: ...

    def reset(self, key: str) -> None: ...

    def release(self, key: str) -> None: ...

    def failures(self, key: str) -> int: ...

    def peek(self, key: str, rule: Rule, now: dt.datetime | None = None) -> Verdict: ...


class Counters:
    """Atomic operations on the ``throttles`` table."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def _insert_empty(self, session: Session, key: str) -> None:
        values = {"key": key, "failures": 0}
        if session.get_bind().dialect.name == "postgresql":
            session.execute(postgresql.insert(Throttle).values(**values).on_conflict_do_nothing())
        else:
            session.execute(sqlite.insert(Throttle).values(**values).on_conflict_do_nothing())

    def _insert_counted(self, session: Session, key: str, now: dt.datetime) -> int | None:
        """Create the row with one failure counted; None when it exists already."""
        values = {"key": key, "failures": 1, "last_failure_at": now}
        dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
        row = session.execute(
            dialect.insert(Throttle)
            .values(**values)
            .on_conflict_do_nothing()
            .returning(Throttle.failures)
        ).first()
        return None if row is None else int(row[0])

    def reserve(self, key: str, rule: Rule, now: dt.datetime | None = None) -> Verdict:
        """Count one attempt if the rule allows it now; otherwise say how long to wait."""
        return self.reserve_all([(key, rule)], now)[0]

    def reserve_all(
        self, items: list[tuple[str, Rule]], now: dt.datetime | None = None
    ) -> list[Verdict]:
        """Reserve on several counters in one transaction, in the order given, stopping at the
        first refusal (whose earlier reservations are undone with it).

        One transaction instead of one per counter: a login pays one commit for both its
        address and its account counter.  Callers always pass the address counter first, so
        concurrent transactions lock rows in the same order (no deadlock on PostgreSQL).
        """
        now = now or utcnow()
        verdicts: list[Verdict] = []
        with self.db.transaction() as session:
            for key, rule in items:
                verdict = self._reserve_in(session, key, rule, now)
                verdicts.append(verdict)
                if not verdict.allowed:
                    for earlier_key, _rule in items[: len(verdicts) - 1]:
                        self._release_in(session, earlier_key)
                    break
        return verdicts

    def _reserve_in(self, session: Session, key: str, rule: Rule, now: dt.datetime) -> Verdict:
        for _ in range(5):
            counted = self._increment(session, key, rule, now)
            if counted is None and (rule.cap is None or rule.cap > 0):
                # No row yet (the usual case after a success reset it): create it with this
                # attempt counted, in one statement instead of SELECT, INSERT and UPDATE.
                counted = self._insert_counted(session, key, now)
            if counted is not None:
                self._set_wait(session, key, rule.delay(counted), now)
                return Verdict(True, counted)
            row = session.execute(
                select(Throttle.failures, Throttle.blocked_until).where(Throttle.key == key)
            ).first()
            if row is None:
                self._insert_empty(session, key)
                continue
            failures, blocked_until = int(row[0]), row[1]
            if rule.cap is not None and failures >= rule.cap:
                return Verdict(False, failures, 0, locked=True)
            if blocked_until is not None and blocked_until > now:
                wait = (blocked_until - now).total_seconds()
                return Verdict(False, failures, max(1, int(wait + 0.999)))
            # Not blocked: the row appeared (or changed) after our UPDATE looked; again.
        raise RuntimeError("throttle counter could not be updated")  # pragma: no cover

    def _increment(self, session: Session, key: str, rule: Rule, now: dt.datetime) -> int | None:
        """The new failure count, or None when the rule refuses (or the row is missing)."""
        conditions = [
            Throttle.key == key,
            (Throttle.blocked_until.is_(None)) | (Throttle.blocked_until <= now),
        ]
        if rule.cap is not None:
            conditions.append(Throttle.failures < rule.cap)
        new_failures: Any = Throttle.failures + 1
        if rule.window is not None:
            forget_before = now - dt.timedelta(seconds=rule.window)
            new_failures = case(
                (Throttle.last_failure_at < forget_before, 1), else_=Throttle.failures + 1
            )
        result = session.execute(
            update(Throttle)
            .where(*conditions)
            .values(failures=new_failures, last_failure_at=now)
            .returning(Throttle.failures)
            .execution_options(synchronize_session=False)
        ).first()
        return None if result is None else int(result[0])

    def _set_wait(self, session: Session, key: str, delay: float, now: dt.datetime) -> None:
        if delay <= 0:
            # Nothing to impose; an expired blocked_until already counts as "not blocked"
            # everywhere (blocked_until <= now), so the row need not be written again.
            return
        session.execute(
            update(Throttle)
            .where(Throttle.key == key)
            .values(blocked_until=now + dt.timedelta(seconds=delay))
            .execution_options(synchronize_session=False)
        )

    def reset(self, key: str) -> None:
        self.settle(reset=(key,))

    def release(self, key: str) -> None:
        """Undo one reservation that turned out not to be a failure."""
        self.settle(release=(key,))

    def settle(self, *, release: tuple[str, ...] = (), reset: tuple[str, ...] = ()) -> None:
        """Release and reset counters in one transaction (address first, as in reserve_all)."""
        with self.db.transaction() as session:
            for key in release:
                self._release_in(session, key)
            for key in reset:
                session.execute(delete(Throttle).where(Throttle.key == key))

    @staticmethod
    def _release_in(session: Session, key: str) -> None:
        session.execute(
            update(Throttle)
            .where(Throttle.key == key, Throttle.failures > 0)
            .values(failures=Throttle.failures - 1, blocked_until=None)
            .execution_options(synchronize_session=False)
        )

    def failures(self, key: str) -> int:
        with self.db.session() as session:
            value = session.scalar(select(Throttle.failures).where(Throttle.key == key))
        return int(value or 0)

    def peek(self, key: str, rule: Rule, now: dt.datetime | None = None) -> Verdict:
        """Would an attempt be allowed now?  (No change.)"""
        now = now or utcnow()
        with self.db.session() as session:
            row = session.execute(
                select(Throttle.failures, Throttle.blocked_until).where(Throttle.key == key)
            ).first()
        if row is None:
            return Verdict(True, 0)
        failures, blocked_until = int(row[0]), row[1]
        if rule.cap is not None and failures >= rule.cap:
            return Verdict(False, failures, 0, locked=True)
        if blocked_until is not None and blocked_until > now:
            wait = (blocked_until - now).total_seconds()
            return Verdict(False, failures, max(1, int(wait + 0.999)))
        return Verdict(True, failures)


#: The kinds of name a citizen types; each has its own counter (``acct:<id>:<kind>``).
#: ``session`` is the signed-in person confirming the password again (no name typed).
CITIZEN_NAME_KINDS = ("phone", "id_number", "email", "session")


def _name_kind(login_name: str) -> str:
    kind = classify_login(login_name)
    return kind if kind in CITIZEN_NAME_KINDS else "session"


def account_key(user: User | None, login_name: str) -> str:
    """The counter an attempt with ``login_name`` is counted on.

    A citizen: one counter per kind of name (see the module docstring).  A staff account: its
    directory entry.  No account: the name itself, under the same rule, so that counters and
    answers never tell known names from unknown ones.
    """
    if user is None:
        return f"login:{_key_digest(login_name)}"
    if user.kind == "staff":
        return staff_entry_key(user.directory_id or "", user.directory_key or "")
    return f"acct:{user.id}:{_name_kind(login_name)}"


def staff_entry_key(directory_id: str, entry_key: str) -> str:
    """The counter of one directory entry, whichever of its login names was typed (issue 14/9)."""
    return f"staff:{_key_digest(f'{directory_id}:{entry_key}')}"


def staff_login_key(department: str, username: str) -> str:
    """The counter of a name that matches no entry of the department's directory."""
    return f"login:{_key_digest(f'{department}:{username}')}"


class LoginGate:
    """The ``login_gate`` hook: ``check`` before the password is verified, ``record`` after.

    ``device_for(user_id)`` returns the id of the browser's known device for that account, or
    None; it is supplied by the web layer (it reads a signed cookie).
    """

    def __init__(
        self,
        counters: AttemptCounters,
        policies: PolicyStore,
        device_for: Callable[[str], str | None] | None = None,
    ) -> None:
        self.counters = counters
        self.policies = policies
        self.device_for = device_for

    # -------------------------------------------------------------- rules
    def account_rule(self) -> Rule:
        p = self.policies
        return Rule(
            free=p.get_int("lockout.free_attempts"),
            base_delay=p.get_int("lockout.base_delay"),
            max_delay=p.get_int("lockout.max_delay"),
            cap=p.get_int("lockout.max_failures"),
        )

    def ip_rule(self) -> Rule:
        p = self.policies
        return Rule(
            free=p.get_int("lockout.ip_free_attempts"),
            base_delay=1,
            max_delay=p.get_int("lockout.max_delay"),
            window=p.get_int("lockout.ip_window"),
        )

    def _keys(
        self, user: User | None, login_name: str, ip: str, key: str | None = None
    ) -> tuple[str, str | None]:
        """(account-or-device key, address key or None for a known device).

        ``key`` names the counter outright (a staff entry, an unknown staff name); otherwise it
        follows from the account and the kind of name typed (:func:`account_key`).
        """
        if user is not None and self.device_for is not None:
            device = self.device_for(user.id)
            if device:
                return f"dev:{user.id}:{device}"[:200], None
        return key or account_key(user, login_name), f"ip:{ip}"[:200]

    # -------------------------------------------------------------- the hook
    def check(
        self, user: User | None, login_name: str, ip: str, *, key: str | None = None
    ) -> Blocked | None:
        """Reserve one attempt, or refuse with a message (the same for every account)."""
        account, ip_key = self._keys(user, login_name, ip, key)
        items = [(account, self.account_rule())]
        if ip_key is not None:
            items.insert(0, (ip_key, self.ip_rule()))
        verdicts = self.counters.reserve_all(items)
        refused = next((v for v in verdicts if not v.allowed), None)
        return self._refusal(refused) if refused is not None else None

    def record(
        self,
        user: User | None,
        login_name: str,
        ip: str,
        success: bool,
        *,
        key: str | None = None,
    ) -> None:
        """After the check: a success clears the account's counter; a failure was counted."""
        if not success:
            return
        account, ip_key = self._keys(user, login_name, ip, key)
        # Only the counter the attempt was made on: a success on a known device says nothing
        # about the attempts from unknown devices, so the shared account counter keeps them.
        self.counters.settle(release=(ip_key,) if ip_key is not None else (), reset=(account,))

    def cancel(
        self, user: User | None, login_name: str, ip: str, *, key: str | None = None
    ) -> None:
        """The attempt could not be decided (directory down): do not count it."""
        account, ip_key = self._keys(user, login_name, ip, key)
        self.counters.settle(release=(*((ip_key,) if ip_key is not None else ()), account))

    # -------------------------------------------------------------- other paths
    def unlock(self, user: User) -> None:
        """Clear every password counter of the account, and its second-factor counter."""
        if user.kind == "staff":
            keys: tuple[str, ...] = (account_key(user, ""),)
        else:
            keys = tuple(f"acct:{user.id}:{kind}" for kind in CITIZEN_NAME_KINDS)
        self.counters.settle(reset=(*keys, f"mfa:{user.id}"))

    @staticmethod
    def _refusal(verdict: Verdict) -> Blocked:
        from flask_babel import gettext as _

        if verdict.locked:
            return Blocked(
                _(
                    "This account is locked after too many failed attempts. Sign in from a "
                    "device you used before, add a recovery code, use a passkey, or contact "
                    "the help desk."
                ),
                0,
                locked=True,
            )
        minutes = max(1, (verdict.retry_after + 59) // 60)
        return Blocked(
            _("Too many attempts. Try again in %(n)d minute(s).", n=minutes)
            if verdict.retry_after >= 60
            else _("Too many attempts. Try again in %(n)d second(s).", n=verdict.retry_after),
            verdict.retry_after,
        )


def mfa_rule(policies: PolicyStore) -> Rule:
    """Per-account second-factor failures: shared across restarted logins (checklist 72)."""
    return Rule(
        free=policies.get_int("mfa.max_attempts"),
        base_delay=policies.get_int("mfa.backoff_seconds"),
        max_delay=policies.get_int("lockout.max_delay") * 4,
        cap=policies.get_int("lockout.max_failures"),
    )

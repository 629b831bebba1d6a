"""Security policies set by security admins, stored in the database, read through a short cache.

What can be set (each :class:`PolicyDef` below documents itself; ``docs/policies.md`` is the
administrator's guide): who must use multi-factor authentication (NIST SP 800-63B-4 §2.2 AAL2),
password rules (NIST SP 800-63B-4 §3.1.1.2: at least 15 characters when the password is the
only factor, 8 with MFA, at least 64 allowed, no composition rules, a blocklist), session idle
and absolute timeouts per class of user (NIST SP 800-63B-4 §2.2.3, checklist 66), and the
throttling of failed attempts (NIST SP 800-63B-4 §3.2.2, checklist 80).

Propagation (checklist 99): every worker reads the whole table at most once per
``CACHE_TTL`` seconds, so a change made on any node applies everywhere within that time
(10 s by default, the requirement is 30 s).  Writes go through :meth:`PolicyStore.set` only,
which validates the value and records the change (old -> new) in the audit trail.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from idp import audit, untrusted_json
from idp.messages import N_
from idp.storage.db import Database
from idp.storage.models import Policy, User, utcnow

CACHE_TTL = 10.0  # seconds; checklist 99 allows at most 30

USER_CLASSES = ("citizen", "staff", "admin", "legal-entity")
MFA_TARGETS = ("everyone", *USER_CLASSES)

# Department and place names a password must not contain (NIST SP 800-63B-4 §3.1.1.2:
# "context-specific words, such as the name of the service").  Admins extend the list.
DEFAULT_CONTEXT_WORDS = (
    "yitong",
    "一通",
    "liaoning",
    "辽宁",
    "province",
    "shenyang",
    "沈阳",
    "dalian",
    "大连",
    "zhengwu",
    "政务",
    "government",
    "renshe",
    "人社",
    "hrss",
    "gongan",
    "公安",
    "ziranziyuan",
    "自然资源",
    "shebao",
    "社保",
    "社会保障",
    "人力资源",
    "公安厅",
    "自然资源厅",
)


class PolicyError(ValueError):
    """A policy name or value was refused; the message says why."""


@dataclass(frozen=True)
class PolicyDef:
    name: str
    kind: str  # int | bool | list | str
    default: Any
    doc: str
    minimum: int | None = None
    maximum: int | None = None
    choices: tuple[str, ...] | None = None


def _defs() -> dict[str, PolicyDef]:
    items = [
        PolicyDef(
            "account.close_cooling_days",
            "int",
            15,
            N_(
                "Days between a citizen's request to close the account (注销) and its completion; "
                "signing in meanwhile lets the person cancel. 0 completes at the next run of "
                "yitong users close-due."
            ),
            0,
            365,
        ),
        PolicyDef(
            "login.sms_allowed_for",
            "list",
            ["citizen"],
            N_(
                "Classes of user who may sign in with an SMS code instead of a password "
                "(短信验证码登录). The code is one possession factor: where a second factor is "
                "required, the password is asked as well."
            ),
            choices=USER_CLASSES,
        ),
        PolicyDef(
            "mfa.required_for",
            "list",
            ["admin"],
            N_(
                "Who must pass a second factor at every login: any of everyone, citizen, staff, "
                "admin (holders of an admin role), legal-entity (logins acting for a company)."
            ),
            choices=MFA_TARGETS,
        ),
        PolicyDef(
            "mfa.required_clients",
            "list",
            [],
            N_("client_ids whose logins always need a second factor (urn:yitong:acr:mfa)."),
        ),
        PolicyDef(
            "mfa.phishing_resistant_clients",
            "list",
            [],
            N_("client_ids whose logins need a security key or passkey (urn:yitong:acr:phr)."),
        ),
        PolicyDef(
            "mfa.always_when_enrolled",
            "bool",
            True,
            N_("Ask anyone who has set up a second factor for it at every login."),
        ),
        PolicyDef(
            "mfa.sms_allowed_for",
            "list",
            ["citizen", "legal-entity"],
            N_(
                "Classes of user for whom an SMS code counts as a second factor (SMS is a "
                "restricted authenticator, NIST SP 800-63B-4 §3.1.3.3)."
            ),
            choices=USER_CLASSES,
        ),
        PolicyDef(
            "mfa.max_attempts",
            "int",
            5,
            N_(
                "Wrong second-factor codes after which the pending login ends and the password "
                "step starts again."
            ),
            1,
            10,
        ),
        PolicyDef(
            "mfa.backoff_seconds",
            "int",
            30,
            N_(
                "First wait imposed on an account once mfa.max_attempts wrong codes have been "
                "entered (across restarted logins); doubles with every further failure."
            ),
            1,
            3600,
        ),
        PolicyDef(
            "password.min_length",
            "int",
            15,
            N_(
                "Shortest new password when the password is the account's only factor "
                "(characters, counted as Unicode code points)."
            ),
            15,
            64,
        ),
        PolicyDef(
            "password.min_length_mfa",
            "int",
            8,
            N_("Shortest new password for accounts with a second factor."),
            8,
            64,
        ),
        PolicyDef(
            "password.max_length",
            "int",
            128,
            N_("Longest password accepted; longer input is refused before hashing."),
            64,
            1024,
        ),
        PolicyDef(
            "password.context_words",
            "list",
            list(DEFAULT_CONTEXT_WORDS),
            N_("Words a password must not contain (department, place and service names)."),
        ),
        PolicyDef(
            "password.check_breached",
            "bool",
            True,
            N_("Refuse passwords found in the shipped offline list of breached passwords."),
        ),
        PolicyDef(
            "lockout.free_attempts",
            "int",
            5,
            N_("Consecutive wrong passwords on one account before waits begin."),
            0,
            100,
        ),
        PolicyDef(
            "lockout.base_delay",
            "int",
            1,
            N_("First wait (seconds) after lockout.free_attempts; doubles per failure."),
            1,
            3600,
        ),
        PolicyDef(
            "lockout.max_delay",
            "int",
            900,
            N_("Longest wait (seconds) between attempts."),
            1,
            86400,
        ),
        PolicyDef(
            "lockout.max_failures",
            "int",
            25,
            N_(
                "Consecutive failures through one kind of login name (phone, ID number, e-mail, "
                "re-entry) that lock it until an operator unlocks the account or the owner signs "
                "in from a known device or with a recovery code. Four kinds: at most 100 in all "
                "(NIST)."
            ),
            1,
            25,
        ),
        PolicyDef(
            "lockout.ip_free_attempts",
            "int",
            30,
            N_("Failed logins from one address (any account) before that address must wait."),
            1,
            100000,
        ),
        PolicyDef(
            "lockout.ip_window",
            "int",
            3600,
            N_("Seconds after which an address's failures are forgotten."),
            60,
            604800,
        ),
        PolicyDef(
            "ratelimit.mfa_per_minute",
            "int",
            60,
            N_(
                "Second-factor and sign-in-security submissions per client address per minute "
                "(offices share one address behind NAT; the per-account counters do the real work)."
            ),
            1,
            10000,
        ),
        PolicyDef(
            "sms.per_phone_per_hour",
            "int",
            5,
            N_("SMS codes sent to one number per hour."),
            1,
            100,
        ),
        PolicyDef(
            "sms.interval",
            "int",
            60,
            N_("Seconds between two SMS codes to one number."),
            0,
            3600,
        ),
        PolicyDef(
            "sms.per_ip_per_hour",
            "int",
            20,
            N_("SMS codes requested by one address per hour."),
            1,
            10000,
        ),
        PolicyDef(
            "sms.code_lifetime",
            "int",
            300,
            N_("Seconds an SMS code stays valid."),
            60,
            900,
        ),
    ]
    # (idle, absolute) seconds and their documentation, written out per class so that the
    # extractor finds each sentence and Chinese can name the class in its own words.
    sessions = {
        "citizen": (
            1800,
            43200,
            N_("Seconds without activity after which a citizen session ends."),
            N_("Seconds after sign-in after which a citizen session ends, even if active."),
        ),
        "staff": (
            1800,
            43200,
            N_("Seconds without activity after which a staff session ends."),
            N_("Seconds after sign-in after which a staff session ends, even if active."),
        ),
        "admin": (
            900,
            43200,
            N_("Seconds without activity after which an admin session ends."),
            N_("Seconds after sign-in after which an admin session ends, even if active."),
        ),
        "legal-entity": (
            1800,
            43200,
            N_("Seconds without activity after which a legal-entity session ends."),
            N_("Seconds after sign-in after which a legal-entity session ends, even if active."),
        ),
    }
    for cls, (idle, absolute, idle_doc, absolute_doc) in sessions.items():
        items.append(PolicyDef(f"session.idle.{cls}", "int", idle, idle_doc, 60, 86400))
        items.append(
            PolicyDef(f"session.absolute.{cls}", "int", absolute, absolute_doc, 300, 2592000)
        )
    return {d.name: d for d in items}


DEFINITIONS: dict[str, PolicyDef] = _defs()


def parse_value(name: str, raw: Any) -> Any:
    """Validate (and for text input, parse) a value for policy ``name``; raise PolicyError."""
    d = DEFINITIONS.get(name)
    if d is None:
        raise PolicyError(f"unknown policy {name!r}")
    value = raw
    if isinstance(raw, str) and d.kind != "str":
        text = raw.strip()
        try:
            value = untrusted_json.loads(text)
        except ValueError:
            if d.kind == "list":
                value = [p.strip() for p in text.split(",") if p.strip()]
            elif d.kind == "bool" and text.lower() in ("yes", "no", "on", "off"):
                value = text.lower() in ("yes", "on")
            else:
                raise PolicyError(f"{name}: cannot read {raw!r} as {d.kind}") from None
    if d.kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise PolicyError(f"{name}: expected a whole number")
        if d.minimum is not None and value < d.minimum:
            raise PolicyError(f"{name}: must be at least {d.minimum}")
        if d.maximum is not None and value > d.maximum:
            raise PolicyError(f"{name}: must be at most {d.maximum}")
    elif d.kind == "bool":
        if not isinstance(value, bool):
            raise PolicyError(f"{name}: expected true or false")
    elif d.kind == "list":
        if isinstance(value, str):
            value = [value] if value else []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise PolicyError(f"{name}: expected a list of names")
        value = list(dict.fromkeys(v.strip() for v in value if v.strip()))
        if any(len(v) > 200 for v in value) or len(value) > 1000:
            raise PolicyError(f"{name}: too many or too long entries")
        if d.choices is not None:
            bad = [v for v in value if v not in d.choices]
            if bad:
                raise PolicyError(
                    f"{name}: unknown value {', '.join(bad)}; choose from {', '.join(d.choices)}"
                )
    return value


class PolicyStore:
    """Read-through cache of the ``policies`` table, shared by every request of one worker."""

    def __init__(
        self, db: Database, *, ttl: float = CACHE_TTL, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.db = db
        self.ttl = ttl
        self.clock = clock
        self._lock = threading.Lock()
        self._values: dict[str, Any] = {}
        self._loaded_at: float | None = None

    # -------------------------------------------------------------- reading
    def _snapshot(self) -> dict[str, Any]:
        now = self.clock()
        with self._lock:
            if self._loaded_at is not None and now - self._loaded_at < self.ttl:
                return self._values
        with self.db.session() as session:
            rows = session.execute(select(Policy.name, Policy.value)).all()
        values = {name: value for name, value in rows if name in DEFINITIONS}
        with self._lock:
            self._values, self._loaded_at = values, now
        return values

    def invalidate(self) -> None:
        with self._lock:
            self._loaded_at = None

    def get(self, name: str) -> Any:
        d = DEFINITIONS[name]
        values = self._snapshot()
        if name in values:
            try:
                return parse_value(name, values[name])
            except PolicyError:
                return d.default  # a value edited by hand into nonsense never widens access
        return d.default

    def get_int(self, name: str) -> int:
        return int(self.get(name))

    def get_list(self, name: str) -> list[str]:
        return list(self.get(name))

    def get_bool(self, name: str) -> bool:
        return bool(self.get(name))

    def all(self) -> dict[str, dict[str, Any]]:
        """Every policy: current value, default, whether it was set, documentation."""
        values = self._snapshot()
        return {
            name: {
                "value": self.get(name),
                "default": d.default,
                "set": name in values,
                "doc": d.doc,
            }
            for name, d in sorted(DEFINITIONS.items())
        }

    # -------------------------------------------------------------- writing
    def set(
        self, session: Session, name: str, raw: Any, *, actor: str, ip: str | None = None
    ) -> Any:
        """Validate and store one policy in the caller's transaction, with an audit record."""
        value = parse_value(name, raw)
        row = session.get(Policy, name)
        old = DEFINITIONS[name].default if row is None else row.value
        if row is None:
            session.add(Policy(name=name, value=value, updated_at=utcnow(), updated_by=actor))
        else:
            row.value, row.updated_at, row.updated_by = value, utcnow(), actor
        session.flush()
        audit.record(
            session,
            "policy.change",
            actor=actor,
            target=name,
            ip=ip,
            details={"old": old, "new": value},
        )
        self.invalidate()
        return value

    def set_many(
        self, session: Session, changes: Mapping[str, Any], *, actor: str, ip: str | None = None
    ) -> dict[str, Any]:
        """Validate every change first, then apply them all (or none)."""
        parsed = {name: parse_value(name, raw) for name, raw in changes.items()}
        for name, value in parsed.items():
            self.set(session, name, value, actor=actor, ip=ip)
        return parsed


# ------------------------------------------------------------------ classes of user
ADMIN_ROLES = frozenset(
    {"security-admin", "client-admin", "department-admin", "auditor", "helpdesk"}
)
# A login acts for a legal entity when it asks for one of these scopes (issue 7 names them).
LEGAL_ENTITY_SCOPES = frozenset({"entity", "legal_entity", "act_as"})


def user_classes(user: User, scopes: Iterable[str] = ()) -> set[str]:
    """The classes a login belongs to; policies name them (citizen, staff, admin, legal-entity)."""
    classes = {"staff" if user.kind == "staff" else "citizen"}
    if ADMIN_ROLES.intersection(user.roles or ()):
        classes.add("admin")
    if user.kind == "entity" or LEGAL_ENTITY_SCOPES.intersection(scopes):
        classes.add("legal-entity")
    return classes


def session_timeouts_for(policies: PolicyStore, classes: Iterable[str]) -> tuple[int, int]:
    """(idle, absolute) seconds: the strictest of the classes the user belongs to."""
    classes = [c for c in classes if c in USER_CLASSES] or ["citizen"]
    idle = min(policies.get_int(f"session.idle.{c}") for c in classes)
    absolute = min(policies.get_int(f"session.absolute.{c}") for c in classes)
    return idle, absolute

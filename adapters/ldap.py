"""Department LDAP directories (OpenLDAP, Active Directory) behind ``PasswordAuthenticator``.

Login is search-then-bind (RFC 4513 §5.1.2 simple bind, RFC 4511): a service account (or an
anonymous search, when configured) finds exactly one entry for the typed name, the user's
own bind proves the password, and the bound identity is confirmed afterwards with *Who am
I?* (RFC 4532, https://www.rfc-editor.org/rfc/rfc4532) or by reading the entry as the user.
The shape follows dex ``connector/ldap/ldap.go``; the failure modes it guards against are
SECURITY-CHECKLIST items 85-94 and 116, cited where each is enforced.

Each directory keeps its own connection pool, per-server circuit breakers and failover order,
so a department whose directory is down or hung answers ``AdapterUnavailable`` at once and
never slows down another department.  Never import ``flask`` or ``idp`` here.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import ssl
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import ldap3
from ldap3.core import exceptions as ldap_errors
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import parse_dn

from adapters.base import (
    AdapterConfigError,
    AdapterUnavailable,
    Identity,
    InvalidCredentials,
)

log = logging.getLogger("yitong.adapters.ldap")

T = TypeVar("T")

TlsMode = Literal["ldaps", "starttls", "none"]
GroupMode = Literal["none", "search", "member_of"]
IdentityCheck = Literal["whoami", "read_entry"]

MAX_USERNAME_LENGTH = 256
MAX_PASSWORD_LENGTH = 1024
_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_ATTR_RE = re.compile(r"^[A-Za-z][A-Za-z0-9-]*$|^[0-9]+(\.[0-9]+)+$")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")

# Claim -> directory attributes (first present wins).  Overridden per claim by `attributes`.
DEFAULT_ATTRIBUTES: Mapping[str, tuple[str, ...]] = {
    "name": ("displayName", "cn"),
    "given_name": ("givenName",),
    "family_name": ("sn",),
    "email": ("mail",),
    "phone_number": ("telephoneNumber", "mobile"),
    "employee_number": ("employeeNumber",),
    "title": ("title",),
}

# Result codes that mean "the server cannot serve now", not "these credentials are wrong".
_BUSY_CODES = frozenset({51, 52, 80})  # busy, unavailable, other
_COMMUNICATION_ERRORS: tuple[type[BaseException], ...] = (
    ldap_errors.LDAPCommunicationError,
    ldap_errors.LDAPStartTLSError,
    ldap_errors.LDAPCertificateError,
    ldap_errors.LDAPSSLConfigurationError,
    ldap_errors.LDAPResponseTimeoutError,
    ssl.SSLError,
    OSError,
)


# ----------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class ServerUrl:
    """One server of a directory's pool, in failover order."""

    url: str
    host: str
    port: int
    use_ssl: bool


@dataclass(frozen=True)
class DirectoryConfig:
    """One department directory, parsed from a ``[directories.<id>]`` table.

    Every field is documented in docs/directories.md.  Build with :meth:`from_mapping`, which
    refuses unsafe or inconsistent combinations with an error naming the key.
    """

    id: str
    display_name: str
    urls: tuple[ServerUrl, ...]
    user_base: str
    tls: TlsMode = "ldaps"
    allow_plaintext: bool = False
    ca_file: str | None = None
    validate_certificate: bool = True
    tls_names: tuple[str, ...] = ()
    bind_dn: str | None = None
    bind_password: str | None = field(default=None, repr=False)
    anonymous_search: bool = False
    user_filter: str = "(objectClass=person)"
    user_scope: Literal["subtree", "one"] = "subtree"
    login_attributes: tuple[str, ...] = ("uid",)
    key_attribute: str = "entryUUID"
    attributes: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: dict(DEFAULT_ATTRIBUTES)
    )
    disabled_filter: str | None = None
    identity_check: IdentityCheck = "whoami"
    group_mode: GroupMode = "none"
    group_base: str | None = None
    group_filter: str = "(objectClass=groupOfNames)"
    group_member_attribute: str = "member"
    group_member_value: str = "dn"
    group_name_attribute: str = "cn"
    member_of_attribute: str = "memberOf"
    role_map: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    connect_timeout: float = 3.0
    receive_timeout: float = 5.0
    timeout: float = 8.0
    pool_size: int = 4
    pool_idle_seconds: float = 60.0
    circuit_failures: int = 3
    circuit_reset_seconds: float = 30.0
    page_size: int = 500
    allow_referrals: bool = False
    referral_hosts: tuple[str, ...] = ()

    @property
    def login_attribute(self) -> str:
        return self.login_attributes[0]

    @classmethod
    def from_mapping(cls, directory_id: str, raw: Mapping[str, Any]) -> DirectoryConfig:
        """Parse and check one directory table; raise :class:`AdapterConfigError` naming the key."""
        return _Parser(directory_id, raw).parse()

    def describe(self) -> dict[str, Any]:
        """A summary safe to print (no password)."""
        return {
            "id": self.id,
            "display_name": self.display_name,
            "urls": [u.url for u in self.urls],
            "tls": self.tls,
            "validate_certificate": self.validate_certificate,
            "bind": self.bind_dn or ("anonymous" if self.anonymous_search else None),
            "user_base": self.user_base,
            "login_attributes": list(self.login_attributes),
            "key_attribute": self.key_attribute,
            "group_mode": self.group_mode,
        }


_KNOWN_KEYS = frozenset(
    {
        "display_name",
        "urls",
        "tls",
        "allow_plaintext",
        "ca_file",
        "validate_certificate",
        "tls_names",
        "bind_dn",
        "bind_password",
        "bind_password_file",
        "anonymous_search",
        "user_base",
        "user_filter",
        "user_scope",
        "login_attribute",
        "key_attribute",
        "attributes",
        "disabled_filter",
        "identity_check",
        "group_mode",
        "group_base",
        "group_filter",
        "group_member_attribute",
        "group_member_value",
        "group_name_attribute",
        "member_of_attribute",
        "role_map",
        "connect_timeout",
        "receive_timeout",
        "timeout",
        "pool_size",
        "pool_idle_seconds",
        "circuit_failures",
        "circuit_reset_seconds",
        "page_size",
        "allow_referrals",
        "referral_hosts",
    }
)


class _Parser:
    """Turns a plain TOML table into a :class:`DirectoryConfig`, one named check at a time."""

    def __init__(self, directory_id: str, raw: Mapping[str, Any]) -> None:
        self.id = directory_id
        self.raw = raw

    def fail(self, key: str | None, problem: str) -> AdapterConfigError:
        return AdapterConfigError(f"directories.{self.id}", key, problem)

    def _str(self, key: str, default: str | None = None, *, required: bool = False) -> str | None:
        value = self.raw.get(key, default)
        if value is None:
            if required:
                raise self.fail(key, "is required")
            return None
        if not isinstance(value, str):
            raise self.fail(key, f"expected text, got {value!r}")
        value = value.strip()
        if required and not value:
            raise self.fail(key, "must not be empty")
        return value or None

    def _bool(self, key: str, default: bool) -> bool:
        value = self.raw.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, f"expected true or false, got {value!r}")
        return value

    def _number(self, key: str, default: float, *, low: float, high: float) -> float:
        value = self.raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(key, f"expected a number, got {value!r}")
        if not low <= value <= high:
            raise self.fail(key, f"must be between {low:g} and {high:g}, got {value!r}")
        return float(value)

    def _int(self, key: str, default: int, *, low: int, high: int) -> int:
        value = self.raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"expected a whole number, got {value!r}")
        if not low <= value <= high:
            raise self.fail(key, f"must be between {low} and {high}, got {value!r}")
        return value

    def _choice(self, key: str, default: str, choices: Sequence[str]) -> str:
        value = self.raw.get(key, default)
        if value not in choices:
            raise self.fail(key, f"must be one of {', '.join(choices)}; got {value!r}")
        return str(value)

    def _names(self, key: str, default: Sequence[str]) -> tuple[str, ...]:
        value = self.raw.get(key, list(default))
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
            raise self.fail(key, f"expected text or a list of text, got {value!r}")
        return tuple(i.strip() for i in items if i.strip())

    def _attribute(self, key: str, value: str) -> str:
        if not _ATTR_RE.match(value):
            raise self.fail(key, f"{value!r} is not an LDAP attribute name")
        return value

    def _filter(self, key: str, value: str | None) -> str | None:
        if value is None:
            return None
        depth = 0
        for ch in value:
            depth += {"(": 1, ")": -1}.get(ch, 0)
            if depth < 0:
                break
        if not (value.startswith("(") and value.endswith(")")) or depth != 0:
            raise self.fail(key, f"{value!r} is not a parenthesised LDAP filter")
        if "{" in value:
            raise self.fail(
                key,
                "placeholders are not supported: the login filter is built as "
                "(&<user_filter>(<login_attribute>=<escaped name>))",
            )
        return value

    def _urls(self) -> tuple[ServerUrl, ...]:
        raw = self.raw.get("urls")
        if isinstance(raw, str):
            raw = [raw]
        if not raw or not isinstance(raw, list | tuple):
            raise self.fail("urls", 'is required: a list such as ["ldaps://dc1.example:636"]')
        urls = []
        for item in raw:
            if not isinstance(item, str):
                raise self.fail("urls", f"expected text, got {item!r}")
            parts = urlsplit(item.strip())
            if parts.scheme not in {"ldap", "ldaps"}:
                raise self.fail("urls", f"{item!r}: the scheme must be ldap:// or ldaps://")
            if not parts.hostname:
                raise self.fail("urls", f"{item!r}: no host name")
            if parts.path not in {"", "/"} or parts.query or parts.fragment or parts.username:
                raise self.fail("urls", f"{item!r}: give only scheme, host and port")
            try:
                port = parts.port or (636 if parts.scheme == "ldaps" else 389)
            except ValueError:
                raise self.fail("urls", f"{item!r}: invalid port") from None
            urls.append(ServerUrl(item.strip(), parts.hostname, port, parts.scheme == "ldaps"))
        return tuple(urls)

    def _attribute_map(self) -> dict[str, tuple[str, ...]]:
        result = dict(DEFAULT_ATTRIBUTES)
        raw = self.raw.get("attributes", {})
        if not isinstance(raw, Mapping):
            raise self.fail("attributes", "expected a table of claim = attribute(s)")
        for claim, value in raw.items():
            key = f"attributes.{claim}"
            if not isinstance(claim, str) or not re.match(r"^[a-z][a-z0-9_]{0,63}$", claim):
                raise self.fail(key, "claim names are lower-case letters, digits and _")
            names = [value] if isinstance(value, str) else value
            if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
                raise self.fail(key, f"expected an attribute name or a list of them, got {value!r}")
            cleaned = tuple(self._attribute(key, n.strip()) for n in names if n.strip())
            if cleaned:
                result[claim] = cleaned
            else:
                result.pop(claim, None)  # "" switches a default claim off
        return result

    def _role_map(self) -> dict[str, tuple[str, ...]]:
        raw = self.raw.get("role_map", {})
        if not isinstance(raw, Mapping):
            raise self.fail("role_map", "expected a table of group = [roles]")
        result: dict[str, tuple[str, ...]] = {}
        for group, roles in raw.items():
            key = f"role_map.{group}"
            items = [roles] if isinstance(roles, str) else roles
            if not isinstance(items, list | tuple) or not all(isinstance(r, str) for r in items):
                raise self.fail(key, f"expected a role or a list of roles, got {roles!r}")
            result[_group_key(str(group))] = tuple(r.strip() for r in items if r.strip())
        return result

    def _password(self) -> str | None:
        password = self.raw.get("bind_password")
        path = self._str("bind_password_file")
        if password is not None and path:
            raise self.fail(
                "bind_password_file", "give bind_password or bind_password_file, not both"
            )
        if path:
            try:
                with open(path, encoding="utf-8") as fh:
                    password = fh.read().rstrip("\r\n")
            except OSError as exc:
                raise self.fail(
                    "bind_password_file", f"cannot read {path}: {exc.strerror}"
                ) from None
        if password is not None and not isinstance(password, str):
            raise self.fail("bind_password", "expected text")
        return password

    def parse(self) -> DirectoryConfig:
        if not isinstance(self.id, str) or not _ID_RE.match(self.id):
            raise AdapterConfigError(
                f"directories.{self.id}",
                None,
                "directory ids are 1-64 lower-case letters, digits, '-' or '_' (used in uid@id)",
            )
        if not isinstance(self.raw, Mapping):
            raise self.fail(None, "expected a table")
        unknown = sorted(set(self.raw) - _KNOWN_KEYS)
        if unknown:
            raise self.fail(unknown[0], "unknown key (see docs/directories.md)")

        urls = self._urls()
        tls = self._choice("tls", "ldaps", ("ldaps", "starttls", "none"))
        allow_plaintext = self._bool("allow_plaintext", False)
        validate = self._bool("validate_certificate", True)
        if tls == "ldaps" and not all(u.use_ssl for u in urls):
            raise self.fail("urls", 'tls = "ldaps" needs ldaps:// URLs (or set tls = "starttls")')
        if tls != "ldaps" and any(u.use_ssl for u in urls):
            raise self.fail("urls", f'ldaps:// URLs need tls = "ldaps" (tls is "{tls}")')
        # Checklist 90: plaintext or unvalidated TLS only when explicitly allowed (development).
        if tls == "none" and not allow_plaintext:
            raise self.fail(
                "tls",
                'plaintext LDAP sends passwords in clear: use "ldaps" or "starttls", or '
                "set allow_plaintext = true (development only)",
            )
        if not validate and not allow_plaintext:
            raise self.fail(
                "validate_certificate",
                "turning certificate validation off needs allow_plaintext = true "
                "(development only)",
            )
        ca_file = self._str("ca_file")
        if ca_file and not os.path.isfile(ca_file):
            raise self.fail("ca_file", f"no such file: {ca_file}")

        bind_dn = self._str("bind_dn")
        password = self._password()
        anonymous = self._bool("anonymous_search", False)
        if bind_dn and anonymous:
            raise self.fail("anonymous_search", "give bind_dn or anonymous_search = true, not both")
        if bind_dn and not password:
            raise self.fail("bind_password", "bind_dn needs bind_password or bind_password_file")
        if not bind_dn and not anonymous:
            raise self.fail(
                "bind_dn", "is required (or set anonymous_search = true if the directory allows it)"
            )

        group_mode = self._choice("group_mode", "none", ("none", "search", "member_of"))
        group_base = self._str("group_base")
        if group_mode == "search" and not group_base:
            raise self.fail("group_base", 'is required when group_mode = "search"')
        member_value = self._str("group_member_value", "dn") or "dn"
        if member_value != "dn":
            self._attribute("group_member_value", member_value)

        connect_timeout = self._number("connect_timeout", 3.0, low=0.1, high=60)
        receive_timeout = self._number("receive_timeout", 5.0, low=0.1, high=300)
        total = self._number("timeout", connect_timeout + receive_timeout, low=0.2, high=600)
        allow_referrals = self._bool("allow_referrals", False)
        referral_hosts = self._names("referral_hosts", ())
        # Checklist 93: ldap3 follows referrals to any host with our credentials by default.
        if allow_referrals and not referral_hosts:
            raise self.fail(
                "referral_hosts", "allow_referrals = true needs the list of hosts to trust"
            )

        login = tuple(
            self._attribute("login_attribute", a) for a in self._names("login_attribute", ["uid"])
        )
        if not login:
            raise self.fail("login_attribute", "must name at least one attribute")

        return DirectoryConfig(
            id=self.id,
            display_name=self._str("display_name", required=True) or self.id,
            urls=urls,
            user_base=self._str("user_base", required=True) or "",
            tls=tls,  # type: ignore[arg-type]
            allow_plaintext=allow_plaintext,
            ca_file=ca_file,
            validate_certificate=validate,
            tls_names=self._names("tls_names", ()),
            bind_dn=bind_dn,
            bind_password=password,
            anonymous_search=anonymous,
            user_filter=self._filter(
                "user_filter", self._str("user_filter", "(objectClass=person)")
            )
            or "(objectClass=person)",
            user_scope=self._choice("user_scope", "subtree", ("subtree", "one")),  # type: ignore[arg-type]
            login_attributes=login,
            key_attribute=self._attribute(
                "key_attribute", self._str("key_attribute", "entryUUID") or "entryUUID"
            ),
            attributes=self._attribute_map(),
            disabled_filter=self._filter("disabled_filter", self._str("disabled_filter")),
            identity_check=self._choice("identity_check", "whoami", ("whoami", "read_entry")),  # type: ignore[arg-type]
            group_mode=group_mode,  # type: ignore[arg-type]
            group_base=group_base,
            group_filter=self._filter(
                "group_filter", self._str("group_filter", "(objectClass=groupOfNames)")
            )
            or "(objectClass=groupOfNames)",
            group_member_attribute=self._attribute(
                "group_member_attribute", self._str("group_member_attribute", "member") or "member"
            ),
            group_member_value=member_value,
            group_name_attribute=self._attribute(
                "group_name_attribute", self._str("group_name_attribute", "cn") or "cn"
            ),
            member_of_attribute=self._attribute(
                "member_of_attribute", self._str("member_of_attribute", "memberOf") or "memberOf"
            ),
            role_map=self._role_map(),
            connect_timeout=connect_timeout,
            receive_timeout=receive_timeout,
            timeout=total,
            pool_size=self._int("pool_size", 4, low=1, high=64),
            pool_idle_seconds=self._number("pool_idle_seconds", 60.0, low=1, high=3600),
            circuit_failures=self._int("circuit_failures", 3, low=1, high=100),
            circuit_reset_seconds=self._number("circuit_reset_seconds", 30.0, low=0.1, high=3600),
            page_size=self._int("page_size", 500, low=1, high=10000),
            allow_referrals=allow_referrals,
            referral_hosts=referral_hosts,
        )


# ----------------------------------------------------------------------------- DN helpers
def _unescape_dn_value(value: str) -> str:
    """RFC 4514 §3 value unescaping: ``\\,`` and ``\\2C`` both mean ``,`` (UTF-8 aware)."""
    if value.startswith("#"):
        return value.lower()
    out = bytearray()
    i = 0
    while i < len(value):
        ch = value[i]
        if ch == "\\" and i + 1 < len(value):
            pair = value[i + 1 : i + 3]
            if len(pair) == 2 and all(c in "0123456789abcdefABCDEF" for c in pair):
                out.append(int(pair, 16))
                i += 3
                continue
            out.extend(value[i + 1].encode("utf-8"))
            i += 2
            continue
        out.extend(ch.encode("utf-8"))
        i += 1
    return out.decode("utf-8", errors="replace")


def normalize_dn(dn: str) -> str:
    """A comparison form of a DN: types lower-cased, values unescaped and case-folded.

    Servers spell the same DN differently (OpenLDAP's *Who am I?* answers ``\\2C`` where the
    search returned ``\\,``), so identity checks compare this form, never the raw strings.
    """
    rdns: list[list[str]] = [[]]
    for attr, value, sep in parse_dn(dn, escape=False, strip=True):
        rdns[-1].append(
            f"{attr.strip().lower()}={' '.join(_unescape_dn_value(value).split()).casefold()}"
        )
        if sep == ",":
            rdns.append([])
    return ",".join("+".join(sorted(r)) for r in rdns if r)


def rdn_value(dn: str) -> str:
    """The value of a DN's first RDN (a group's name when only its DN is known)."""
    try:
        parts = parse_dn(dn, escape=False, strip=True)
    except ldap_errors.LDAPInvalidDnError:
        return dn
    return _unescape_dn_value(parts[0][1]) if parts else dn


def _group_key(name_or_dn: str) -> str:
    if "=" in name_or_dn:
        try:
            return "dn:" + normalize_dn(name_or_dn)
        except ldap_errors.LDAPInvalidDnError:
            pass
    return name_or_dn.strip().casefold()


# ----------------------------------------------------------------------------- circuit breaker
class ServerHealth:
    """A circuit breaker for one server URL.

    Closed: calls go through.  After ``threshold`` consecutive failures it opens for
    ``reset`` seconds, during which the server is skipped (the directory answers at once,
    checklist 116); then one probe is let through (half-open) and its outcome decides.
    """

    def __init__(self, threshold: int, reset: float, clock: Callable[[], float]) -> None:
        self.threshold = threshold
        self.reset = reset
        self.clock = clock
        self.failures = 0
        self.open_until = 0.0
        self.probing = False
        self.last_error: str | None = None
        self._lock = threading.Lock()

    @property
    def state(self) -> str:
        if self.failures < self.threshold:
            return "closed"
        return "half-open" if self.clock() >= self.open_until else "open"

    def allow(self) -> bool:
        with self._lock:
            if self.failures < self.threshold:
                return True
            if self.clock() >= self.open_until and not self.probing:
                self.probing = True
                return True
            return False

    def success(self) -> None:
        with self._lock:
            self.failures = 0
            self.probing = False
            self.last_error = None

    def settle(self) -> None:
        """End a half-open probe that proved nothing either way (so the next one may run)."""
        with self._lock:
            self.probing = False

    def failure(self, error: str) -> bool:
        """Record a failure; True when this opened (or re-opened) the breaker."""
        with self._lock:
            self.failures += 1
            self.probing = False
            self.last_error = error
            if self.failures >= self.threshold:
                self.open_until = self.clock() + self.reset
                return True
            return False


# ----------------------------------------------------------------------------- connection pool
@dataclass
class _Slot:
    conn: Any  # ldap3.Connection
    server_index: int
    kind: str
    last_used: float
    reused: bool = False


class _Pool:
    """Idle connections of one kind ("search": service-bound, "bind": for user binds).

    At most ``size`` connections of a kind exist at once; a caller waits for one only as long
    as its own deadline allows.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.idle: deque[_Slot] = deque()
        self.lock = threading.Lock()
        self.capacity = threading.BoundedSemaphore(size)


@dataclass(frozen=True)
class DirectoryListing:
    """Every entry a directory lists for sync: stable key -> DN, and the disabled keys."""

    entries: Mapping[str, str]
    disabled: frozenset[str]

    @property
    def active(self) -> frozenset[str]:
        return frozenset(self.entries) - self.disabled


@dataclass(frozen=True)
class CheckStep:
    """One line of ``yitong ldap test``: what was tried, whether it worked, what was seen."""

    step: str
    ok: bool
    detail: str


class _Attempt:
    """What one call may still spend: the deadline and the servers it already failed on."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.failed: set[int] = set()
        self.errors: list[str] = []

    def remaining(self) -> float:
        return self.deadline - time.monotonic()


# ----------------------------------------------------------------------------- the adapter
class LdapDirectory:
    """One department's directory: search-then-bind login, lookup and listing for sync."""

    def __init__(
        self, config: DirectoryConfig, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.config = config
        self.id = config.id
        self.display_name = config.display_name
        self._clock = clock
        self.health = [
            ServerHealth(config.circuit_failures, config.circuit_reset_seconds, clock)
            for _ in config.urls
        ]
        self._pools = {"search": _Pool(config.pool_size), "bind": _Pool(config.pool_size)}

    def __repr__(self) -> str:
        return f"LdapDirectory({self.id!r}, {[u.url for u in self.config.urls]!r})"

    # ---- public API ---------------------------------------------------------------------
    def authenticate(self, username: str, password: str) -> Identity:
        """Search for exactly one entry, bind as it, confirm who we are bound as.

        Raises :class:`InvalidCredentials` for every kind of refusal (unknown, ambiguous,
        disabled, wrong password) and :class:`AdapterUnavailable` when the directory cannot
        answer within ``timeout``.
        """
        # Checklist 85 / RFC 4513 §5.1.2: an empty password makes a simple bind an
        # "unauthenticated bind" that AD (and a permissive slapd) answer with success.
        # Refuse before any network traffic; whitespace-only counts as empty.
        if not isinstance(password, str) or not password.strip():
            raise InvalidCredentials("empty password refused before bind")
        if len(password) > MAX_PASSWORD_LENGTH:
            raise InvalidCredentials("password too long")
        login = self._clean_username(username)
        attempt = _Attempt(time.monotonic() + self.config.timeout)

        entry = self._find_user(login, attempt)
        self._bind_as(entry, password, attempt)
        groups = self._groups(entry, attempt)
        return self._identity(entry, groups)

    def lookup(self, key: str) -> Identity | None:
        """Re-read an entry by its stable key, without any password; None if gone or disabled."""
        attempt = _Attempt(time.monotonic() + self.config.timeout)
        cfg = self.config
        if key.startswith("dn:"):
            try:
                parse_dn(key[3:])
            except ldap_errors.LDAPInvalidDnError:
                return None
            base, scope, match = key[3:], ldap3.BASE, "(objectClass=*)"
        else:
            base, scope, match = cfg.user_base, self._scope(), self._key_filter(key)
        search_filter = self._enabled(cfg.user_filter, match)

        def op(conn: Any) -> list[dict[str, Any]]:
            self._search(conn, base, search_filter, scope, self._user_attributes(), size_limit=2)
            code = conn.result["result"]
            if code in (32, 34):  # noSuchObject / invalidDNSyntax: no such entry (any more)
                return []
            if code != 0:
                raise _ServerAnswer(f"lookup failed: {conn.result['description']}")
            return _entries(conn.response)

        found = self._run("search", op, attempt)
        if len(found) != 1:
            return None
        entry = found[0]
        found_key = self._entry_key(entry)
        same = _same_dn(found_key[3:], key[3:]) if key.startswith("dn:") else found_key == key
        if not same or found_key.startswith("dn:") != key.startswith("dn:"):
            return None
        return self._identity(entry, self._groups(entry, attempt))

    def listing(self, page_size: int | None = None) -> DirectoryListing:
        """Page through every user entry (RFC 2696) for sync; raise rather than return partial.

        A listing that stops half-way must never be mistaken for "these people are gone", so
        any error or referral aborts with :class:`AdapterUnavailable`.
        """
        cfg = self.config
        size = page_size or cfg.page_size
        entries: dict[str, str] = {}
        for entry in self._paged(cfg.user_filter, size):
            entries[self._entry_key(entry)] = entry["dn"]
        disabled: set[str] = set()
        if cfg.disabled_filter:
            for entry in self._paged(f"(&{cfg.user_filter}{cfg.disabled_filter})", size):
                disabled.add(self._entry_key(entry))
        return DirectoryListing(entries, frozenset(disabled))

    def check(self, sample_size: int = 3) -> list[CheckStep]:
        """Connectivity, TLS, service bind and a sample search, server by server (``ldap test``)."""
        steps: list[CheckStep] = []
        for index, server in enumerate(self.config.urls):
            started = time.monotonic()
            try:
                conn = self._connect(index, started + self.config.timeout, service=False)
            except (*_COMMUNICATION_ERRORS, ldap_errors.LDAPException) as exc:
                steps.append(CheckStep(f"connect {server.url}", False, _describe(exc)))
                continue
            elapsed = (time.monotonic() - started) * 1000
            steps.append(CheckStep(f"connect {server.url}", True, f"{elapsed:.0f} ms"))
            try:
                steps.append(self._check_tls(conn))
                steps.append(self._check_service_bind(conn))
                if steps[-1].ok:
                    steps.append(self._check_sample(conn, sample_size))
            finally:
                _close(conn)
        return steps

    def _check_tls(self, conn: Any) -> CheckStep:
        cfg = self.config
        if not (conn.server.ssl or conn.tls_started):
            return CheckStep("tls", cfg.tls == "none", "none: plaintext (allow_plaintext)")
        cipher = conn.socket.cipher() or ("?", "?", 0)
        cert = conn.socket.getpeercert() or {}
        subject = ", ".join(f"{k}={v}" for rdn in cert.get("subject", ()) for k, v in rdn)
        verified = "yes" if cfg.validate_certificate else "NO (validate_certificate = false)"
        return CheckStep(
            "tls",
            True,
            f"{cfg.tls}: {cipher[1]} {cipher[0]}; certificate {subject or '?'} "
            f"valid until {cert.get('notAfter', '?')}; verified: {verified}",
        )

    def _check_service_bind(self, conn: Any) -> CheckStep:
        cfg = self.config
        try:
            self._service_bind(conn)
            if not cfg.bind_dn:
                return CheckStep("service bind", True, "none: anonymous search")
            whoami = conn.extend.standard.who_am_i()
        except (_ServerAnswer, *_COMMUNICATION_ERRORS, ldap_errors.LDAPException) as exc:
            return CheckStep("service bind", False, _describe(exc))
        return CheckStep("service bind", True, f"bound as {whoami or cfg.bind_dn}")

    def _check_sample(self, conn: Any, sample_size: int) -> CheckStep:
        cfg = self.config
        try:
            self._search(
                conn,
                cfg.user_base,
                cfg.user_filter,
                self._scope(),
                self._user_attributes(),
                size_limit=sample_size,
            )
        except (*_COMMUNICATION_ERRORS, ldap_errors.LDAPException) as exc:
            return CheckStep("sample search", False, _describe(exc))
        code = conn.result["result"]
        found = _entries(conn.response)
        where = f"{cfg.user_filter} under {cfg.user_base}"
        if code not in (0, 4):
            return CheckStep("sample search", False, f"{conn.result['description']}: {where}")
        if not found:
            return CheckStep("sample search", False, f"no entries match {where}")
        shown = "; ".join(
            f"{e['dn']} ({cfg.login_attribute}={self._first(e, cfg.login_attributes) or '-'}, "
            f"key={self._entry_key(e)})"
            for e in found
        )
        more = " and more" if code == 4 else ""
        return CheckStep(
            "sample search", True, f"{len(found)} entries{more} match {where}: {shown}"
        )

    def status(self) -> list[dict[str, Any]]:
        """Circuit-breaker state per server, for ``ldap list`` and health pages."""
        return [
            {"url": s.url, "state": h.state, "failures": h.failures, "last_error": h.last_error}
            for s, h in zip(self.config.urls, self.health, strict=True)
        ]

    def close(self) -> None:
        """Close every idle pooled connection (at shutdown, or when the config changes)."""
        for pool in self._pools.values():
            with pool.lock:
                slots = list(pool.idle)
                pool.idle.clear()
            for slot in slots:
                _close(slot.conn)

    # ---- login steps --------------------------------------------------------------------
    def _clean_username(self, username: str) -> str:
        if not isinstance(username, str):
            raise InvalidCredentials("username is not text")
        login = username.strip()
        if not login or len(login) > MAX_USERNAME_LENGTH:
            raise InvalidCredentials("empty or overlong username")
        if _CONTROL_RE.search(login):
            # NUL and other controls never appear in a real login name (checklist 87).
            raise InvalidCredentials("control characters in username")
        return login

    def _login_filter(self, login: str) -> str:
        cfg = self.config
        # Checklist 87: every value is escaped (RFC 4515 §3), so *, (, ), \ and NUL are
        # literal characters of the name, never filter syntax.
        value = escape_filter_chars(login)
        matches = "".join(f"({attr}={value})" for attr in cfg.login_attributes)
        if len(cfg.login_attributes) > 1:
            matches = f"(|{matches})"
        return self._enabled(cfg.user_filter, matches)

    def _enabled(self, *parts: str) -> str:
        """AND the parts, excluding disabled entries when a disabled filter is configured.

        Checklist 92: a directory-disabled account is not found, so it can never log in.
        """
        if self.config.disabled_filter:
            parts = (*parts, f"(!{self.config.disabled_filter})")
        return f"(&{''.join(parts)})"

    def _find_user(self, login: str, attempt: _Attempt) -> dict[str, Any]:
        cfg = self.config
        search_filter = self._login_filter(login)

        def op(conn: Any) -> dict[str, Any]:
            # Two is enough to know "more than one" (sizeLimitExceeded comes with them).
            self._search(
                conn,
                cfg.user_base,
                search_filter,
                self._scope(),
                self._user_attributes(),
                size_limit=2,
            )
            code = conn.result["result"]
            found = _entries(conn.response)
            if code == 4 or len(found) > 1:
                raise InvalidCredentials("the name matches more than one entry")
            if code != 0:
                # noSuchObject / referral (not followed, checklist 93) / insufficient access:
                # the directory is misconfigured, not the user wrong.
                raise _ServerAnswer(f"user search failed: {conn.result['description']}")
            if not found:
                raise InvalidCredentials("no entry for this name (or disabled)")
            return found[0]

        return self._run("search", op, attempt)

    def _bind_as(self, entry: dict[str, Any], password: str, attempt: _Attempt) -> None:
        cfg = self.config
        dn = entry["dn"]
        expected_key = self._entry_key(entry)

        def op(conn: Any) -> None:
            # Checklist 88: the password is proved only by this bind, never by a search.
            # Sent as UTF-8 bytes: ldap3 would otherwise SASLprep it, and a password stored
            # with full-width characters would then never match.
            if conn.closed or (cfg.tls != "none" and not (conn.server.ssl or conn.tls_started)):
                # ldap3 silently reopens a closed connection on bind(), without StartTLS:
                # never let the password go out on such a socket (checklist 90).
                raise ldap_errors.LDAPSocketSendError("connection lost its TLS layer")
            conn.user = dn
            conn.password = password.encode("utf-8")
            conn.authentication = ldap3.SIMPLE
            try:
                conn.bind(read_server_info=False)
            finally:
                conn.password = None
            code = conn.result["result"] if conn.result else -1
            if code in _BUSY_CODES:
                raise _ServerAnswer(f"bind answered {conn.result['description']}")
            if code != 0:
                raise InvalidCredentials(f"bind refused: {conn.result.get('description')}")
            # Checklist 86: `bound` alone is not trusted; ask who we are bound as.
            if cfg.identity_check == "whoami":
                authzid = conn.extend.standard.who_am_i() or ""
                if not authzid.startswith("dn:") or not _same_dn(authzid[3:], dn):
                    raise InvalidCredentials(f"who-am-I answered {authzid!r}, expected dn:{dn}")
            else:
                self._search(
                    conn, dn, "(objectClass=*)", ldap3.BASE, [cfg.key_attribute], size_limit=1
                )
                own = _entries(conn.response)
                if (
                    conn.result["result"] != 0
                    or len(own) != 1
                    or self._entry_key(own[0]) != expected_key
                ):
                    raise InvalidCredentials("could not read the own entry after bind")

        self._run("bind", op, attempt)

    def _groups(self, entry: dict[str, Any], attempt: _Attempt) -> list[tuple[str, str]]:
        """(name, dn) of each group the entry belongs to."""
        cfg = self.config
        if cfg.group_mode == "none":
            return []
        if cfg.group_mode == "member_of":
            return [(rdn_value(dn), dn) for dn in _values(entry, cfg.member_of_attribute)]
        if cfg.group_member_value == "dn":
            member = entry["dn"]
        else:
            member = self._first(entry, (cfg.group_member_value,)) or ""
            if not member:
                return []
        search_filter = (
            f"(&{cfg.group_filter}({cfg.group_member_attribute}={escape_filter_chars(member)}))"
        )

        def op(conn: Any) -> list[tuple[str, str]]:
            self._search(
                conn,
                cfg.group_base or cfg.user_base,
                search_filter,
                ldap3.SUBTREE,
                [cfg.group_name_attribute],
                size_limit=1000,
            )
            if conn.result["result"] not in (0, 4):
                raise _ServerAnswer(f"group search failed: {conn.result['description']}")
            return [
                ((_values(g, cfg.group_name_attribute) or [rdn_value(g["dn"])])[0], g["dn"])
                for g in _entries(conn.response)
            ]

        return self._run("search", op, attempt)

    def _identity(self, entry: dict[str, Any], groups: list[tuple[str, str]]) -> Identity:
        cfg = self.config
        claims: dict[str, str] = {}
        for claim, names in cfg.attributes.items():
            value = self._first(entry, names)
            if value:
                claims[claim] = value
        username = self._first(entry, cfg.login_attributes) or rdn_value(entry["dn"])
        roles: set[str] = set()
        for name, dn in groups:
            roles.update(cfg.role_map.get(_group_key(name), ()))
            roles.update(cfg.role_map.get(_group_key(dn), ()))
        return Identity(
            source=cfg.id,
            key=self._entry_key(entry),
            username=username,
            name=claims.get("name") or username,
            dn=entry["dn"],
            email=claims.get("email"),
            phone=claims.get("phone_number"),
            attributes=claims,
            groups=tuple(sorted({name for name, _dn in groups})),
            roles=tuple(sorted(roles)),
        )

    # ---- entries ------------------------------------------------------------------------
    def _scope(self) -> Any:
        return ldap3.LEVEL if self.config.user_scope == "one" else ldap3.SUBTREE

    def _user_attributes(self) -> list[str]:
        cfg = self.config
        names: set[str] = {cfg.key_attribute, *cfg.login_attributes}
        for attrs in cfg.attributes.values():
            names.update(attrs)
        if cfg.group_mode == "member_of":
            names.add(cfg.member_of_attribute)
        if cfg.group_mode == "search" and cfg.group_member_value != "dn":
            names.add(cfg.group_member_value)
        return sorted(names)

    def _first(self, entry: dict[str, Any], names: Sequence[str]) -> str | None:
        for name in names:
            values = _values(entry, name)
            if values and values[0].strip():
                return values[0].strip()
        return None

    def _entry_key(self, entry: dict[str, Any]) -> str:
        """The entry's stable id: entryUUID / objectGUID, or ``dn:<DN>`` when it has none."""
        raw = _raw(entry, self.config.key_attribute)
        if raw:
            value = raw[0]
            if self.config.key_attribute.lower() == "objectguid" and len(value) == 16:
                return str(uuid.UUID(bytes_le=value))  # AD's GUID byte order
            try:
                text = value.decode("utf-8").strip()
            except UnicodeDecodeError:
                return value.hex()
            if text:
                return text.lower() if _looks_like_uuid(text) else text
        return "dn:" + str(entry["dn"])

    def _key_filter(self, key: str) -> str:
        attr = self.config.key_attribute
        if attr.lower() == "objectguid":
            try:
                raw = uuid.UUID(key).bytes_le
            except ValueError:
                return "(!(objectClass=*))"
            escaped = "".join(f"\\{b:02x}" for b in raw)
            return f"({attr}={escaped})"
        return f"({attr}={escape_filter_chars(key)})"

    # ---- plumbing -----------------------------------------------------------------------
    def _search(
        self,
        conn: Any,
        base: str,
        search_filter: str,
        scope: Any,
        attributes: list[str],
        *,
        size_limit: int = 0,
        **kwargs: Any,
    ) -> None:
        conn.search(
            base,
            search_filter,
            search_scope=scope,
            attributes=attributes,
            size_limit=size_limit,
            time_limit=math.ceil(self.config.receive_timeout),
            dereference_aliases=ldap3.DEREF_NEVER,
            **kwargs,
        )

    def _paged(self, search_filter: str, size: int) -> list[dict[str, Any]]:
        """All entries matching ``search_filter``, page by page on ONE connection.

        The paging cookie is only valid on the connection that received it, so the whole
        listing runs inside one pooled connection; each page still has its receive timeout.
        """
        cfg = self.config

        def op(conn: Any) -> list[dict[str, Any]]:
            found: list[dict[str, Any]] = []
            cookie: bytes | None = None
            while True:
                self._search(
                    conn,
                    cfg.user_base,
                    search_filter,
                    self._scope(),
                    [cfg.key_attribute],
                    paged_size=size,
                    paged_cookie=cookie,
                )
                if conn.result["result"] != 0:
                    raise _ServerAnswer(f"listing failed: {conn.result['description']}")
                if any(r.get("type") == "searchResRef" for r in conn.response or ()):
                    # A partial tree must never look like deleted people (checklist 93 too).
                    raise _ServerAnswer("listing returned referrals, which are not followed")
                found.extend(_entries(conn.response))
                controls = conn.result.get("controls") or {}
                paged = controls.get("1.2.840.113556.1.4.319", {}).get("value", {})
                cookie = paged.get("cookie") or None
                if not cookie:
                    return found

        # Large directories take longer than one login may: allow a page's worth of time per
        # page_size entries, at least a minute.
        attempt = _Attempt(time.monotonic() + max(60.0, cfg.timeout * 4))
        return self._run("search", op, attempt, retry=True)

    def _tls(self, server: ServerUrl) -> ldap3.Tls | None:
        cfg = self.config
        if cfg.tls == "none":
            return None
        # Checklist 90: ldap3's Tls() defaults to CERT_NONE and turns the SSLContext's
        # hostname check off; require a chain to the CA and check the name ourselves
        # (ldap3 matches the URL host, plus tls_names, against the certificate).
        return ldap3.Tls(
            validate=ssl.CERT_REQUIRED if cfg.validate_certificate else ssl.CERT_NONE,
            ca_certs_file=cfg.ca_file,
            valid_names=[server.host, *cfg.tls_names],
            sni=server.host,
        )

    def _connect(self, index: int, deadline: float, *, service: bool) -> Any:
        cfg = self.config
        server_url = cfg.urls[index]
        remaining = max(0.1, deadline - time.monotonic())
        server = ldap3.Server(
            server_url.host,
            port=server_url.port,
            use_ssl=server_url.use_ssl,
            tls=self._tls(server_url),
            get_info=ldap3.NONE,
            connect_timeout=min(cfg.connect_timeout, remaining),
            # Checklist 93: ldap3's default is [("*", True)], any host, with our credentials.
            allowed_referral_hosts=[(h, True) for h in cfg.referral_hosts],
        )
        conn = ldap3.Connection(
            server,
            client_strategy=ldap3.SYNC,
            auto_referrals=cfg.allow_referrals,
            read_only=True,
            raise_exceptions=False,
            return_empty_attributes=False,
            # ldap3 packs this into SO_RCVTIMEO as a whole number of seconds.
            receive_timeout=max(1, math.ceil(min(cfg.receive_timeout, remaining))),
        )
        try:
            conn.open(read_server_info=False)
            _limit_wait(conn, min(cfg.receive_timeout, max(0.1, deadline - time.monotonic())))
            # Checklist 90: a StartTLS failure ends here; we never continue in plaintext.
            if cfg.tls == "starttls" and (
                not conn.start_tls(read_server_info=False) or not conn.tls_started
            ):
                raise ldap_errors.LDAPStartTLSError(f"StartTLS refused: {conn.last_error}")
            if service:
                self._service_bind(conn)
        except BaseException:
            _close(conn)
            raise
        return conn

    def _service_bind(self, conn: Any) -> None:
        cfg = self.config
        if not cfg.bind_dn:
            return  # anonymous_search: the connection stays anonymous
        if conn.closed or (cfg.tls != "none" and not (conn.server.ssl or conn.tls_started)):
            raise ldap_errors.LDAPSocketSendError("connection lost its TLS layer")
        conn.user = cfg.bind_dn
        conn.password = (cfg.bind_password or "").encode("utf-8")
        conn.authentication = ldap3.SIMPLE
        try:
            conn.bind(read_server_info=False)
        finally:
            conn.password = None
        if not conn.result or conn.result["result"] != 0:
            raise _ServerAnswer(
                f"service bind as {cfg.bind_dn} refused: "
                f"{conn.result['description'] if conn.result else conn.last_error}"
            )

    def _acquire(self, kind: str, attempt: _Attempt, *, fresh: bool = False) -> _Slot:
        pool = self._pools[kind]
        if not pool.capacity.acquire(timeout=max(0.0, attempt.remaining())):
            raise AdapterUnavailable(
                f"directory {self.id}: all {pool.size} {kind} connections busy"
            )
        try:
            now = self._clock()
            if not fresh:
                while True:
                    with pool.lock:
                        slot = pool.idle.popleft() if pool.idle else None
                    if slot is None:
                        break
                    idle_too_long = now - slot.last_used > self.config.pool_idle_seconds
                    if (
                        idle_too_long
                        or slot.server_index in attempt.failed
                        or self.health[slot.server_index].state != "closed"
                    ):
                        _close(slot.conn)
                        continue
                    slot.reused = True
                    return slot
            for index in range(len(self.config.urls)):
                if index in attempt.failed:
                    continue
                if attempt.remaining() <= 0:
                    break
                if not self.health[index].allow():
                    attempt.errors.append(f"{self.config.urls[index].url}: circuit open")
                    continue
                try:
                    conn = self._connect(index, attempt.deadline, service=(kind == "search"))
                except (*_COMMUNICATION_ERRORS, _ServerAnswer, ldap_errors.LDAPException) as exc:
                    self._record_failure(index, exc, attempt)
                    continue
                return _Slot(conn, index, kind, now)
            raise AdapterUnavailable(
                f"directory {self.id} unavailable: "
                + ("; ".join(attempt.errors) or "no server left")
            )
        except BaseException:
            pool.capacity.release()
            raise

    def _release(self, slot: _Slot) -> None:
        pool = self._pools[slot.kind]
        slot.last_used = self._clock()
        if slot.conn.closed:
            pool.capacity.release()
            return
        with pool.lock:
            pool.idle.append(slot)
        pool.capacity.release()

    def _discard(self, slot: _Slot) -> None:
        _close(slot.conn)
        self._pools[slot.kind].capacity.release()

    def _record_failure(self, index: int, exc: BaseException, attempt: _Attempt) -> None:
        url = self.config.urls[index].url
        text = _describe(exc)
        attempt.failed.add(index)
        attempt.errors.append(f"{url}: {text}")
        if self.health[index].failure(text):
            log.warning(
                "directory %s: %s marked down for %.0fs (%s)",
                self.id,
                url,
                self.config.circuit_reset_seconds,
                text,
            )
            self._drop_idle(index)
        else:
            log.info("directory %s: %s failed (%s)", self.id, url, text)

    def _drop_idle(self, index: int) -> None:
        for pool in self._pools.values():
            with pool.lock:
                keep = [s for s in pool.idle if s.server_index != index]
                drop = [s for s in pool.idle if s.server_index == index]
                pool.idle.clear()
                pool.idle.extend(keep)
            for slot in drop:
                _close(slot.conn)

    def _run(
        self, kind: str, op: Callable[[Any], T], attempt: _Attempt, *, retry: bool = True
    ) -> T:
        """Run ``op`` on a pooled connection, failing over between servers within the deadline.

        A reused connection that fails at once (closed by the server while idle) is replaced
        and retried on the same server; a timeout or a failure on a fresh connection counts
        against that server's breaker and moves on to the next server (checklist 116).
        """
        fresh = False
        while True:
            if attempt.remaining() <= 0:
                raise AdapterUnavailable(
                    f"directory {self.id}: no answer within {self.config.timeout:g}s; "
                    + "; ".join(attempt.errors)
                )
            slot = self._acquire(kind, attempt, fresh=fresh)
            if slot.conn.closed:
                self._discard(slot)
                continue
            _limit_wait(slot.conn, min(self.config.receive_timeout, max(0.1, attempt.remaining())))
            health = self.health[slot.server_index]
            try:
                result = op(slot.conn)
            except _ServerAnswer as exc:
                # The server answered: it is up, but refuses this (misconfiguration).
                self._release(slot)
                health.success()
                raise AdapterUnavailable(f"directory {self.id}: {exc}") from None
            except _COMMUNICATION_ERRORS as exc:
                self._discard(slot)
                stale = slot.reused and not isinstance(exc, TimeoutError) and not _timed_out(exc)
                if stale and retry and not fresh:
                    fresh = True
                    continue
                self._record_failure(slot.server_index, exc, attempt)
                fresh = False
                continue
            except InvalidCredentials:
                self._release(slot)
                health.success()
                raise
            except ldap_errors.LDAPException as exc:
                # ldap3 refused the request itself (a malformed DN, say): not the server's
                # fault, so its breaker is left alone.
                self._discard(slot)
                health.settle()
                raise AdapterUnavailable(f"directory {self.id}: {_describe(exc)}") from None
            except BaseException:
                self._discard(slot)
                health.settle()
                raise
            self._release(slot)
            health.success()
            return result


class _ServerAnswer(Exception):
    """The server answered, but not usefully (misconfiguration): reported as unavailable."""


# ----------------------------------------------------------------------------- small helpers
def _entries(response: Any) -> list[dict[str, Any]]:
    # Search continuation references (searchResRef) are skipped: referrals are not followed.
    return [r for r in response or () if r.get("type") == "searchResEntry"]


def _raw(entry: dict[str, Any], name: str) -> list[bytes]:
    attrs = entry.get("raw_attributes") or {}
    lowered = name.lower()
    for key, values in attrs.items():
        if key.lower() == lowered:
            return [v for v in values if isinstance(v, bytes)]
    return []


def _values(entry: dict[str, Any], name: str) -> list[str]:
    out = []
    for value in _raw(entry, name):
        try:
            out.append(value.decode("utf-8"))
        except UnicodeDecodeError:
            continue
    return out


def _looks_like_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def _same_dn(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        return normalize_dn(a) == normalize_dn(b)
    except ldap_errors.LDAPInvalidDnError:
        return False


def _close(conn: Any) -> None:
    # Closing a broken socket may fail; there is nothing to report then.
    with contextlib.suppress(Exception):
        conn.unbind()


def _limit_wait(conn: Any, seconds: float) -> None:
    """Bound the next socket wait by what this call may still spend."""
    sock = getattr(conn, "socket", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.settimeout(seconds)


def _timed_out(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "timed out" in text or "timeout" in text


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    # ldap3 puts the whole peer certificate into its hostname error; keep the point of it.
    text = re.sub(r"certificate \{.*\} doesn't match", "certificate doesn't match", text)
    return text if len(text) < 300 else text[:297] + "..."

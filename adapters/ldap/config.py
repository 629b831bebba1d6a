"""The configuration of one department directory: the ``[directories.<id>]`` table, parsed.

Parsing refuses unsafe or inconsistent combinations (plaintext without ``allow_plaintext``,
referrals without a host list, filter placeholders) with an error naming the key, so a
misconfiguration stops the start-up instead of weakening logins.  docs/directories.md is the
operator's description of the same keys.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from adapters.base import AdapterConfigError
from adapters.ldap.dn import group_key

TlsMode = Literal["ldaps", "starttls", "none"]
GroupMode = Literal["none", "search", "member_of"]
IdentityCheck = Literal["whoami", "read_entry"]

_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_ATTR_RE = re.compile(r"^[A-Za-z][A-Za-z0-9-]*$|^[0-9]+(\.[0-9]+)+$")

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


@dataclass(frozen=True)
class ServerUrl:
    """One server of a directory's pool, in failover order."""

    #: The URL as configured, e.g. ``ldaps://dc1.example:636`` (shown in status and errors).
    url: str
    #: The host name: connected to, sent as SNI and matched against the certificate.
    host: str
    #: The TCP port (636 for ``ldaps://``, 389 for ``ldap://`` when the URL gives none).
    port: int
    #: True for ``ldaps://``: TLS from the first byte.
    use_ssl: bool


@dataclass(frozen=True)
class DirectoryConfig:
    """One department directory, parsed from a ``[directories.<id>]`` table.

    Every field is also described for operators in docs/directories.md.  Build with
    :meth:`from_mapping`, which refuses unsafe or inconsistent combinations with an error
    naming the key.
    """

    #: The table's name; 1-64 lower-case letters, digits, '-' or '_' (used in ``uid@id``).
    id: str
    #: The department's name, shown in the login page's department picker.
    display_name: str
    #: The servers in failover order; the first healthy one is used.
    urls: tuple[ServerUrl, ...]
    #: Where users live, e.g. ``ou=people,dc=hrss,dc=ln,dc=gov,dc=cn``.
    user_base: str
    #: ``ldaps`` (TLS from the first byte), ``starttls`` (RFC 4511; a failure drops the
    #: connection, nothing is sent in plaintext) or ``none`` (needs ``allow_plaintext``).
    tls: TlsMode = "ldaps"
    #: Development only: allows ``tls = "none"`` and ``validate_certificate = false``
    #: (checklist 90).
    allow_plaintext: bool = False
    #: PEM file of the CAs that may sign the directory's certificate; None: system store.
    ca_file: str | None = None
    #: Verify the server certificate's chain and host name (off only with allow_plaintext).
    validate_certificate: bool = True
    #: Extra certificate names accepted besides the URL's host (load balancers).
    tls_names: tuple[str, ...] = ()
    #: The service account that searches (a DN, or ``user@domain`` for AD); None with
    #: ``anonymous_search``.
    bind_dn: str | None = None
    #: The service account's password (from ``bind_password`` or ``bind_password_file``);
    #: never printed.
    bind_password: str | None = field(default=None, repr=False)
    #: Search without binding, for directories that allow anonymous reads.
    anonymous_search: bool = False
    #: Which entries are users; the login search ANDs it with the escaped login match.
    user_filter: str = "(objectClass=person)"
    #: ``subtree`` (everything below ``user_base``) or ``one`` (direct children only).
    user_scope: Literal["subtree", "one"] = "subtree"
    #: The attributes staff may type, ORed in the login search; the first one is the
    #: account's ``preferred_username``.
    login_attributes: tuple[str, ...] = ("uid",)
    #: The entry's stable id (``entryUUID``, or ``objectGUID`` for AD); the DN when absent.
    key_attribute: str = "entryUUID"
    #: Claim -> directory attributes, the first present wins (see ``DEFAULT_ATTRIBUTES``).
    attributes: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: dict(DEFAULT_ATTRIBUTES)
    )
    #: Entries matching this filter cannot log in and are disabled by sync (checklist 92).
    disabled_filter: str | None = None
    #: How the bound identity is confirmed after the user's bind (checklist 86):
    #: ``whoami`` (RFC 4532) or ``read_entry`` (read the own entry and compare its key; AD).
    identity_check: IdentityCheck = "whoami"
    #: ``search`` (groups listing the user), ``member_of`` (the user's memberOf) or ``none``.
    group_mode: GroupMode = "none"
    #: Where groups live (required for ``group_mode = "search"``).
    group_base: str | None = None
    #: Which entries are groups in ``search`` mode.
    group_filter: str = "(objectClass=groupOfNames)"
    #: The group attribute listing members (``member``, ``uniqueMember``, ``memberUid``).
    group_member_attribute: str = "member"
    #: What that attribute holds: ``dn`` (the user's DN) or the name of a user attribute.
    group_member_value: str = "dn"
    #: The group's name as shown in the ``groups`` claim.
    group_name_attribute: str = "cn"
    #: The user attribute listing group DNs in ``member_of`` mode.
    member_of_attribute: str = "memberOf"
    #: Group key (case-folded name, or ``dn:`` + normalised DN) -> Yitong roles.
    role_map: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: Seconds to open a TCP connection to one server.
    connect_timeout: float = 3.0
    #: Seconds to wait for any one answer, including the TLS handshake.
    receive_timeout: float = 5.0
    #: Total seconds one call may take across all servers (checklist 116); then
    #: "directory unavailable".
    timeout: float = 8.0
    #: Connections kept per kind (searching, binding); more callers wait within ``timeout``.
    pool_size: int = 4
    #: Pooled connections idle this long are closed rather than reused.
    pool_idle_seconds: float = 60.0
    #: Consecutive failures after which a server is skipped ("circuit open").
    circuit_failures: int = 3
    #: How long an open circuit skips its server before one trial call is let through.
    circuit_reset_seconds: float = 30.0
    #: Page size for sync's paged listing (RFC 2696).
    page_size: int = 500
    #: Follow LDAP referrals (only to ``referral_hosts``; checklist 93).
    allow_referrals: bool = False
    #: The only hosts referrals may lead to; required with ``allow_referrals``.
    referral_hosts: tuple[str, ...] = ()

    @property
    def login_attribute(self) -> str:
        """The first login attribute: the one shown as the account's name."""
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
            result[group_key(str(group))] = tuple(r.strip() for r in items if r.strip())
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

"""One department's directory behind ``PasswordAuthenticator``: login, lookup, sync listing.

Login is search-then-bind (RFC 4513 §5.1.2 simple bind, RFC 4511): a service account (or an
anonymous search, when configured) finds exactly one entry for the typed name, the user's
own bind proves the password, and the bound identity is confirmed afterwards with *Who am
I?* (RFC 4532, https://www.rfc-editor.org/rfc/rfc4532) or by reading the entry as the user.
The shape follows dex ``connector/ldap/ldap.go``; the failure modes it guards against are
SECURITY-CHECKLIST items 85-94 and 116, cited where each is enforced.  Every server call
goes through :class:`~adapters.ldap.pool.ConnectionPool`.
"""

from __future__ import annotations

import math
import re
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import ldap3
from ldap3.core import exceptions as ldap_errors

from adapters.base import Identity, InvalidCredentials
from adapters.ldap.config import DirectoryConfig
from adapters.ldap.dn import (
    escape_filter_chars,
    group_key,
    key_filter,
    rdn_value,
    same_dn,
    valid_dn,
)
from adapters.ldap.pool import (
    BUSY_CODES,
    COMMUNICATION_ERRORS,
    Attempt,
    ConnectionPool,
    ServerAnswer,
    close_quietly,
    describe_error,
)

MAX_USERNAME_LENGTH = 256
MAX_PASSWORD_LENGTH = 1024
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


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


# ----------------------------------------------------------------------------- the adapter
class LdapDirectory:
    """One department's directory: search-then-bind login, lookup and listing for sync."""

    def __init__(
        self, config: DirectoryConfig, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.config = config
        self.id = config.id
        self.display_name = config.display_name
        self.pool = ConnectionPool(config, clock)
        self.health = self.pool.health

    def __repr__(self) -> str:
        return f"LdapDirectory({self.id!r}, {[u.url for u in self.config.urls]!r})"

    # ---- public API ---------------------------------------------------------------------
    def authenticate(
        self,
        username: str,
        password: str,
        *,
        before_bind: Callable[[str], None] | None = None,
    ) -> Identity:
        """Search for exactly one entry, bind as it, confirm who we are bound as.

        Raises :class:`InvalidCredentials` for every kind of refusal (unknown, ambiguous,
        disabled, wrong password) and :class:`AdapterUnavailable` when the directory cannot
        answer within ``timeout``.  ``before_bind`` is called with the entry's stable key once
        the name is resolved and before the password is sent: the IdP's lockout counts per
        entry there, and whatever it raises stops the login before the directory sees the
        password (checklist 94).
        """
        # Checklist 85 / RFC 4513 §5.1.2: an empty password makes a simple bind an
        # "unauthenticated bind" that AD (and a permissive slapd) answer with success.
        # Refuse before any network traffic; whitespace-only counts as empty.
        if not isinstance(password, str) or not password.strip():
            raise InvalidCredentials("empty password refused before bind")
        if len(password) > MAX_PASSWORD_LENGTH:
            raise InvalidCredentials("password too long")
        login = self._clean_username(username)
        attempt = Attempt(time.monotonic() + self.config.timeout)

        entry = self._find_user(login, attempt)
        if before_bind is not None:
            before_bind(self._entry_key(entry))
        self._bind_as(entry, password, attempt)
        groups = self._groups(entry, attempt)
        return self._identity(entry, groups)

    def lookup(self, key: str) -> Identity | None:
        """Re-read an entry by its stable key, without any password; None if gone or disabled."""
        attempt = Attempt(time.monotonic() + self.config.timeout)
        cfg = self.config
        if key.startswith("dn:"):
            if not valid_dn(key[3:]):
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
                raise ServerAnswer(f"lookup failed: {conn.result['description']}")
            return _entries(conn.response)

        found = self.pool.run("search", op, attempt)
        if len(found) != 1:
            return None
        entry = found[0]
        found_key = self._entry_key(entry)
        same = same_dn(found_key[3:], key[3:]) if key.startswith("dn:") else found_key == key
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
                conn = self.pool.connect(index, started + self.config.timeout, service=False)
            except (*COMMUNICATION_ERRORS, ldap_errors.LDAPException) as exc:
                steps.append(CheckStep(f"connect {server.url}", False, describe_error(exc)))
                continue
            elapsed = (time.monotonic() - started) * 1000
            steps.append(CheckStep(f"connect {server.url}", True, f"{elapsed:.0f} ms"))
            try:
                steps.append(self._check_tls(conn))
                steps.append(self._check_service_bind(conn))
                if steps[-1].ok:
                    steps.append(self._check_sample(conn, sample_size))
            finally:
                close_quietly(conn)
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
            self.pool.service_bind(conn)
            if not cfg.bind_dn:
                return CheckStep("service bind", True, "none: anonymous search")
            whoami = conn.extend.standard.who_am_i()
        except (ServerAnswer, *COMMUNICATION_ERRORS, ldap_errors.LDAPException) as exc:
            return CheckStep("service bind", False, describe_error(exc))
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
        except (*COMMUNICATION_ERRORS, ldap_errors.LDAPException) as exc:
            return CheckStep("sample search", False, describe_error(exc))
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
        return self.pool.status()

    def close(self) -> None:
        """Close every idle pooled connection (at shutdown, or when the config changes)."""
        self.pool.close()

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

    def _find_user(self, login: str, attempt: Attempt) -> dict[str, Any]:
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
                raise ServerAnswer(f"user search failed: {conn.result['description']}")
            if not found:
                raise InvalidCredentials("no entry for this name (or disabled)")
            return found[0]

        return self.pool.run("search", op, attempt)

    def _bind_as(self, entry: dict[str, Any], password: str, attempt: Attempt) -> None:
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
            if code in BUSY_CODES:
                raise ServerAnswer(f"bind answered {conn.result['description']}")
            if code != 0:
                raise InvalidCredentials(f"bind refused: {conn.result.get('description')}")
            # Checklist 86: `bound` alone is not trusted; ask who we are bound as.
            if cfg.identity_check == "whoami":
                authzid = conn.extend.standard.who_am_i() or ""
                if not authzid.startswith("dn:") or not same_dn(authzid[3:], dn):
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

        self.pool.run("bind", op, attempt)

    def _groups(self, entry: dict[str, Any], attempt: Attempt) -> list[tuple[str, str]]:
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
                raise ServerAnswer(f"group search failed: {conn.result['description']}")
            return [
                ((_values(g, cfg.group_name_attribute) or [rdn_value(g["dn"])])[0], g["dn"])
                for g in _entries(conn.response)
            ]

        return self.pool.run("search", op, attempt)

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
            roles.update(cfg.role_map.get(group_key(name), ()))
            roles.update(cfg.role_map.get(group_key(dn), ()))
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
        return key_filter(self.config.key_attribute, key)

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
                    raise ServerAnswer(f"listing failed: {conn.result['description']}")
                if any(r.get("type") == "searchResRef" for r in conn.response or ()):
                    # A partial tree must never look like deleted people (checklist 93 too).
                    raise ServerAnswer("listing returned referrals, which are not followed")
                found.extend(_entries(conn.response))
                controls = conn.result.get("controls") or {}
                paged = controls.get("1.2.840.113556.1.4.319", {}).get("value", {})
                cookie = paged.get("cookie") or None
                if not cookie:
                    return found

        # Large directories take longer than one login may: allow a page's worth of time per
        # page_size entries, at least a minute.
        attempt = Attempt(time.monotonic() + max(60.0, cfg.timeout * 4))
        return self.pool.run("search", op, attempt, retry=True)


# ----------------------------------------------------------------------------- entry helpers
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

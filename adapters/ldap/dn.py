"""DN and filter helpers: RFC 4514 DN comparison and RFC 4515 filter escaping.

Servers spell the same DN in different ways, and typed names must never become filter
syntax (checklist 87), so every comparison and every filter value goes through here.
Pure functions: no connection, no configuration.
"""

from __future__ import annotations

import uuid

from ldap3.core import exceptions as ldap_errors
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import parse_dn

__all__ = [
    "escape_filter_chars",
    "group_key",
    "key_filter",
    "normalize_dn",
    "rdn_value",
    "same_dn",
    "valid_dn",
]


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


def group_key(name_or_dn: str) -> str:
    """The role_map key of a group: ``dn:`` + normalised DN, or the case-folded name."""
    if "=" in name_or_dn:
        try:
            return "dn:" + normalize_dn(name_or_dn)
        except ldap_errors.LDAPInvalidDnError:
            pass
    return name_or_dn.strip().casefold()


def same_dn(a: str, b: str) -> bool:
    """Whether two DNs name the same entry (false when either does not parse)."""
    if a == b:
        return True
    try:
        return normalize_dn(a) == normalize_dn(b)
    except ldap_errors.LDAPInvalidDnError:
        return False


def valid_dn(dn: str) -> bool:
    """Whether ``dn`` parses as a DN (a stored ``dn:`` key may have been hand-edited)."""
    try:
        parse_dn(dn)
    except ldap_errors.LDAPInvalidDnError:
        return False
    return True


def key_filter(attribute: str, key: str) -> str:
    """A filter matching the entry whose stable key is ``key`` (AD GUIDs as escaped bytes)."""
    if attribute.lower() == "objectguid":
        try:
            raw = uuid.UUID(key).bytes_le
        except ValueError:
            return "(!(objectClass=*))"
        escaped = "".join(f"\\{b:02x}" for b in raw)
        return f"({attribute}={escaped})"
    return f"({attribute}={escape_filter_chars(key)})"

"""Is an IP address one we may connect to on a client's behalf?  (SSRF, checklist 59.)

An IPv6 address can carry an IPv4 address inside it, and a gateway or the host's own stack
will deliver to that IPv4 address.  ``ipaddress`` calls several of these forms "global"
(64:ff9b::a00:1 is NAT64 for 10.0.0.1; 2002:7f00:1:: is 6to4 for 127.0.0.1), so each is
classified by the IPv4 address it embeds:

- IPv4-mapped ``::ffff:a.b.c.d`` and IPv4-compatible ``::a.b.c.d`` (RFC 4291 §2.5.5);
- NAT64 well-known prefix ``64:ff9b::/96`` (RFC 6052) and the local-use ``64:ff9b:1::/48``
  (RFC 8215), whose embedded address sits in the last 32 bits for a /96;
- 6to4 ``2002::/16`` (RFC 3056): bits 16-47;
- Teredo ``2001::/32`` (RFC 4380): the client address, inverted, in the last 32 bits, and
  the server address in bits 32-63.  No metadata host needs a Teredo tunnel, so Teredo
  addresses are never public, whatever they embed.

Anything else is judged as itself: it must be global and not multicast.
"""

from __future__ import annotations

import ipaddress

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
_SIXTOFOUR = ipaddress.IPv6Network("2002::/16")
_TEREDO = ipaddress.IPv6Network("2001::/32")
_COMPATIBLE = ipaddress.IPv6Network("::/96")


def _public_v4(ip: ipaddress.IPv4Address) -> bool:
    return bool(ip.is_global) and not ip.is_multicast


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address delivers to (empty for a plain IPv6 address)."""
    value = int(ip)
    if ip.ipv4_mapped is not None:
        return [ip.ipv4_mapped]
    if ip in _NAT64 or ip in _NAT64_LOCAL:
        return [ipaddress.IPv4Address(value & 0xFFFFFFFF)]
    if ip in _SIXTOFOUR:
        return [ipaddress.IPv4Address((value >> 80) & 0xFFFFFFFF)]
    if ip in _TEREDO:
        server = ipaddress.IPv4Address((value >> 64) & 0xFFFFFFFF)
        client = ipaddress.IPv4Address(~value & 0xFFFFFFFF)
        return [server, client]
    if ip in _COMPATIBLE and value > 1:  # :: and ::1 are not IPv4-compatible forms
        return [ipaddress.IPv4Address(value & 0xFFFFFFFF)]
    return []


def is_public_address(address: str) -> bool:
    """Whether ``address`` (IPv4 or IPv6, a ``%zone`` allowed) may be fetched from.

    Unparseable input is not public.
    """
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv4Address):
        return _public_v4(ip)
    if ip in _TEREDO:
        return False
    embedded = embedded_ipv4(ip)
    if embedded:
        return all(_public_v4(v4) for v4 in embedded)
    return bool(ip.is_global) and not ip.is_multicast

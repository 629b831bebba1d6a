"""IPv6 forms that carry a private IPv4 address are not public (issue 14 item 10; checklist 59).

NAT64 (64:ff9b::/96), 6to4 (2002::/16) and IPv4-compatible (::a.b.c.d) addresses were judged
"global" by ``ipaddress`` and let a client's ``jwks_uri`` reach 10.0.0.1, 127.0.0.1 or the
metadata service at 169.254.169.254 through a gateway.
"""

from __future__ import annotations

import socket

import pytest

from idp.oauth import outbound
from idp.oauth.addresses import embedded_ipv4, is_public_address

PRIVATE_IN_DISGUISE = [
    "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "64:ff9b:1::a00:1",  # local-use NAT64 prefix (RFC 8215)
    "2002:7f00:1::",  # 6to4 of 127.0.0.1
    "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
    "2002:c0a8:101::",  # 6to4 of 192.168.1.1
    "::127.0.0.1",  # IPv4-compatible
    "::a9fe:a9fe",  # IPv4-compatible 169.254.169.254
    "::ffff:10.0.0.1",  # IPv4-mapped
    "::ffff:169.254.169.254",
    "2001:0:808:808::f5ff:fffe",  # Teredo (client 10.0.0.1)
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo: never fetched from
]

PUBLIC = ["8.8.8.8", "2606:4700::1111", "64:ff9b::808:808", "2002:808:808::1", "::ffff:8.8.8.8"]


@pytest.mark.parametrize("address", PRIVATE_IN_DISGUISE)
def test_embedded_private_ipv4_is_not_public(address):
    assert not is_public_address(address)


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_stay_public(address):
    assert is_public_address(address)


def test_embedded_addresses_are_extracted():
    assert [
        str(a) for a in embedded_ipv4(__import__("ipaddress").IPv6Address("64:ff9b::a00:1"))
    ] == ["10.0.0.1"]


@pytest.mark.parametrize("address", ["::", "::1", "fe80::1%eth0", "ff02::1", "not-an-ip"])
def test_other_non_public_forms(address):
    assert not is_public_address(address)


@pytest.mark.parametrize("address", PRIVATE_IN_DISGUISE[:9])
def test_resolve_target_refuses_a_host_resolving_to_a_disguised_address(monkeypatch, address):
    def fake_getaddrinfo(host, port, *args, **kwargs):
        return [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port, 0, 0))]

    monkeypatch.setattr(outbound.socket, "getaddrinfo", fake_getaddrinfo)
    with pytest.raises(outbound.OutboundError, match="non-public"):
        outbound.resolve_target("https://jwks.attacker.example/keys")

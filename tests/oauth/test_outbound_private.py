"""Intranet receivers (back-channel logout, jwks_uri) on private addresses, by explicit list only."""

from __future__ import annotations

import pytest

from idp.oauth.outbound import OutboundError, resolve_target


def test_private_address_refused_unless_listed():
    # checklist 59: loopback/private targets are refused by default...
    with pytest.raises(OutboundError, match="non-public"):
        resolve_target("https://localhost:8443/logout")
    # ...and allowed for hosts an operator listed, at the address we checked.
    target = resolve_target("https://localhost:8443/logout", private_hosts=("localhost",))
    assert target.address in ("127.0.0.1", "::1") and target.host == "localhost"
    assert (
        resolve_target("https://localhost:8443/x", private_hosts=("localhost:8443",)).port == 8443
    )


def test_listed_private_host_still_needs_https_and_exact_host():
    with pytest.raises(OutboundError, match="https"):
        resolve_target("http://localhost:8443/logout", private_hosts=("localhost",))
    with pytest.raises(OutboundError, match="non-public"):
        resolve_target("https://localhost:9443/x", private_hosts=("localhost:8443",))


def test_setting_is_documented_and_parsed():
    from idp.config import load_settings

    s = load_settings(
        environ={"YITONG_OUTBOUND_PRIVATE_HOSTS": "svc.hrss.ln.gov.cn, 10.1.2.3:8443"}
    )
    assert s.outbound_private_hosts == ("svc.hrss.ln.gov.cn", "10.1.2.3:8443")

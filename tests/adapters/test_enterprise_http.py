"""The enterprise registry over HTTP (issue 10 item 5): :class:`HttpEnterpriseRegistry`
against a stub registry service on loopback (tests/services/enterprise_registry.py), and its
choice from settings in the composition root.

What must hold: only an explicit ``found: false`` reads as "unknown company"; every outage is
:class:`AdapterUnavailable` and every unusable answer :class:`AdapterError` (the callers then
change nothing); the client certificate, the CA and the timeouts reach the TLS connection.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters.base import (
    AdapterConfigError,
    AdapterError,
    AdapterUnavailable,
    EnterpriseRegistry,
)
from adapters.enterprise import HttpEnterpriseRegistry, LocalEnterpriseRegistry
from adapters.registry_http import MAX_ANSWER_BYTES
from idp.app import _build_enterprise_registry
from idp.config import ConfigError
from tests.entities.kit import ACTIVE, RECORDS
from tests.helpers import make_settings
from tests.services.enterprise_registry import CHECKED_AT, EnterpriseRegistryStub, mutual_tls
from tests.services.recorder import running

CODE = ACTIVE[0]["credit_code"]


@pytest.fixture
def stub() -> Iterator[EnterpriseRegistryStub]:
    with running(EnterpriseRegistryStub(RECORDS)) as service:
        yield service


def _registry(stub: EnterpriseRegistryStub, **kw: Any) -> HttpEnterpriseRegistry:
    return HttpEnterpriseRegistry(url=stub.url(""), **kw)


def test_match_returns_the_registry_record_as_evidence(stub: EnterpriseRegistryStub) -> None:
    registry = _registry(stub)
    assert isinstance(registry, EnterpriseRegistry)
    record = registry.lookup(f" {CODE.lower()} ")  # asked in the registry's own form
    assert record is not None
    assert (record.credit_code, record.name, record.representative_id_number) == (
        CODE,
        ACTIVE[0]["name"],
        ACTIVE[0]["representative_id_number"],
    )
    assert record.status == "active" and record.source == "enterprise-registry"
    assert record.reference == "ER-000001" and record.checked_at == CHECKED_AT
    [seen] = stub.requests
    assert (seen.method, seen.path, seen.json) == (
        "POST",
        "/enterprise/lookup",
        {"credit_code": CODE},
    )


def test_another_representative_is_reported_as_the_registry_says(
    stub: EnterpriseRegistryStub,
) -> None:
    """The adapter reports whom the registry names; the comparison with the citizen is
    register_entity's (tests/entities/test_enterprise_registry_http.py)."""
    stub.records[CODE]["representative_id_number"] = "11010119900307777x"
    record = _registry(stub).lookup(CODE)
    assert record is not None and record.representative_id_number == "11010119900307777X"


@pytest.mark.parametrize("status", ["revoked", "deregistered"])
def test_revoked_and_deregistered_companies(stub: EnterpriseRegistryStub, status: str) -> None:
    code = next(r["credit_code"] for r in RECORDS if r["status"] == status)
    record = _registry(stub).lookup(code)
    assert record is not None and record.status == status


def test_unknown_code_only_when_the_registry_says_found_false(
    stub: EnterpriseRegistryStub,
) -> None:
    registry = _registry(stub)
    assert registry.lookup("91350100M000100Y43") is None
    # A 404 (a wrong URL, a moved service) is not "unknown company".
    stub.override = (404, b'{"found": false}')
    with pytest.raises(AdapterError) as caught:
        registry.lookup("91350100M000100Y43")
    assert not isinstance(caught.value, AdapterUnavailable)
    wrong_path = HttpEnterpriseRegistry(url=stub.url("/elsewhere"))
    stub.override = None
    with pytest.raises(AdapterError, match="404"):
        wrong_path.lookup(CODE)


@pytest.mark.parametrize("status", [500, 502, 503, 408, 429])
def test_server_errors_are_unavailable(stub: EnterpriseRegistryStub, status: int) -> None:
    stub.override = (status, b"{}")
    with pytest.raises(AdapterUnavailable, match=str(status)):
        _registry(stub).lookup(CODE)


def _answer(**fields: Any) -> bytes:
    body = {
        "found": True,
        **ACTIVE[0],
        "reference": "ER-1",
        "checked_at": CHECKED_AT,
        **fields,
    }
    return json.dumps({k: v for k, v in body.items() if v is not None}).encode()


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (400, b'{"error": "bad"}', "refused the check"),
        (302, b"", "refused the check"),
        (200, b"not json", "no JSON"),
        (200, b"\xff\xfe{", "no JSON"),
        (200, b'["found", true]', "no JSON object"),
        (200, _answer(found="yes"), "'found'"),
        (200, _answer(reference=None), "'reference'"),
        (200, _answer(reference="R" * 65), "'reference'"),
        (200, _answer(credit_code=ACTIVE[1]["credit_code"]), "another credit code"),
        (200, _answer(name=""), "'name'"),
        (200, _answer(name=None), "'name'"),
        (200, _answer(representative_id_number=None), "representative_id_number"),
        (200, _answer(representative_id_number=12345), "representative_id_number"),
        (200, _answer(status="closed"), "'status'"),
        (200, _answer(status=None), "'status'"),
    ],
)
def test_malformed_answers_are_errors(
    stub: EnterpriseRegistryStub, status: int, body: bytes, message: str
) -> None:
    stub.override = (status, body)
    with pytest.raises(AdapterError, match=message) as caught:
        _registry(stub).lookup(CODE)
    assert not isinstance(caught.value, AdapterUnavailable)


def test_free_text_checked_at_is_not_passed_on(stub: EnterpriseRegistryStub) -> None:
    stub.override = (200, _answer(checked_at="<script>yesterday</script>"))
    record = _registry(stub).lookup(CODE)
    assert record is not None and record.checked_at != "<script>yesterday</script>"
    assert record.checked_at.startswith("20")


def test_oversized_answer_is_refused(
    stub: EnterpriseRegistryStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    padding = "x" * MAX_ANSWER_BYTES
    stub.override = (200, _answer(padding=padding))
    registry = _registry(stub)
    with pytest.raises(AdapterError, match="too large"):
        registry.lookup(CODE)  # refused on its declared length
    # Without a declared length (a chunked answer) the body is cut off while it is read.
    real_post = registry.session.post
    reads: list[int] = []

    def undeclared(url: str, **kwargs: Any) -> Any:
        resp = real_post(url, **kwargs)
        del resp.headers["Content-Length"]
        real_iter = resp.iter_content

        def counted(size: int) -> Iterator[bytes]:
            for chunk in real_iter(size):
                reads.append(len(chunk))
                yield chunk

        resp.iter_content = counted
        return resp

    monkeypatch.setattr(registry.session, "post", undeclared)
    with pytest.raises(AdapterError, match="too large"):
        registry.lookup(CODE)
    assert MAX_ANSWER_BYTES < sum(reads) <= MAX_ANSWER_BYTES + 8192  # stopped, not read whole
    # Just under the limit is an answer.
    stub.override = (200, _answer(padding="x" * (MAX_ANSWER_BYTES - 1024)))
    assert registry.lookup(CODE) is not None


def test_read_timeout_is_unavailable() -> None:
    gate = threading.Event()
    service = EnterpriseRegistryStub(RECORDS)
    service.gate = gate  # the registry never answers until the test is over
    with running(service):
        try:
            with pytest.raises(AdapterUnavailable, match="unreachable"):
                HttpEnterpriseRegistry(url=service.url(""), read_timeout=0.2).lookup(CODE)
        finally:
            gate.set()


def test_unreachable_is_unavailable() -> None:
    with pytest.raises(AdapterUnavailable):
        HttpEnterpriseRegistry(url="http://127.0.0.1:9", connect_timeout=0.5).lookup(CODE)


def test_client_certificate_ca_and_timeouts_are_passed_through(
    stub: EnterpriseRegistryStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: dict[str, Any] = {}
    registry = _registry(
        stub,
        client_cert="/etc/yt/c.pem",
        client_key="/etc/yt/k.pem",
        ca_file="/etc/yt/ca.pem",
        connect_timeout=1.5,
        read_timeout=4.0,
    )
    real_post = registry.session.post

    def spy(url: str, **kwargs: Any) -> Any:
        sent.update(kwargs)
        kwargs.pop("cert")
        kwargs.pop("verify")
        return real_post(url, **kwargs)

    monkeypatch.setattr(registry.session, "post", spy)
    assert registry.lookup(CODE) is not None
    assert sent["cert"] == ("/etc/yt/c.pem", "/etc/yt/k.pem")
    assert sent["verify"] == "/etc/yt/ca.pem"
    assert sent["timeout"] == (1.5, 4.0)
    assert sent["allow_redirects"] is False


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return mutual_tls(tmp_path_factory.mktemp("enterprise-tls"))


def test_mutual_tls_with_the_configured_certificate(tls_files: Any) -> None:
    """A registry that demands a client certificate from its CA: Yitong's certificate is
    accepted; without it, or trusting another CA for the server, nothing is asked
    (ASVS 12.3.2, as checklist item 90 for LDAP)."""
    with running(EnterpriseRegistryStub(RECORDS, tls=tls_files.server)) as service:
        url = service.url("")
        assert url.startswith("https://127.0.0.1:")
        good = HttpEnterpriseRegistry(
            url=url,
            client_cert=str(tls_files.client_cert),
            client_key=str(tls_files.client_key),
            ca_file=str(tls_files.ca_file),
        )
        assert good.lookup(CODE) is not None
        no_cert = HttpEnterpriseRegistry(url=url, ca_file=str(tls_files.ca_file))
        with pytest.raises(AdapterUnavailable):
            no_cert.lookup(CODE)
        wrong_ca = HttpEnterpriseRegistry(
            url=url,
            client_cert=str(tls_files.client_cert),
            client_key=str(tls_files.client_key),
            ca_file=str(tls_files.other_ca_file),
        )
        with pytest.raises(AdapterUnavailable):
            wrong_ca.lookup(CODE)
        system_trust = HttpEnterpriseRegistry(
            url=url, client_cert=str(tls_files.client_cert), client_key=str(tls_files.client_key)
        )
        with pytest.raises(AdapterUnavailable):
            system_trust.lookup(CODE)
        assert len(service.requests) == 1  # only the good client got a question through


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({}, "url"),
        ({"url": "ftp://x"}, "url"),
        ({"url": "https://r.example", "read_timeout": 0}, "timeouts"),
        ({"url": "https://r.example", "connect_timeout": "soon"}, "invalid value"),
        ({"url": "https://r.example", "client_key": "k.pem"}, "client_key"),
    ],
)
def test_config_errors_name_the_setting(config: dict[str, Any], message: str) -> None:
    with pytest.raises(AdapterConfigError, match=message) as caught:
        HttpEnterpriseRegistry.from_config(config)
    assert caught.value.source == "enterprise-registry"


# ------------------------------------------------------------------ chosen by settings
def test_settings_choose_the_http_registry(tmp_path: Path) -> None:
    settings = make_settings(
        "sqlite://",
        tmp_path,
        enterprise_registry_url="https://registry.gov.example/api/",
        enterprise_registry_client_cert="/etc/yt/c.pem",
        enterprise_registry_client_key="/etc/yt/k.pem",
        enterprise_registry_ca_file="/etc/yt/ca.pem",
        enterprise_registry_connect_timeout_ms=1500,
        enterprise_registry_read_timeout_ms=4000,
    )
    registry = _build_enterprise_registry(settings)
    assert isinstance(registry, HttpEnterpriseRegistry)
    assert registry.url == "https://registry.gov.example/api"
    assert (registry.client_cert, registry.client_key, registry.ca_file) == (
        "/etc/yt/c.pem",
        "/etc/yt/k.pem",
        "/etc/yt/ca.pem",
    )
    assert (registry.connect_timeout, registry.read_timeout) == (1.5, 4.0)
    # Without a URL: the local records (the bundled synthetic ones in testing).
    local = _build_enterprise_registry(make_settings("sqlite://", tmp_path))
    assert isinstance(local, LocalEnterpriseRegistry)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"enterprise_registry_url": "registry.gov.example"}, "url"),
        (
            {
                "enterprise_registry_url": "https://registry.gov.example",
                "enterprise_registry_client_key": "/etc/yt/k.pem",
            },
            "client_key",
        ),
        (
            {
                "enterprise_registry_url": "https://registry.gov.example",
                "enterprise_registry_read_timeout_ms": 0,
            },
            "timeouts",
        ),
    ],
)
def test_bad_registry_settings_stop_start_up(
    tmp_path: Path, overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        _build_enterprise_registry(make_settings("sqlite://", tmp_path, **overrides))

"""A stand-in enterprise-registry service on loopback (issue 10 item 5), on the recording
service of :mod:`tests.services.recorder`: it answers ``POST /enterprise/lookup`` from the
synthetic records the way docs/identity-assurance.md says the real one does, or with a fixed
``override`` (an outage, a malformed answer) that a test sets.

:func:`mutual_tls` makes a throwaway CA, a server certificate for 127.0.0.1 and a client
certificate, and the server context that demands a client certificate from that CA.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.services.recorder import Recorded, Recorder

CHECKED_AT = "2026-12-03T08:00:00+08:00"


class EnterpriseRegistryStub(Recorder):
    """``records`` by credit code (the synthetic ones unless given); ``override`` answers
    every lookup with that status and body instead."""

    def __init__(self, records: list[dict[str, Any]], tls: ssl.SSLContext | None = None) -> None:
        super().__init__(answer=self._answer, tls=tls)
        self.records = {r["credit_code"]: dict(r) for r in records}
        self.override: tuple[int, bytes] | None = None

    def _answer(self, seen: Recorded) -> tuple[int, bytes]:
        if self.override is not None:
            return self.override
        if seen.path != "/enterprise/lookup":
            return 404, b'{"error": "not_found"}'
        reference = f"ER-{len(self.requests):06d}"
        record = self.records.get(seen.json.get("credit_code"))
        if record is None:
            body: dict[str, Any] = {"found": False}
        else:
            body = {"found": True, **record}
        body.update(reference=reference, checked_at=CHECKED_AT)
        return 200, json.dumps(body, ensure_ascii=False).encode()

    @property
    def asked(self) -> list[str]:
        """The credit codes looked up so far, in order."""
        return [r.json["credit_code"] for r in self.requests if r.method == "POST"]


@dataclass(frozen=True)
class MutualTls:
    """PEM files of a test CA, the client's certificate and key, and a foreign CA."""

    ca_file: Path
    other_ca_file: Path
    client_cert: Path
    client_key: Path
    server: ssl.SSLContext


def mutual_tls(directory: Path) -> MutualTls:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all fresh."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)
    pem = serialization.Encoding.PEM

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def issue(
        cn: str,
        key: ec.EllipticCurvePrivateKey,
        signer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
        extensions: list[tuple[x509.ExtensionType, bool]],
    ) -> x509.Certificate:
        issuer, issuer_key = signer or (name(cn), key)
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(cn))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
        )
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        return builder.sign(issuer_key, hashes.SHA256())

    def write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey | None) -> None:
        path.write_bytes(cert.public_bytes(pem))
        if key is not None:
            path.with_suffix(".key").write_bytes(
                key.private_bytes(
                    pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                )
            )

    ca = [(x509.BasicConstraints(ca=True, path_length=0), True)]
    ca_key, other_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    ca_cert = issue("Test Enterprise Registry CA", ca_key, None, ca)
    other_cert = issue("Unrelated Test CA", other_key, None, ca)
    leaf = [(x509.BasicConstraints(ca=False, path_length=None), True)]
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = issue(
        "127.0.0.1",
        server_key,
        (ca_cert.subject, ca_key),
        [
            *leaf,
            (
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.IPv4Address("127.0.0.1"))]),
                False,
            ),
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
        ],
    )
    client_key = ec.generate_private_key(ec.SECP256R1())
    client_cert = issue(
        "yitong",
        client_key,
        (ca_cert.subject, ca_key),
        [*leaf, (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)],
    )
    directory.mkdir(parents=True, exist_ok=True)
    write(directory / "ca.pem", ca_cert, None)
    write(directory / "other-ca.pem", other_cert, None)
    write(directory / "server.pem", server_cert, server_key)
    write(directory / "client.pem", client_cert, client_key)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(directory / "server.pem", directory / "server.key")
    server.load_verify_locations(directory / "ca.pem")
    server.verify_mode = ssl.CERT_REQUIRED
    return MutualTls(
        directory / "ca.pem",
        directory / "other-ca.pem",
        directory / "client.pem",
        directory / "client.key",
        server,
    )

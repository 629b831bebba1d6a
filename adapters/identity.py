"""Population-registry adapters behind :class:`adapters.base.IdentityVerifier` (issue 10).

:class:`LocalRegistry` answers from a local dataset of synthetic records (name + resident ID
number, optionally the SHA-256 of a reference photo) for development and tests;
:class:`HttpRegistry` asks the real registry service over HTTPS with a client certificate.

The HTTP contract (documented in docs/identity-assurance.md): ``POST {url}/identity/check``
with ``{"name", "id_number"}`` and ``POST {url}/face/check`` with ``{"id_number", "image"}``
(base64), each answered by ``{"matched": bool, "reference": str, "checked_at": str}``.

This module imports neither flask nor idp (docs/architecture.md).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from adapters.base import AdapterConfigError, AdapterError, AdapterUnavailable, RegistryCheck

__all__ = ["HttpRegistry", "LocalRegistry"]


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


@dataclass
class LocalRegistry:
    """A registry held in memory: ``id_number -> (name, face_sha256 or None)``.

    Only for development and tests: it matches exactly what the dataset says, nothing more.
    """

    records: dict[str, tuple[str, str | None]]
    source: str = "local-registry"

    @classmethod
    def from_records(
        cls, rows: Iterable[Mapping[str, Any]], source: str = "local-registry"
    ) -> LocalRegistry:
        records: dict[str, tuple[str, str | None]] = {}
        for row in rows:
            try:
                number = str(row["id_number"]).upper()
                name = str(row["name"])
            except KeyError as exc:
                raise AdapterConfigError(source, str(exc.args[0]), "missing in a record") from None
            face = row.get("face_sha256")
            records[number] = (name, str(face) if face else None)
        return cls(records, source)

    @classmethod
    def from_file(cls, path: str | Path, source: str = "local-registry") -> LocalRegistry:
        """Load ``{"records": [{"name", "id_number", "face_sha256"?}, ...]}``."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise AdapterConfigError(source, "dataset", f"cannot read {path}: {exc}") from None
        except ValueError:
            raise AdapterConfigError(source, "dataset", f"{path} is not JSON") from None
        if not isinstance(data, dict) or not isinstance(data.get("records"), list):
            raise AdapterConfigError(source, "dataset", 'expected {"records": [...]}')
        return cls.from_records(data["records"], source)

    def _answer(self, matched: bool) -> RegistryCheck:
        return RegistryCheck(matched, self.source, "local-" + secrets.token_hex(8), _now())

    def check_identity(self, name: str, id_number: str) -> RegistryCheck:
        record = self.records.get(id_number.upper())
        return self._answer(record is not None and record[0] == " ".join(name.split()))

    def check_face(self, id_number: str, image: bytes) -> RegistryCheck:
        record = self.records.get(id_number.upper())
        if record is None or record[1] is None:
            return self._answer(False)
        seen = hashlib.sha256(image).hexdigest()
        return self._answer(hmac.compare_digest(seen, record[1]))


@dataclass
class HttpRegistry:
    """The real registry service: HTTPS, a client certificate, and bounded waits."""

    url: str
    client_cert: str | None = None  # PEM file holding the certificate (and key if no key file)
    client_key: str | None = None
    ca_file: str | None = None  # the registry's CA; default: the system trust store
    connect_timeout: float = 3.0
    read_timeout: float = 5.0
    source: str = "population-registry"
    session: requests.Session = field(default_factory=requests.Session, repr=False)

    def __post_init__(self) -> None:
        if not self.url.startswith(("https://", "http://")):
            raise AdapterConfigError(self.source, "url", "must be an http(s) URL")
        if self.connect_timeout <= 0 or self.read_timeout <= 0:
            raise AdapterConfigError(self.source, "timeouts", "must be positive")
        if self.client_key and not self.client_cert:
            raise AdapterConfigError(self.source, "client_key", "needs client_cert")

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], source: str = "population-registry"
    ) -> HttpRegistry:
        try:
            return cls(
                url=str(config["url"]).rstrip("/"),
                client_cert=config.get("client_cert") or None,
                client_key=config.get("client_key") or None,
                ca_file=config.get("ca_file") or None,
                connect_timeout=float(config.get("connect_timeout", 3.0)),
                read_timeout=float(config.get("read_timeout", 5.0)),
                source=source,
            )
        except KeyError:
            raise AdapterConfigError(source, "url", "is required") from None
        except (TypeError, ValueError) as exc:
            raise AdapterConfigError(source, None, f"invalid value: {exc}") from None

    def _post(self, path: str, body: Mapping[str, Any]) -> RegistryCheck:
        cert: str | tuple[str, str] | None = None
        if self.client_cert:
            cert = (self.client_cert, self.client_key) if self.client_key else self.client_cert
        try:
            resp = self.session.post(
                f"{self.url}{path}",
                json=dict(body),
                headers={"Accept": "application/json"},
                cert=cert,
                verify=self.ca_file or True,
                timeout=(self.connect_timeout, self.read_timeout),
                allow_redirects=False,
            )
        except requests.RequestException:
            raise AdapterUnavailable("the identity registry is unreachable") from None
        if resp.status_code >= 500 or resp.status_code in (408, 429):
            raise AdapterUnavailable(f"the identity registry answered {resp.status_code}")
        if resp.status_code != 200:
            raise AdapterError(f"the identity registry refused the check ({resp.status_code})")
        try:
            data = resp.json()
        except ValueError:
            raise AdapterError("the identity registry answered with no JSON") from None
        if not isinstance(data, dict) or not isinstance(data.get("matched"), bool):
            raise AdapterError("the identity registry answer has no boolean 'matched'")
        reference = data.get("reference")
        if not isinstance(reference, str) or not reference or len(reference) > 64:
            raise AdapterError("the identity registry answer has no usable 'reference'")
        checked_at = data.get("checked_at")
        return RegistryCheck(
            data["matched"],
            self.source,
            reference,
            checked_at if isinstance(checked_at, str) else _now(),
        )

    def check_identity(self, name: str, id_number: str) -> RegistryCheck:
        return self._post("/identity/check", {"name": name, "id_number": id_number})

    def check_face(self, id_number: str, image: bytes) -> RegistryCheck:
        image_b64 = base64.b64encode(image).decode("ascii")
        return self._post("/face/check", {"id_number": id_number, "image": image_b64})

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from adapters.base import AdapterConfigError, AdapterError, RegistryCheck
from adapters.registry_http import RegistryService, checked_at_of

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
class HttpRegistry(RegistryService):
    """The real registry service: HTTPS, a client certificate, and bounded waits
    (:class:`adapters.registry_http.RegistryService`)."""

    what: ClassVar[str] = "the identity registry"
    default_source: ClassVar[str] = "population-registry"

    def _check(self, path: str, body: Mapping[str, Any]) -> RegistryCheck:
        data = self.post_json(path, body)
        if not isinstance(data.get("matched"), bool):
            raise AdapterError("the identity registry answer has no boolean 'matched'")
        return RegistryCheck(
            data["matched"], self.source, self.reference_of(data), checked_at_of(data)
        )

    def check_identity(self, name: str, id_number: str) -> RegistryCheck:
        return self._check("/identity/check", {"name": name, "id_number": id_number})

    def check_face(self, id_number: str, image: bytes) -> RegistryCheck:
        image_b64 = base64.b64encode(image).decode("ascii")
        return self._check("/face/check", {"id_number": id_number, "image": image_b64})

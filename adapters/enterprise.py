"""The enterprise registry behind :class:`adapters.base.EnterpriseRegistry`.

:class:`LocalEnterpriseRegistry` reads a JSON dataset of synthetic records (development and
tests; ``idp/data/synthetic-enterprises.json`` is the bundled one), so that registering a
company can check "is this citizen its legal representative?" without the real register.
The file is a list of objects with ``credit_code``, ``name``, ``representative_id_number``
and ``status``; it is read once, and a malformed file stops start-up.

:class:`HttpEnterpriseRegistry` asks the real enterprise-registry service over HTTPS with a
client certificate, through the same client as the population registry
(:class:`adapters.registry_http.RegistryService`).  Contract (docs/identity-assurance.md):
``POST {url}/enterprise/lookup`` with ``{"credit_code"}``, answered ``200`` with
``{"found": true, "credit_code", "name", "representative_id_number", "status", "reference",
"checked_at"}`` or ``{"found": false, "reference", "checked_at"}``.  Only that explicit
``found: false`` means "unknown company"; every other answer that is not a well-formed record
of the very credit code asked raises, so that nothing (a registration, a re-verification that
would suspend the company) is decided on it.

:class:`FakeLicenceVerifier` stands in for the electronic business licence service
(电子营业执照) in development, the demo and tests: it accepts the presentation
``demo-licence:<credit code>`` for a company its registry lists as active, nothing else.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from adapters.base import AdapterConfigError, AdapterError, EnterpriseRecord, LicenceCheck
from adapters.registry_http import RegistryService, checked_at_of

STATUSES = ("active", "revoked", "deregistered")


def _record(index: int, item: Any) -> EnterpriseRecord:
    if not isinstance(item, Mapping):
        raise AdapterConfigError("enterprise_registry_file", f"[{index}]", "expected an object")
    values: dict[str, str] = {}
    for key in ("credit_code", "name", "representative_id_number"):
        value = item.get(key)
        if not isinstance(value, str) or not value:
            raise AdapterConfigError("enterprise_registry_file", f"[{index}].{key}", "missing")
        values[key] = value.strip().upper() if key != "name" else value.strip()
    status = item.get("status", "active")
    if status not in STATUSES:
        raise AdapterConfigError(
            "enterprise_registry_file", f"[{index}].status", f"must be one of {STATUSES}"
        )
    return EnterpriseRecord(status=status, **values)


class LocalEnterpriseRegistry:
    """Records from a local JSON file, by credit code."""

    def __init__(self, records: list[EnterpriseRecord]) -> None:
        self._by_code = {r.credit_code: r for r in records}

    @classmethod
    def from_file(cls, path: str | Path) -> LocalEnterpriseRegistry:
        try:
            data = json.loads(Path(path).read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise AdapterConfigError("enterprise_registry_file", None, str(exc)) from None
        if not isinstance(data, list):
            raise AdapterConfigError("enterprise_registry_file", None, "expected a JSON list")
        return cls([_record(i, item) for i, item in enumerate(data)])

    def lookup(self, credit_code: str) -> EnterpriseRecord | None:
        record = self._by_code.get(credit_code.strip().upper())
        if record is None:
            return None
        return dataclasses.replace(
            record, reference="local-" + secrets.token_hex(8), checked_at=_now(), source=SOURCE
        )


SOURCE = "local-enterprise-registry"
#: Longest name and representative's ID number taken from a registry answer.
MAX_NAME = 200
MAX_ID_NUMBER = 32


@dataclass
class HttpEnterpriseRegistry(RegistryService):
    """The real enterprise registry (the market regulator's register) over HTTPS."""

    what: ClassVar[str] = "the enterprise registry"
    default_source: ClassVar[str] = "enterprise-registry"

    def lookup(self, credit_code: str) -> EnterpriseRecord | None:
        code = credit_code.strip().upper()
        data = self.post_json("/enterprise/lookup", {"credit_code": code})
        found = data.get("found")
        if not isinstance(found, bool):
            raise AdapterError("the enterprise registry answer has no boolean 'found'")
        reference = self.reference_of(data)
        if not found:
            return None
        if str(data.get("credit_code", "")).strip().upper() != code:
            raise AdapterError("the enterprise registry answered about another credit code")
        name = data.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
            raise AdapterError("the enterprise registry answer has no usable 'name'")
        representative = data.get("representative_id_number")
        if (
            not isinstance(representative, str)
            or not representative.strip()
            or len(representative) > MAX_ID_NUMBER
        ):
            raise AdapterError(
                "the enterprise registry answer has no usable 'representative_id_number'"
            )
        status = data.get("status")
        if status not in STATUSES:
            raise AdapterError(
                f"the enterprise registry answer's 'status' is not one of {STATUSES}"
            )
        return EnterpriseRecord(
            credit_code=code,
            name=name.strip(),
            representative_id_number=representative.strip().upper(),
            status=status,
            reference=reference,
            checked_at=checked_at_of(data),
            source=self.source,
        )


#: The presentation the fake licence service accepts: this prefix and the credit code.
DEMO_PRESENTATION = "demo-licence:"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class FakeLicenceVerifier:
    """A stand-in electronic business licence service over a local registry (never in
    production): ``demo-licence:<credit code>`` is a valid licence of an active company."""

    source = "demo-business-licence"

    def __init__(self, registry: LocalEnterpriseRegistry) -> None:
        self._registry = registry

    def check_licence(self, credit_code: str, presentation: str) -> LicenceCheck:
        code = credit_code.strip().upper()
        record = self._registry.lookup(code)
        valid = (
            record is not None
            and record.status == "active"
            and presentation.strip() == DEMO_PRESENTATION + code
        )
        name = record.name if record is not None else ""
        reference = "demo-" + secrets.token_hex(8)
        return LicenceCheck(valid, code, name, self.source, reference, _now())

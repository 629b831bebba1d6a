"""The enterprise registry behind :class:`adapters.base.EnterpriseRegistry`.

:class:`LocalEnterpriseRegistry` reads a JSON dataset of synthetic records (development and
tests; ``idp/data/synthetic-enterprises.json`` is the bundled one), so that registering a
company can check "is this citizen its legal representative?" without the real register.
The file is a list of objects with ``credit_code``, ``name``, ``representative_id_number``
and ``status``; it is read once, and a malformed file stops start-up.

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
from pathlib import Path
from typing import Any

from adapters.base import AdapterConfigError, EnterpriseRecord, LicenceCheck

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

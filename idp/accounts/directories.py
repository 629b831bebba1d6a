"""The department directories a login can use: settings-file tables plus admin-API rows.

Settings-file directories are fixed for the life of the process.  Directories added through
the admin API live in the ``directories`` table (bind password sealed with the KEK) and every
worker picks them up within ``RELOAD_SECONDS`` without a restart.  An adapter is rebuilt only
when its configuration changes, so its connection pool and circuit breaker survive reloads.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

from sqlalchemy import select

from adapters.base import AdapterConfigError
from adapters.registry import build_directories, parse_directories
from idp.storage.db import Database
from idp.storage.models import DirectoryConfig
from keys.crypto import Kek

log = logging.getLogger(__name__)
RELOAD_SECONDS = 30.0
SECRET_KEYS = ("bind_password",)


def seal_config(kek: Kek, directory_id: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """The row form of a directory table: secrets encrypted, the rest as given."""
    stored = dict(config)
    for key in SECRET_KEYS:
        if stored.get(key):
            blob = kek.encrypt(str(stored.pop(key)).encode(), f"directory:{directory_id}".encode())
            stored[key + "_sealed"] = base64.b64encode(blob).decode("ascii")
    return stored


def open_config(kek: Kek, directory_id: str, stored: Mapping[str, Any]) -> dict[str, Any]:
    config = dict(stored)
    for key in SECRET_KEYS:
        sealed = config.pop(key + "_sealed", None)
        if sealed:
            config[key] = kek.decrypt(
                base64.b64decode(sealed), f"directory:{directory_id}".encode()
            ).decode()
    return config


def public_config(stored: Mapping[str, Any]) -> dict[str, Any]:
    """What an admin may read back: never a password, sealed or not."""
    return {k: v for k, v in stored.items() if not k.startswith("bind_password")}


class DirectoryRegistry(Mapping[str, Any]):
    """Mapping of directory id -> adapter (a :class:`adapters.base.PasswordAuthenticator`)."""

    def __init__(
        self, settings_tables: Mapping[str, Any], db: Database | None, kek: Kek | None
    ) -> None:
        self._fixed = build_directories(settings_tables) if settings_tables else {}
        self._db = db
        self._kek = kek
        self._dynamic: dict[str, Any] = {}
        self._fingerprints: dict[str, str] = {}
        self._loaded_at = 0.0
        self._lock = threading.Lock()

    def reload(self, force: bool = False) -> None:
        if self._db is None or self._kek is None:
            return
        if not force and time.monotonic() - self._loaded_at < RELOAD_SECONDS:
            return
        with self._lock:
            try:
                with self._db.session() as session:
                    rows = {r.id: dict(r.config) for r in session.scalars(select(DirectoryConfig))}
            except Exception:
                log.warning("could not reload department directories from the database")
                return
            dynamic: dict[str, Any] = {}
            for directory_id, stored in rows.items():
                if directory_id in self._fixed:
                    continue  # the settings file wins; the admin API refuses such ids anyway
                fingerprint = json.dumps(stored, sort_keys=True)
                if (
                    self._fingerprints.get(directory_id) == fingerprint
                    and directory_id in self._dynamic
                ):
                    dynamic[directory_id] = self._dynamic[directory_id]
                    continue
                try:
                    config = open_config(self._kek, directory_id, stored)
                    dynamic.update(build_directories({directory_id: config}))
                    self._fingerprints[directory_id] = fingerprint
                except (AdapterConfigError, ValueError) as exc:
                    log.error("directory %s from the database is unusable: %s", directory_id, exc)
            self._dynamic = dynamic
            self._loaded_at = time.monotonic()

    def _all(self) -> dict[str, Any]:
        self.reload()
        return {**self._dynamic, **self._fixed}

    def __getitem__(self, key: str) -> Any:
        return self._all()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())

    def is_fixed(self, directory_id: str) -> bool:
        return directory_id in self._fixed


def validate_table(directory_id: str, table: Mapping[str, Any]) -> None:
    """Raise :class:`AdapterConfigError` naming the key when ``table`` is unusable."""
    parse_directories({directory_id: table})

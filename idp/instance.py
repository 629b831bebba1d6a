"""Secrets that development generates on first start, and production must be given.

In development (and tests) a missing secret key or key-encryption key is generated once into
the instance directory (mode 0600) and reused, so restarts and workers agree (checklist 118).
Production never generates: :func:`idp.config.check_settings` already refused to load, and a
key-encryption-key file marked as generated is refused here too.

:func:`initialize` is the one set-up of an instance's database (``yitong init``, the demo,
the benchmarks): schema to head, then a signing key for every configured algorithm.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from idp.config import ConfigError, Settings
from idp.storage.migrate import upgrade
from keys.crypto import Kek, KekError
from keys.store import ManagedKeyStore

GENERATED_MARK = "# generated development key: never use in production\n"


def _read_or_create(path: Path, make: str) -> str:
    if path.exists():
        lines = [ln for ln in path.read_text("utf-8").splitlines() if ln and not ln.startswith("#")]
        if not lines:
            raise ConfigError(f"{path} is empty")
        return lines[0].strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(GENERATED_MARK + make + "\n")
    return make


def secret_key(settings: Settings) -> str:
    if settings.secret_key:
        return settings.secret_key
    if settings.is_production:
        raise ConfigError("production needs YITONG_SECRET_KEY")
    return _read_or_create(Path(settings.instance_dir) / "secret_key", secrets.token_urlsafe(48))


def key_encryption_key(settings: Settings) -> Kek:
    try:
        if settings.key_encryption_key:
            return Kek.from_text(settings.key_encryption_key)
        if settings.key_encryption_key_file:
            path = Path(settings.key_encryption_key_file)
            if not path.exists():
                raise ConfigError(f"YITONG_KEY_ENCRYPTION_KEY_FILE: no such file: {path}")
            text = path.read_text("utf-8")
            if settings.is_production and GENERATED_MARK.strip() in text:
                raise ConfigError(
                    f"{path} holds a generated development key; production needs a key of its own"
                )
            return Kek.from_text(_read_or_create(path, ""))
    except KekError as exc:
        raise ConfigError(str(exc)) from None
    if settings.is_production:
        raise ConfigError(
            "production needs YITONG_KEY_ENCRYPTION_KEY or YITONG_KEY_ENCRYPTION_KEY_FILE"
        )
    text = _read_or_create(Path(settings.instance_dir) / "kek.key", Kek.generate().to_text())
    try:
        return Kek.from_text(text)
    except KekError as exc:
        raise ConfigError(f"{settings.instance_dir}/kek.key: {exc}") from None


def previous_keks(settings: Settings) -> tuple[Kek, ...]:
    """Earlier key-encryption keys, for reading data sealed before a KEK change."""
    out = []
    for name in settings.previous_key_encryption_key_files:
        path = Path(name)
        if not path.exists():
            raise ConfigError(f"YITONG_PREVIOUS_KEY_ENCRYPTION_KEY_FILES: no such file: {path}")
        lines = [ln for ln in path.read_text("utf-8").splitlines() if ln and not ln.startswith("#")]
        try:
            out.append(Kek.from_text(lines[0] if lines else ""))
        except KekError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    return tuple(out)


def hsm_pin(settings: Settings) -> str:
    if not settings.pkcs11_pin_file:
        raise ConfigError("key_store = pkcs11 needs YITONG_PKCS11_PIN_FILE")
    try:
        return Path(settings.pkcs11_pin_file).read_text("utf-8").strip()
    except OSError as exc:
        raise ConfigError(
            f"YITONG_PKCS11_PIN_FILE: cannot read {settings.pkcs11_pin_file}: {exc.strerror}"
        ) from None


def initialize(database_url: str, keystore: ManagedKeyStore) -> list[str]:
    """Create or upgrade the schema, then make sure every algorithm has its keys.

    Returns the kids of the keys it generated (none when the instance was already set up).
    """
    upgrade(database_url)
    made: list[str] = keystore.ensure_keys()
    return made

"""Fixtures for the key-store tests: the run's database, a real SoftHSM2 token, every store.

The database is the run's (``database_url`` from ``tests/conftest.py``: SQLite, or PostgreSQL
with ``YITONG_TEST_DB=postgres``); each test starts and ends with an empty ``signing_keys``
table and audit trail, so the app tests regenerate their own keys afterwards.

SoftHSM2 is the real thing (Debian ``softhsm2``): a fresh token in a temporary directory,
initialized with ``softhsm2-util --init-token`` once per run.  Outside CI a missing softhsm2
skips the HSM tests with the reason; with ``CI=true`` it fails them.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete

from idp.storage.db import Database
from idp.storage.models import AuditEvent, SigningKey
from keys.crypto import Kek
from keys.rotation import CLOCK_SKEW, RotationPolicy
from keys.static import StaticKeyStore
from keys.store import SUPPORTED_ALGS
from tests.conftest import missing

SOFTHSM_MODULES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
)

#: Token lifetimes and caches as in the default settings (seconds).
TOKEN_LIFETIME = 600
JWKS_CACHE = 3600
REFRESH = 0.2

POLICY = RotationPolicy(
    rotation_period=dt.timedelta(days=90),
    prepublish=dt.timedelta(seconds=JWKS_CACHE + REFRESH),
    retention=dt.timedelta(seconds=TOKEN_LIFETIME + REFRESH) + CLOCK_SKEW,
    jwks_cache_seconds=JWKS_CACHE,
)

RSA_BITS = 2048  # the minimum, to keep the suite quick; 3072 is the production default


def wipe(db: Database) -> None:
    with db.transaction() as session:
        session.execute(delete(SigningKey))
        session.execute(delete(AuditEvent))


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    wipe(database)
    yield database
    wipe(database)
    database.dispose()


@pytest.fixture
def kek() -> Kek:
    return Kek.generate()


@dataclass(frozen=True)
class SoftHsm:
    module: str
    token_label: str
    pin: str
    so_pin: str
    conf: Path


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftHsm]:
    """A freshly initialized SoftHSM2 token for this run (SOFTHSM2_CONF set for the session)."""
    util = shutil.which("softhsm2-util")
    module = next((m for m in SOFTHSM_MODULES if os.path.exists(m)), None)
    if util is None or module is None:
        missing("SoftHSM2 is not installed (apt-get install softhsm2)")
    assert util is not None and module is not None
    root = tmp_path_factory.mktemp("softhsm")
    (root / "tokens").mkdir()
    conf = root / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {root / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    old = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    hsm = SoftHsm(module, "yitong-test", "246810", "13579111", conf)
    try:
        subprocess.run(
            [util, "--init-token", "--free", "--label", hsm.token_label,
             "--pin", hsm.pin, "--so-pin", hsm.so_pin],
            check=True, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        yield hsm
    finally:
        if old is None:
            os.environ.pop("SOFTHSM2_CONF", None)
        else:
            os.environ["SOFTHSM2_CONF"] = old


StoreFactory = Callable[..., Any]


@pytest.fixture(params=["sql", "pkcs11", "static"])
def make_store(request: pytest.FixtureRequest, kek: Kek) -> StoreFactory:
    """Builds stores of one implementation; database-backed ones share the run's database, so
    calling the factory twice gives two workers over the same keys."""
    kind = request.param
    defaults: dict[str, Any] = {
        "algorithms": SUPPORTED_ALGS,
        "rsa_bits": RSA_BITS,
        "policy": POLICY,
    }
    if kind == "static":
        return lambda **kw: StaticKeyStore(**{**defaults, **kw})
    database = request.getfixturevalue("db")
    if kind == "sql":
        from keys.sql import SqlKeyStore

        return lambda **kw: SqlKeyStore(
            database, kw.pop("kek", kek), **{**defaults, "refresh_seconds": REFRESH, **kw}
        )
    request.applymarker(pytest.mark.hsm)
    hsm: SoftHsm = request.getfixturevalue("softhsm")
    from keys.pkcs11 import Pkcs11KeyStore

    return lambda **kw: Pkcs11KeyStore(
        database,
        module=hsm.module,
        token_label=hsm.token_label,
        pin=hsm.pin,
        **{**defaults, "refresh_seconds": REFRESH, **kw},
    )

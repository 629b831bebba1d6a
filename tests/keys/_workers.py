"""Code run in separate processes by ``test_concurrency.py`` (spawned: nothing shared but the
database), so that "two workers rotate at once" is real concurrency, not threads taking turns."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from idp.storage.db import Database
from keys.crypto import Kek
from keys.rotation import CLOCK_SKEW, RotationPolicy
from keys.sql import NewKey, SqlKeyStore

POLICY = RotationPolicy(
    rotation_period=dt.timedelta(days=90),
    prepublish=dt.timedelta(seconds=3600.2),
    retention=dt.timedelta(seconds=600.2) + CLOCK_SKEW,
    jwks_cache_seconds=3600,
)


class SlowStore(SqlKeyStore):
    """Key generation that takes a while, so that without the lock both workers would be
    generating at the same moment (the race the lock must prevent)."""

    created = 0

    def _create(self, alg: str) -> NewKey:
        self.created += 1
        time.sleep(0.3)
        return super()._create(alg)


def rotate(
    url: str, kek: str, algorithms: tuple[str, ...], now: str, barrier: Any, out: Any
) -> None:
    db = Database(url)
    store = SlowStore(
        db, Kek.from_text(kek), algorithms=algorithms, rsa_bits=2048, policy=POLICY,
        refresh_seconds=0.2,
    )  # fmt: skip
    try:
        barrier.wait(timeout=60)
        changed = store.rotate(dt.datetime.fromisoformat(now))
        out.put(("ok", (changed, store.created)))
    except Exception as exc:
        out.put(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        db.dispose()

"""An in-process snapshot of the client table, for the token-side hot path.

Every token, revocation and introspection request starts by finding its client.  Loading the
row through the ORM (with its JSON columns) costs about as much as the rest of a
``client_credentials`` request, so each worker keeps a snapshot of *all* clients and reloads it
every :attr:`ClientSnapshot.TTL` seconds, or at once when this process changes a client (ORM
events on :class:`~idp.storage.models.Client`).  A change made by another process (another
worker, the CLI) is seen within the TTL: disabling a client or replacing its secret takes
effect everywhere within :attr:`ClientSnapshot.TTL` seconds.

The whole table, rather than a cache of rows seen: a lookup of an unknown ``client_id`` is then
a dictionary miss exactly like a lookup of a known one, so the time an authentication failure
takes does not tell whether the client exists (checklist 32).  Department clients number in
the hundreds; a reload is one query.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from sqlalchemy import event, select

from idp.storage.db import Database
from idp.storage.models import Client

_generation = [0]


def _changed(*_args: Any) -> None:
    _generation[0] += 1


for _name in ("after_insert", "after_update", "after_delete"):
    event.listen(Client, _name, _changed)


class ClientSnapshot:
    """``get(client_id)`` -> a detached, read-only :class:`Client` row, or None."""

    TTL = 5.0

    def __init__(self, db: Database) -> None:
        self.db = db
        self._rows: dict[str, Client] = {}
        self._loaded_at = -1e9
        self._generation = -1
        self._lock = threading.Lock()

    def get(self, client_id: str | None) -> Client | None:
        if not client_id or not isinstance(client_id, str) or len(client_id) > 64:
            return None
        if time.monotonic() - self._loaded_at > self.TTL or self._generation != _generation[0]:
            self._reload()
        return self._rows.get(client_id)

    def _reload(self) -> None:
        with self._lock:
            generation = _generation[0]
            if time.monotonic() - self._loaded_at <= self.TTL and self._generation == generation:
                return  # another thread reloaded while we waited
            with self.db.session() as session:
                rows = list(session.scalars(select(Client)))
                session.expunge_all()
            self._rows = {row.client_id: row for row in rows}
            self._loaded_at = time.monotonic()
            self._generation = generation

    def invalidate(self) -> None:
        self._loaded_at = -1e9

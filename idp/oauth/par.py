"""Pushed authorization requests (RFC 9126): the storage half.

https://www.rfc-editor.org/rfc/rfc9126

A client pushes its authorization parameters to ``/par`` (authenticated like at the token
endpoint) and gets a ``request_uri`` to send the browser with.  The request_uri is:

- ``urn:ietf:params:oauth:request_uri:`` followed by 256 random bits, stored only as its
  SHA-256 digest (like every other credential, ARCHITECTURE.md "Storage");
- bound to the client that pushed it (§4: the authorization request's client_id must match);
- single-use, consumed with an atomic compare-and-set (§4, FAPI 2.0; checklist 23);
- short-lived: :data:`LIFETIME` seconds, well under the 600 s FAPI 2.0 allows (§2.2).

With Redis configured (issue 12) a pushed request is a Redis value under the digest, taken with
``GETDEL`` (single use on every node, no row); otherwise a ``pushed_requests`` row.  Redis down
raises :class:`~idp.errors.StateStoreUnavailable` (``temporarily_unavailable``), never a lookup
in the other store.
"""

from __future__ import annotations

import datetime as dt
import json

from sqlalchemy import delete, update
from sqlalchemy.orm import Session

from idp.oauth.authorize import PAR_URN_PREFIX, RequestResolutionError
from idp.storage.hot import RedisStore
from idp.storage.models import PushedRequest, utcnow
from idp.storage.repo import digest, new_secret

LIFETIME = 60  # seconds; RFC 9126 §2.2 example and FAPI 2.0 "< 600"
MAX_REQUEST_URI_LENGTH = 200


def push(
    session: Session,
    client_id: str,
    params: dict[str, list[str]],
    now: dt.datetime | None = None,
    hot: RedisStore | None = None,
) -> tuple[str, int]:
    """Store validated parameters; return (request_uri, expires_in).  The caller commits."""
    now = now or utcnow()
    request_uri = PAR_URN_PREFIX + new_secret(32)
    if hot is not None:
        value = json.dumps({"client_id": client_id, "params": params}).encode()
        hot.put("par", digest(request_uri), value, LIFETIME)
        return request_uri, LIFETIME
    session.add(
        PushedRequest(
            digest=digest(request_uri),
            client_id=client_id,
            params={k: list(v) for k, v in params.items()},
            expires_at=now + dt.timedelta(seconds=LIFETIME),
        )
    )
    # Housekeeping: requests that expired a while ago are of no use to anyone.
    session.execute(
        delete(PushedRequest)
        .where(PushedRequest.expires_at < now - dt.timedelta(hours=1))
        .execution_options(synchronize_session=False)
    )
    return request_uri, LIFETIME


def take(
    session: Session,
    request_uri: str,
    client_id: str,
    now: dt.datetime | None = None,
    hot: RedisStore | None = None,
) -> dict[str, list[str]]:
    """Consume a pushed request for ``client_id``; raise ``invalid_request_uri`` otherwise.

    The same answer for unknown, used, expired and another client's request_uri: the
    caller learns nothing about requests that are not its own.  Another client presenting
    it does not consume it.
    """
    now = now or utcnow()
    refused = RequestResolutionError(
        "request_uri is unknown, expired, already used or not issued to this client",
        "invalid_request_uri",
    )
    if len(request_uri) > MAX_REQUEST_URI_LENGTH or not request_uri.startswith(PAR_URN_PREFIX):
        raise refused
    key = digest(request_uri)
    if hot is not None:
        return _take_hot(hot, key, client_id, refused)
    result = session.execute(
        update(PushedRequest)
        .where(
            PushedRequest.digest == key,
            PushedRequest.client_id == client_id,
            PushedRequest.used_at.is_(None),
            PushedRequest.expires_at > now,
        )
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise refused
    row = session.get(PushedRequest, key)
    session.commit()  # single use holds even if the rest of this request fails
    assert row is not None
    return {str(k): [str(x) for x in v] for k, v in row.params.items() if isinstance(v, list)}


def _take_hot(
    hot: RedisStore, key: str, client_id: str, refused: RequestResolutionError
) -> dict[str, list[str]]:
    """Take from Redis; another client's presentation leaves the request where it was."""
    raw = hot.peek("par", key)
    if raw is None:
        raise refused
    stored = json.loads(raw)
    if stored.get("client_id") != client_id or hot.take("par", key) is None:
        raise refused  # not this client's, or another request took it first (single use)
    params = stored.get("params") or {}
    return {str(k): [str(x) for x in v] for k, v in params.items() if isinstance(v, list)}

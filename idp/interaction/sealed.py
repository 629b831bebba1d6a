"""Small secrets kept in the browser's session cookie, encrypted with the key-encryption key
and bound to a purpose and an account (a pending phone number, a step's proof): the cookie
alone shows nothing and cannot be moved to another purpose or account.

Its own module so that both :mod:`idp.interaction.self_service` and
:mod:`idp.interaction.contacts` use it without importing each other.
"""

from __future__ import annotations

import base64

from flask import session

from idp import context
from idp.storage.models import utcnow
from keys.crypto import KekError


def _seal(purpose: str, user_id: str, value: str) -> str:
    blob = context.services().kek.encrypt(value.encode(), f"{purpose}:{user_id}".encode())
    return base64.b64encode(blob).decode()


def _open(purpose: str, user_id: str, sealed: object) -> str | None:
    try:
        blob = base64.b64decode(str(sealed))
        aad = f"{purpose}:{user_id}".encode()
        return context.services().kek.decrypt(blob, aad).decode()
    except (ValueError, TypeError, KekError):  # tampered or stale: start over
        return None


def stash_sealed(key: str, purpose: str, user_id: str, value: str) -> None:
    """Keep ``value`` in the browser's session, encrypted and bound to purpose and account."""
    session[key] = {"u": user_id, "s": _seal(purpose, user_id, value), "t": utcnow().timestamp()}


def unstash_sealed(key: str, purpose: str, user_id: str, ttl: int) -> str | None:
    """What :func:`stash_sealed` kept, unless older than ``ttl`` seconds, tampered or absent."""
    data = session.get(key)
    if not isinstance(data, dict) or data.get("u") != user_id:
        return None
    if utcnow().timestamp() - float(data.get("t", 0)) > ttl:
        return None
    return _open(purpose, user_id, data.get("s"))

"""Per-app services and the per-request database session, reached from request handlers.

The factory (:func:`idp.app.create_app`) puts one :class:`Services` in
``app.extensions['yitong']``; a request gets one SQLAlchemy session, opened lazily on ``g``
and closed (rolled back unless committed) at teardown.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flask import current_app, g
from sqlalchemy.orm import Session

from idp.accounts.passwords import Passwords
from idp.accounts.privacy import IdentityVault
from idp.config import Settings
from idp.storage.db import Database
from keys.crypto import KekRing
from keys.store import ManagedKeyStore

if TYPE_CHECKING:
    from idp.oauth.tokens import TokenIssuer


@dataclass
class Services:
    settings: Settings
    db: Database
    kek: KekRing
    keys: ManagedKeyStore
    passwords: Passwords
    vault: IdentityVault
    tokens: TokenIssuer
    directories: Any = field(default_factory=dict)  # Mapping id -> PasswordAuthenticator
    extra: dict[str, Any] = field(default_factory=dict)


def services() -> Services:
    return current_app.extensions["yitong"]  # type: ignore[no-any-return]


def settings() -> Settings:
    return services().settings


def db_session() -> Session:
    """The request's session (created on first use)."""
    if "db_session" not in g:
        db = services().db
        g.db_session = db.writer()
        db.bind_request_session(g.db_session)
    return g.db_session  # type: ignore[no-any-return]


def close_db_session(_exc: BaseException | None = None) -> None:
    session = g.pop("db_session", None)
    if session is not None:
        services().db.bind_request_session(None)
        session.close()

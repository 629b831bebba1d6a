"""What a request handler reaches: the app's :class:`~idp.services.Services`, the request's
database session, the client's address.

The factory (:func:`idp.app.create_app`) puts one :class:`Services` in
``app.extensions['yitong']``; a request gets one SQLAlchemy session, opened lazily on ``g``
and closed (rolled back unless committed) at teardown.
"""

from __future__ import annotations

import logging
import secrets

from flask import Request, current_app, g, request
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from idp.config import Settings
from idp.services import Services
from idp.storage.models import Client

log = logging.getLogger(__name__)

__all__ = [
    "Services",
    "client_ip",
    "current_request",
    "db_session",
    "find_client",
    "request_id",
    "services",
    "settings",
]


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


def open_db_session() -> Session | None:
    """The request's session if something opened it, else None (nothing to commit)."""
    return g.get("db_session")  # type: ignore[no-any-return]


def close_db_session(_exc: BaseException | None = None) -> None:
    session = g.pop("db_session", None)
    if session is not None:
        services().db.bind_request_session(None)
        try:
            session.close()
        except SQLAlchemyError as exc:
            # The connection died under the request (a database restart, issue 12): the answer
            # is already made; drop the connection instead of turning it into a 500.
            log.warning("request session could not be closed cleanly: %s", type(exc).__name__)
            session.invalidate()


def release_request_transaction() -> None:
    """End the request's transaction before work that commits in a transaction of its own.

    On SQLite the request session holds the write lock from its first statement; an atomic
    compare-and-set in a second transaction (a one-time code, a lockout counter, an audit
    entry written with retry) would otherwise wait for it.
    """
    if "db_session" in g:
        g.db_session.commit()


def current_request() -> Request:
    """The request object itself, not Flask's context-local proxy.

    Each read through ``flask.request`` looks the request up again (four Python calls); a hook
    or view that reads several of its attributes binds it once with this.
    """
    return request._get_current_object()  # type: ignore[attr-defined,no-any-return]


def client_ip() -> str:
    """The client's address: ``ProxyFix`` (driven by ``trusted_proxies``) already replaced
    ``remote_addr`` with the address the trusted proxies saw, and nothing else is believed."""
    return request.remote_addr or "unknown"


def request_id() -> str:
    """This request's id (:mod:`idp.observability` sets it first; made here if a page is
    drawn before that hook ran).

    A person reads it from an error page to the help desk; the same value is in the
    ``X-Request-Id`` response header and in every log record of the request
    (:mod:`idp.logging_setup`), so the desk finds the developer detail the page does not show.
    """
    rid = g.get("request_id")
    if rid is None:
        rid = g.request_id = secrets.token_hex(8)
    return str(rid)


def find_client(client_id: str | None) -> Client | None:
    """A client from the per-worker snapshot (read-only; detached rows)."""
    return services().clients.get(client_id)

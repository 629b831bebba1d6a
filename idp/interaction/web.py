"""The SSO session in the browser: the cookie, flask-login's request loader, helpers.

The cookie is ``__Host-`` prefixed, ``Secure``, ``HttpOnly``, ``SameSite=Lax``, ``Path=/`` and
has no ``Domain`` in production (checklist 62); in development over plain http the prefix and
``Secure`` are dropped, because browsers refuse them there.
"""

from __future__ import annotations

from flask import g, request
from flask_login import LoginManager
from werkzeug.wrappers import Response

from idp import context
from idp.interaction.sessions import SessionTimeouts, load_session
from idp.storage.models import SsoSession, User


def cookie_name() -> str:
    return "__Host-yitong_sso" if context.settings().issuer.startswith("https://") else "yitong_sso"


def timeouts() -> SessionTimeouts:
    s = context.settings()
    return SessionTimeouts(idle=s.session_idle_timeout, absolute=s.session_absolute_timeout)


def current_sso() -> SsoSession | None:
    """The live SSO session of this request (loaded once per request)."""
    if "sso" not in g:
        session = context.db_session()
        row = load_session(session, request.cookies.get(cookie_name()), timeouts())
        if session.dirty:
            session.commit()
        g.sso = row
        g.sso_user = None
        if row is not None:
            user = session.get(User, row.user_id)
            if user is None or not user.is_active:
                g.sso = None
            else:
                g.sso_user = user
    return g.sso  # type: ignore[no-any-return]


def current_user_row() -> User | None:
    current_sso()
    return g.sso_user  # type: ignore[no-any-return]


def set_session_cookie(resp: Response, token: str) -> None:
    secure = context.settings().issuer.startswith("https://")
    resp.set_cookie(
        cookie_name(),
        token,
        httponly=True,
        secure=secure,
        samesite="Lax",
        path="/",
        max_age=context.settings().session_absolute_timeout,
    )


def clear_session_cookie(resp: Response) -> None:
    secure = context.settings().issuer.startswith("https://")
    resp.delete_cookie(cookie_name(), path="/", secure=secure, httponly=True, samesite="Lax")


def init_login_manager(login_manager: LoginManager) -> None:
    """flask-login reads the user from the SSO session only (never from its own cookie)."""

    def _load(_request: object) -> User | None:
        return current_user_row()

    def _never(_user_id: str) -> None:
        return None

    login_manager.request_loader(_load)
    login_manager.user_loader(_never)

"""The SSO session in the browser: the cookie, the signed-in user, helpers.

The cookie is ``__Host-`` prefixed, ``Secure``, ``HttpOnly``, ``SameSite=Lax``, ``Path=/`` and
has no ``Domain`` in production (checklist 62); in development over plain http the prefix and
``Secure`` are dropped, because browsers refuse them there.

A session past its idle or absolute time-out ends here, when a request first looks at it:
the strictest of the settings and the policy of the user's classes applies (checklist 66),
and it ends through :func:`~idp.interaction.sessions.end_sessions` like every other session.
Every request that uses the session records activity (in Redis when configured, see
:mod:`idp.interaction.sessions`); the row is committed only when its clock moved.
"""

from __future__ import annotations

import datetime as dt
import secrets

from flask import g, request, session
from werkzeug.wrappers import Response

from idp import context
from idp.interaction.flow import Interaction
from idp.interaction.policies import session_timeouts_for, user_classes
from idp.interaction.sessions import (
    SessionTimeouts,
    end_sessions,
    observe,
    session_and_user,
    timed_out,
    touch,
)
from idp.storage.models import SsoSession, User, utcnow


def cookie_name() -> str:
    return "__Host-yitong_sso" if context.settings().issuer.startswith("https://") else "yitong_sso"


def timeouts() -> SessionTimeouts:
    s = context.settings()
    return SessionTimeouts(idle=s.session_idle_timeout, absolute=s.session_absolute_timeout)


def timeouts_for(user: User) -> SessionTimeouts:
    """The settings' time-outs, tightened by the policy of the user's classes."""
    base = timeouts()
    idle, absolute = session_timeouts_for(context.services().policies, user_classes(user))
    return SessionTimeouts(idle=min(base.idle, idle), absolute=min(base.absolute, absolute))


def current_sso() -> SsoSession | None:
    """The live SSO session of this request (loaded once per request)."""
    if "sso" not in g:
        g.sso, g.sso_user = _load()
    return g.sso  # type: ignore[no-any-return]


def _load() -> tuple[SsoSession | None, User | None]:
    # Read outside the request's transaction (PostgreSQL: no BEGIN, and no ROLLBACK or
    # COMMIT at the end, for the one SELECT every signed-in request makes), then attached to
    # the request's session without a statement (``load=False``: these are the rows just
    # read), so that the clock's write or an ending below, and anything the page does
    # later, goes through it as before.
    with context.services().db.reads() as reads:
        found = session_and_user(reads, request.cookies.get(cookie_name()))
    if found is None:
        return None, None
    session = context.db_session()
    row = session.merge(found[0], load=False)
    user = session.merge(found[1], load=False)
    if not user.is_active:
        return None, None
    now, limits, hot = utcnow(), timeouts_for(user), context.services().hot
    activity = observe(row, limits, now, hot)  # one Redis round trip, when configured
    if timed_out(row, limits, now, hot, seen=activity.seen):
        ended = end_sessions(session, context.services(), [row], reason="timeout", now=now)
        session.commit()
        ended.kick()
        return None, None
    touch(row, limits, now, activity)
    if session.dirty:
        session.commit()
    return row, user


def current_user_row() -> User | None:
    current_sso()
    return g.sso_user  # type: ignore[no-any-return]


def forget_current_session() -> None:
    """This request's session ended (logout, step-up replaced it): load it afresh if asked."""
    g.pop("sso", None)
    g.pop("sso_user", None)


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


BROWSER_KEY = "ixb"


def _browser(create: bool) -> str | None:
    """This browser's interaction binding (a random value in its signed session cookie)."""
    value = session.get(BROWSER_KEY)
    if not isinstance(value, str) and create:
        value = secrets.token_urlsafe(16)
        session[BROWSER_KEY] = value
    return value if isinstance(value, str) else None


def seal_interaction(multi: dict[str, list[str]], started: dt.datetime) -> str:
    """An ``ix`` for this browser (see :mod:`idp.interaction.flow`)."""
    return context.services().sealer.seal(multi, started, browser=_browser(create=True) or "")


def open_interaction(token: str | None) -> Interaction:
    """Open an ``ix`` started in this browser; raises ``InteractionExpired`` otherwise."""
    return context.services().sealer.open(token, browser=_browser(create=False))

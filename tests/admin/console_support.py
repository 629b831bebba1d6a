"""Signing an admin into the console for tests: a live SSO session minted into the database.

How an admin logs in (password, second factor, passkey) is the login tests' business; the
console tests need a browser session of a given level and age for an account holding given
roles, as :func:`tests.helpers.admin_token` gives the API tests a token.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from flask import Flask
from sqlalchemy import update

from admin.services import OPERATOR, add_department, grant_role
from idp.interaction.sessions import SessionTimeouts, start_session
from idp.storage.models import Department, SsoSession, User, utcnow
from tests.helpers import Citizen

MFA = "urn:yitong:acr:mfa"


def ensure_department(app: Flask, dept_id: str) -> None:
    services = app.extensions["yitong"]
    with app.app_context(), services.db.session() as session:
        if session.get(Department, dept_id) is None:
            add_department(session, dept_id, f"Department {dept_id}", OPERATOR)


def admin_account(app: Flask, roles: list[str], departments: tuple[str, ...] = ()) -> str:
    """A new citizen account holding ``roles`` (department-admin of ``departments``)."""
    account = Citizen.create(app)
    services = app.extensions["yitong"]
    with app.app_context(), services.db.session() as session:
        for role in roles:
            if role == "department-admin":
                for dept in departments:
                    ensure_department(app, dept)
                    grant_role(session, services, account.id, role, dept, OPERATOR)
            else:
                grant_role(session, services, account.id, role, None, OPERATOR)
    return account.id


def sign_in(app: Flask, http: Any, user_id: str, *, acr: str = MFA, minutes_ago: int = 1) -> None:
    """Give the test client ``http`` a live session of ``user_id`` at ``acr``."""
    services = app.extensions["yitong"]
    when = utcnow() - dt.timedelta(minutes=minutes_ago)
    with services.db.transaction() as session:
        user = session.get(User, user_id)
        assert user is not None
        token, row = start_session(
            session,
            user,
            SessionTimeouts(idle=86400, absolute=86400),
            amr=["pwd", "otp"],
            acr=acr,
            now=when,
        )
        # Signed in minutes ago, active now (the returned row is detached: write the column).
        session.execute(
            update(SsoSession).where(SsoSession.id == row.id).values(last_seen_at=utcnow())
        )
    http.set_cookie("yitong_sso", token, domain="localhost")


def console_client(
    app: Flask, roles: list[str], departments: tuple[str, ...] = (), **kw: Any
) -> tuple[Any, str]:
    """A fresh test client signed in as a new admin; returns (client, user id)."""
    http = app.test_client()
    user_id = admin_account(app, roles, departments)
    sign_in(app, http, user_id, **kw)
    return http, user_id


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF token on the page"
    return found.group(1)


def post_form(http: Any, page: str, action: str, **form: Any) -> Any:
    """GET ``page`` for its CSRF token, then POST ``form`` to ``action``."""
    token = csrf_of(http.get(page).get_data(as_text=True))
    return http.post(action, data={"csrf_token": token, **form})

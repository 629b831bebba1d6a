"""Helpers for the MFA, step-up, lockout and policy tests (issue 5)."""

from __future__ import annotations

import re
import time
from typing import Any

import pyotp
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from idp.interaction import mfa
from idp.storage.models import SsoSession, Throttle, TotpCredential, User, utcnow
from tests.helpers import Flow, csrf_token, hidden

ACR_PWD = "urn:yitong:acr:pwd"
ACR_MFA = "urn:yitong:acr:mfa"
ACR_PHR = "urn:yitong:acr:phr"


def services(app: Flask) -> Any:
    return app.extensions["yitong"]


def set_policy(app: Flask, name: str, value: Any) -> None:
    s = services(app)
    with s.db.transaction() as session:
        s.policies.set(session, name, value, actor="test")


def enrol_totp(app: Flask, user_id: str) -> str:
    """An active TOTP credential for the user (as if enrolled earlier); returns the secret."""
    s = services(app)
    secret = mfa.new_totp_secret()
    with s.db.transaction() as session:
        session.add(
            TotpCredential(
                user_id=user_id,
                secret_ciphertext=mfa.seal_totp_secret(s.kek, user_id, secret),
                last_step=0,
                confirmed_at=utcnow(),
            )
        )
    return secret


def code(secret: str, steps: int = 0) -> str:
    """The TOTP code ``steps`` time steps from now."""
    return pyotp.TOTP(secret).at(time.time() + 30 * steps)


def other_code(secret: str, *avoid: str) -> str:
    """A 6-digit code that matches no step in the window (a wrong guess)."""
    valid = {code(secret, k) for k in (-2, -1, 0, 1, 2)} | set(avoid)
    for n in range(1_000_000):
        candidate = f"{(n * 7919) % 1_000_000:06d}"
        if candidate not in valid:
            return candidate
    raise AssertionError


def page(client: FlaskClient, resp: Any) -> str:
    """Follow a redirect and return the page."""
    assert resp.status_code in (302, 303), (resp.status_code, resp.get_data(as_text=True)[:300])
    got = client.get(resp.headers["Location"])
    assert got.status_code == 200, (got.status_code, got.get_data(as_text=True)[:500])
    return str(got.get_data(as_text=True))


def login_page_post(
    client: FlaskClient, login: str, password: str, ix: str = "", **form: Any
) -> Any:
    html = client.get("/login" + (f"?ix={ix}" if ix else "")).get_data(as_text=True)
    data = {"csrf_token": csrf_token(html), "ix": ix, "login": login, "password": password}
    data.update(form)
    return client.post("/login", data=data)


def submit(
    client: FlaskClient,
    html: str,
    method: str,
    value: str = "",
    action: str | None = None,
    **extra: Any,
) -> Any:
    """Submit one of the challenge page's forms."""
    if action is None:
        # The first form of the page's own (the header's display and language switches aside).
        m = re.search(r'<form method="post" action="([^"]+)" id="totp-form"', html) or re.search(
            r'<form method="post" action="((?!/display/|/locale/)[^"]+)"', html
        )
        assert m
        action = m.group(1).replace("&amp;", "&")
    data = {
        "csrf_token": csrf_token(html),
        "ix": hidden(html, "ix"),
        "method": method,
        "code": value,
    }
    data.update(extra)
    return client.post(action, data=data)


def password_step(flow: Flow, citizen: Any, **params: Any) -> Any:
    """Authorize and enter the password; the response to the password POST."""
    resp = flow.authorize(**params)
    assert "/login" in resp.headers["Location"], resp.headers["Location"]
    return flow.login(resp, citizen.email, citizen.password)


def to_challenge(flow: Flow, citizen: Any, **params: Any) -> str:
    resp = password_step(flow, citizen, **params)
    assert resp.status_code == 303 and "/login/mfa" in resp.headers["Location"], (
        resp.status_code,
        resp.headers.get("Location"),
        resp.get_data(as_text=True)[:300],
    )
    return page(flow.http, resp)


def session_row(app: Flask, user_id: str) -> SsoSession | None:
    with services(app).db.session() as s:
        return s.scalars(
            select(SsoSession)
            .where(SsoSession.user_id == user_id, SsoSession.ended_at.is_(None))
            .order_by(SsoSession.created_at.desc())
        ).first()


def failures(app: Flask, key: str) -> int:
    with services(app).db.session() as s:
        return int(s.scalar(select(Throttle.failures).where(Throttle.key == key)) or 0)


def make_admin(app: Flask, user_id: str, *roles: str) -> None:
    with services(app).db.transaction() as s:
        user = s.get(User, user_id)
        assert user is not None
        user.roles = list(roles)

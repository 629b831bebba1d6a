"""The consent form is CSRF-protected (issue 14 item 12a, checklist item 105).

A forged cross-site POST of ``/consent`` with ``action=approve`` would grant the attacker's
client the victim's data without the victim ever seeing the page.  Exempting the form from
CSRF protection let the whole suite pass before this file existed: every other test posts the
consent with a valid token.  Each case here asserts that the forged post is refused, that no
consent, grant or code is stored and that nothing is redirected to the client; the last test
is the positive control proving the same post with the right token does issue a code, so the
refusals are not an accident of the setup.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from idp.storage.models import AuditEvent, AuthorizationCode, Consent, Grant
from tests.helpers import Citizen, Flow, RegisteredClient, csrf_token, hidden


def _at_consent(client: Any, citizen: Citizen, rp: RegisteredClient) -> tuple[Flow, str]:
    """Sign in through /authorize until the consent page shows; return the flow and its HTML."""
    flow = Flow(client, rp)
    resp = flow.login(flow.authorize(), citizen.email, citizen.password)
    for _ in range(4):
        assert resp.status_code in (302, 303), resp.get_data(as_text=True)[:300]
        if "/consent" in resp.headers["Location"]:
            break
        resp = client.get(resp.headers["Location"])
    else:
        raise AssertionError("the flow never reached the consent page")
    page = client.get(resp.headers["Location"])
    assert page.status_code == 200
    return flow, page.get_data(as_text=True)


def _nothing_granted(app: Flask) -> None:
    with app.extensions["yitong"].db.session() as session:
        assert session.scalar(select(func.count()).select_from(Consent)) == 0
        assert session.scalar(select(func.count()).select_from(Grant)) == 0
        assert session.scalar(select(func.count()).select_from(AuthorizationCode)) == 0
        granted = select(func.count()).where(AuditEvent.action == "consent.grant")
        assert session.scalar(granted) == 0


def _token_of_another_session(app: Flask) -> str:
    """A well-formed token the attacker got from their own session: signed, but not ours."""
    return csrf_token(app.test_client().get("/login").get_data(as_text=True))


@pytest.mark.parametrize("token", ["missing", "empty", "garbage", "other-session"])
def test_item105_forged_consent_is_refused(
    app: Flask, client: Any, citizen: Citizen, rp: RegisteredClient, token: str
) -> None:
    _flow, html = _at_consent(client, citizen, rp)
    data = {"ix": hidden(html, "ix"), "action": "approve"}
    if token == "empty":
        data["csrf_token"] = ""
    elif token == "garbage":
        data["csrf_token"] = "forged"
    elif token == "other-session":
        data["csrf_token"] = _token_of_another_session(app)
    resp = client.post("/consent", data=data, headers={"Origin": "https://evil.example"})
    assert resp.status_code == 400, (resp.status_code, resp.headers.get("Location"))
    assert "Location" not in resp.headers
    _nothing_granted(app)


def test_consent_with_its_token_issues_a_code(
    app: Flask, client: Any, citizen: Citizen, rp: RegisteredClient
) -> None:
    """Positive control: the refused posts above differ from this one only in the token."""
    flow, html = _at_consent(client, citizen, rp)
    resp = client.post(
        "/consent",
        data={"csrf_token": csrf_token(html), "ix": hidden(html, "ix"), "action": "approve"},
    )
    params = flow.follow_to_code(resp)
    assert params["state"] == flow.state and params["code"]
    with app.extensions["yitong"].db.session() as session:
        assert session.scalar(select(func.count()).select_from(Consent)) == 1

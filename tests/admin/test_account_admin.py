"""Disabling an account or terminating its sessions ends everything, and clients hear of it
(checklist 42, 67; ASVS 7.4.2, 7.4.5)."""

from __future__ import annotations

from click.testing import CliRunner
from sqlalchemy import select

from idp.storage.models import LogoutDelivery, SsoSession, User
from tests.helpers import Citizen, Flow, RegisteredClient, admin_token, bearer


def signed_in(app, citizen, scope="openid profile offline_access", **client_extra):
    client = app.test_client()
    rp = RegisteredClient.create(app, **client_extra)
    flow = Flow(client, rp, scope=scope)
    tokens = flow.token(flow.run(citizen)["code"]).get_json()
    return client, rp, tokens


def test_terminate_sessions_ends_session_bound_tokens_and_notifies(app):
    citizen = Citizen.create(app)
    client, rp, tokens = signed_in(
        app, citizen, scope="openid profile", backchannel_logout_uri="https://c1.gov.example/bcl"
    )
    admin, _ = admin_token(app, roles=["security-admin"])
    resp = client.delete(f"/admin/api/users/{citizen.id}/sessions", headers=bearer(admin))
    assert resp.status_code == 200 and resp.get_json()["backchannel_logouts"] == 1
    assert client.get("/account").status_code == 302  # the browser session is gone
    userinfo = client.get("/userinfo", headers=bearer(tokens["access_token"]))
    assert userinfo.status_code == 401
    with app.extensions["yitong"].db.session() as session:
        row = session.scalars(select(LogoutDelivery)).one()
        assert row.client_id == rp.client_id and row.uri == "https://c1.gov.example/bcl"
        assert all(s.ended_at is not None for s in session.scalars(select(SsoSession)))


def test_disable_revokes_offline_tokens_too(app):
    citizen = Citizen.create(app)
    client, rp, tokens = signed_in(app, citizen)
    admin, _ = admin_token(app, roles=["security-admin"])
    assert (
        client.post(f"/admin/api/users/{citizen.id}/disable", headers=bearer(admin)).status_code
        == 200
    )
    refreshed = client.post(
        "/token",
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        headers=rp.basic(),
    )
    assert refreshed.status_code == 400 and refreshed.get_json()["error"] == "invalid_grant"
    assert client.get("/userinfo", headers=bearer(tokens["access_token"])).status_code == 401


def test_admin_account_endpoints_need_the_role_and_a_real_account(app, client):
    weak, _ = admin_token(app, roles=["client-admin"])
    assert client.post("/admin/api/users/x/disable", headers=bearer(weak)).status_code == 403
    admin, _ = admin_token(app, roles=["security-admin"])
    resp = client.post("/admin/api/users/nobody/disable", headers=bearer(admin))
    assert resp.status_code == 404 and resp.get_json()["error"] == "invalid_request"


def test_cli_disable(app, database_url, instance_dir, monkeypatch):
    from idp.cli import main
    from tests.helpers import TEST_KEK

    citizen = Citizen.create(app)
    env = {
        "YITONG_ENV": "testing",
        "YITONG_ISSUER": "http://localhost",
        "YITONG_DATABASE_URL": database_url,
        "YITONG_INSTANCE_DIR": str(instance_dir),
        "YITONG_KEY_ENCRYPTION_KEY": TEST_KEK,
        "YITONG_SECRET_KEY": app.config["SECRET_KEY"],
    }
    runner = CliRunner()
    result = runner.invoke(main, ["users", "disable", citizen.id], env=env)
    assert result.exit_code == 0, result.output
    with app.extensions["yitong"].db.session() as session:
        assert session.get(User, citizen.id).status == "disabled"
    result = runner.invoke(main, ["users", "disable", "nobody"], env=env)
    assert result.exit_code == 2 and "no account" in result.output

"""Department directories added through the admin API (issue 6 item 1, 6), against real slapd."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from idp.storage.models import AuditEvent, DirectoryConfig
from tests.helpers import Flow, RegisteredClient, admin_token, bearer
from tests.services.slapd import SERVICE_PASSWORD, hrss_table, nr_table

pytestmark = pytest.mark.slapd


def test_added_directory_is_usable_for_login_at_once(client, app, slapd_nr):
    token, actor = admin_token(app, roles=["security-admin"])
    resp = client.put("/admin/api/directories/nr", json=nr_table(slapd_nr), headers=bearer(token))
    assert resp.status_code == 200, resp.get_json()
    flow = Flow(client, RegisteredClient.create(app))
    params = flow.follow_to_code(
        flow.login(flow.authorize(), "zhao.lei@nr.ln.gov.example@nr", "Zl-2017-secret!")
    )
    assert "code" in params
    listed = client.get("/admin/api/directories", headers=bearer(token)).get_json()
    assert [d["id"] for d in listed] == ["nr"] and listed[0]["source"] == "admin_api"
    with app.extensions["yitong"].db.session() as session:
        event = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "directory.create")
        ).one()
        assert event.actor == actor and event.target == "nr"


def test_bind_password_is_sealed_and_never_returned(client, app, slapd_hrss, ldap_test_ca):
    token, _ = admin_token(app, roles=["security-admin"])
    resp = client.put(
        "/admin/api/directories/hrss2",
        json=hrss_table(slapd_hrss, ldap_test_ca),
        headers=bearer(token),
    )
    assert resp.status_code == 200, resp.get_json()
    assert SERVICE_PASSWORD not in resp.get_data(as_text=True)
    listed = client.get("/admin/api/directories", headers=bearer(token)).get_data(as_text=True)
    assert SERVICE_PASSWORD not in listed and "bind_password" not in listed
    with app.extensions["yitong"].db.session() as session:
        row = session.get(DirectoryConfig, "hrss2")
        assert SERVICE_PASSWORD not in str(row.config)
        events = session.scalars(select(AuditEvent).where(AuditEvent.target == "hrss2")).all()
        assert events and all(SERVICE_PASSWORD not in str(e.details) for e in events)
    # The sealed password works: a staff login binds with the service account.
    flow = Flow(client, RegisteredClient.create(app))
    params = flow.follow_to_code(flow.login(flow.authorize(), "wang.fang@hrss2", "Wf-2017-secret!"))
    assert "code" in params


@pytest.mark.parametrize(
    ("directory_id", "body", "fragment"),
    [
        ("Bad Id", {"display_name": "x"}, "directory id"),
        (
            "plain",
            {
                "display_name": "x",
                "urls": ["ldap://127.0.0.1:1"],
                "user_base": "dc=x",
                "login_attribute": "uid",
            },
            "ldaps://",
        ),
        ("nourl", {"display_name": "x", "user_base": "dc=x"}, "urls"),
    ],
)
def test_invalid_directory_tables_are_refused_with_the_key(
    client, app, directory_id, body, fragment
):
    token, _ = admin_token(app, roles=["security-admin"])
    resp = client.put(f"/admin/api/directories/{directory_id}", json=body, headers=bearer(token))
    assert resp.status_code == 400
    assert fragment in resp.get_json()["error_description"]


def test_settings_file_directories_cannot_be_replaced_or_deleted(make_app, slapd_nr):
    app = make_app(directories={"nr": nr_table(slapd_nr)})
    client = app.test_client()
    token, _ = admin_token(app, roles=["security-admin"])
    assert (
        client.put(
            "/admin/api/directories/nr", json=nr_table(slapd_nr), headers=bearer(token)
        ).status_code
        == 409
    )
    assert client.delete("/admin/api/directories/nr", headers=bearer(token)).status_code == 404


def test_deleted_directory_stops_logins(client, app, slapd_nr):
    token, _ = admin_token(app, roles=["security-admin"])
    assert (
        client.put(
            "/admin/api/directories/nr", json=nr_table(slapd_nr), headers=bearer(token)
        ).status_code
        == 200
    )
    assert client.delete("/admin/api/directories/nr", headers=bearer(token)).status_code == 200
    flow = Flow(client, RegisteredClient.create(app))
    resp = flow.login(flow.authorize(), "zhao.lei@nr.ln.gov.example@nr", "Zl-2017-secret!")
    assert resp.status_code == 401

"""Staff accounts bridged from department directories: upsert at login, sync, the CLI.

Real slapd servers (tests/services/slapd.py) and the run's real database; checklist items
91 (namespaces) and 92 (directory-side state ends IdP sessions and tokens).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any

import ldap3
import pytest
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import select

from adapters.base import AdapterUnavailable, Identity
from adapters.ldap import LdapDirectory
from idp import audit
from idp.accounts.staff import sync_directory, upsert_staff
from idp.cli.ldap import ldap as ldap_cli
from idp.storage.models import AuditEvent, Grant, SsoSession, Token, User, utcnow
from idp.storage.repo import digest, new_id, query_token
from tests.helpers import Citizen, Flow, RegisteredClient
from tests.services.slapd import (
    HRSS,
    NR,
    LdapTestCA,
    Slapd,
    hrss_table,
    hrss_tree,
    nr_table,
)

pytestmark = pytest.mark.slapd


def services_of(app: Flask) -> Any:
    return app.extensions["yitong"]


def login(app: Flask, directory_id: str, username: str, password: str) -> User:
    """What the login page does: authenticate at the directory, then upsert the account."""
    services = services_of(app)
    identity = services.directories[directory_id].authenticate(username, password)
    with services.db.transaction() as session:
        user = upsert_staff(session, identity)
        session.expunge(user)
    return user


def user_row(app: Flask, user_id: str) -> User:
    with services_of(app).db.transaction() as session:
        user = session.get(User, user_id)
        assert user is not None
        session.expunge(user)
        return user


def give_tokens(app: Flask, user_id: str, client_id: str) -> dict[str, str]:
    """An SSO session, a grant and an access + refresh token for the user."""
    later = utcnow() + dt.timedelta(hours=1)
    ids = {"sid": new_id(), "grant": new_id(), "at": new_id(), "rt": new_id()}
    with services_of(app).db.transaction() as session:
        session.add(
            SsoSession(
                id=ids["sid"], token_digest=digest(ids["sid"]), user_id=user_id, expires_at=later
            )
        )
        session.add(
            Grant(
                id=ids["grant"],
                user_id=user_id,
                client_id=client_id,
                sid=ids["sid"],
                expires_at=later,
            )
        )
        session.flush()
        for kind in ("at", "rt"):
            session.add(
                Token(
                    id=ids[kind],
                    digest=digest(ids[kind]),
                    grant_id=ids["grant"],
                    kind="access" if kind == "at" else "refresh",
                    client_id=client_id,
                    user_id=user_id,
                    expires_at=later,
                )
            )
    return ids


def live(app: Flask, ids: dict[str, str]) -> dict[str, bool]:
    with services_of(app).db.transaction() as session:
        return {
            "session": session.get(SsoSession, ids["sid"]).ended_at is None,  # type: ignore[union-attr]
            "grant": session.get(Grant, ids["grant"]).revoked_at is None,  # type: ignore[union-attr]
            "access": session.get(Token, ids["at"]).revoked_at is None,  # type: ignore[union-attr]
            "refresh": session.get(Token, ids["rt"]).revoked_at is None,  # type: ignore[union-attr]
        }


def actions(app: Flask) -> list[tuple[str, str | None, str]]:
    with services_of(app).db.transaction() as session:
        return [
            (e.action, e.target, e.outcome)
            for e in session.scalars(select(AuditEvent).order_by(AuditEvent.seq))
        ]


# ----------------------------------------------------------------------------- checklist 91
def test_checklist_91_same_uid_in_two_departments_is_two_people(
    make_app: Callable[..., Flask], slapd_hrss: Slapd, slapd_nr: Slapd, ldap_test_ca: LdapTestCA
) -> None:
    app = make_app(
        directories={
            "hrss": hrss_table(slapd_hrss, ldap_test_ca),
            "nr": nr_table(slapd_nr, login_attribute="uid"),
        }
    )
    a = login(app, "hrss", "jdoe", "Jd-hrss-secret!")
    b = login(app, "nr", "jdoe", "Jd-nr-secret!")
    assert a.id != b.id
    assert (a.directory_id, b.directory_id) == ("hrss", "nr")
    assert a.directory_key != b.directory_key
    for user in (a, b):
        assert user.kind == "staff"
        assert re.fullmatch(r"[0-9a-f]{32}", user.id)  # random, nothing derived from "jdoe"
        assert user.email is None and user.phone is None  # never a citizen's login identifier
        assert user.attributes["preferred_username"] == "jdoe"
    assert a.attributes["email"] == "jdoe@hrss.ln.gov.example"
    # A citizen using the same e-mail address as staff jdoe collides with neither.
    citizen = Citizen.create(app)
    with services_of(app).db.transaction() as session:
        row = session.get(User, citizen.id)
        assert row is not None
        row.email = "jdoe@hrss.ln.gov.example"
    assert len({a.id, b.id, citizen.id}) == 3
    # The second login finds the same accounts again.
    assert login(app, "hrss", "jdoe", "Jd-hrss-secret!").id == a.id
    assert login(app, "nr", "jdoe", "Jd-nr-secret!").id == b.id
    assert [x[0] for x in actions(app)].count("staff.created") == 2


def test_login_refreshes_attributes_groups_and_roles(
    make_app: Callable[..., Flask], make_slapd: Callable[..., Slapd], ldap_test_ca: LdapTestCA
) -> None:
    server = make_slapd("hrss-refresh", hrss_tree(), tls=True)
    app = make_app(directories={"hrss": hrss_table(server, ldap_test_ca)})
    li = login(app, "hrss", "li.wei", "Lw-2017-secret!")
    assert li.groups == ["it-admins"] and li.roles == ["department_admin"]
    with services_of(app).db.transaction() as session:  # an admin grants a local role
        row = session.get(User, li.id)
        assert row is not None
        row.roles = [*row.roles, "auditor"]

    admin = server.admin("hrss")
    assert isinstance(admin, ldap3.Connection)
    dn = f"uid=li.wei,ou=people,{HRSS}"
    other = f"uid=jdoe,ou=people,{HRSS}"  # groupOfNames needs at least one member
    assert admin.modify(
        f"cn=it-admins,ou=groups,{HRSS}", {"member": [(ldap3.MODIFY_REPLACE, [other])]}
    )
    assert admin.modify(
        f"cn=case-officers,ou=groups,{HRSS}", {"member": [(ldap3.MODIFY_ADD, [dn])]}
    )
    assert admin.modify(
        dn,
        {
            "mail": [(ldap3.MODIFY_REPLACE, ["wei.li@hrss.ln.gov.example"])],
            "title": [(ldap3.MODIFY_ADD, ["科员"])],
        },
    )
    admin.unbind()

    again = login(app, "hrss", "li.wei", "Lw-2017-secret!")
    assert again.id == li.id
    assert again.groups == ["case-officers"]
    assert again.roles == ["auditor"]  # directory role gone, local role kept
    assert again.attributes["email"] == "wei.li@hrss.ln.gov.example"
    assert again.attributes["title"] == "科员"
    changes = [a for a in actions(app) if a[0] == "staff.roles_changed"]
    assert len(changes) == 2  # granted at the first login, taken away at this one


def test_disabled_staff_account_stays_disabled_at_login(
    make_app: Callable[..., Flask], slapd_hrss: Slapd, ldap_test_ca: LdapTestCA
) -> None:
    app = make_app(directories={"hrss": hrss_table(slapd_hrss, ldap_test_ca)})
    user = login(app, "hrss", "o'brien", "Ob-2017-secret!")
    with services_of(app).db.transaction() as session:
        row = session.get(User, user.id)
        assert row is not None
        row.status = "disabled"
    again = login(app, "hrss", "o'brien", "Ob-2017-secret!")
    assert again.id == user.id and not again.is_active


def test_upsert_needs_a_namespaced_key(make_app: Callable[..., Flask]) -> None:
    app = make_app()
    with services_of(app).db.transaction() as session, pytest.raises(ValueError):
        upsert_staff(session, Identity(source="hrss", key="", username="x", name="x"))


# ----------------------------------------------------------------------------- checklist 92
def test_checklist_92_sync_disables_gone_and_disabled_entries_and_ends_everything(
    make_app: Callable[..., Flask], make_slapd: Callable[..., Slapd], ldap_test_ca: LdapTestCA
) -> None:
    server = make_slapd("hrss-sync", hrss_tree(), tls=True)
    app = make_app(directories={"hrss": hrss_table(server, ldap_test_ca, page_size=2)})
    rp = RegisteredClient.create(app)
    wang = login(app, "hrss", "wang.fang", "Wf-2017-secret!")
    obrien = login(app, "hrss", "o'brien", "Ob-2017-secret!")
    li = login(app, "hrss", "li.wei", "Lw-2017-secret!")
    tokens = {u.id: give_tokens(app, u.id, rp.client_id) for u in (wang, obrien, li)}

    admin = server.admin("hrss")
    assert isinstance(admin, ldap3.Connection)
    assert admin.delete(f"uid=wang.fang,ou=people,{HRSS}")
    assert admin.modify(
        f"uid=o'brien,ou=people,{HRSS}", {"description": [(ldap3.MODIFY_ADD, ["account disabled"])]}
    )
    admin.unbind()

    report = sync_directory(services_of(app), services_of(app).directories["hrss"])
    assert report.aborted is None
    assert report.disabled_gone == [wang.id]
    assert report.disabled_by_directory == [obrien.id]
    assert report.staff_checked == 3
    assert (report.sessions_ended, report.grants_revoked, report.tokens_revoked) == (2, 2, 4)

    assert not user_row(app, wang.id).is_active
    assert not user_row(app, obrien.id).is_active
    assert user_row(app, li.id).is_active
    assert live(app, tokens[wang.id]) == dict.fromkeys(
        ("session", "grant", "access", "refresh"), False
    )
    assert live(app, tokens[obrien.id]) == dict.fromkeys(
        ("session", "grant", "access", "refresh"), False
    )
    assert live(app, tokens[li.id]) == dict.fromkeys(
        ("session", "grant", "access", "refresh"), True
    )
    with services_of(app).db.transaction() as session:
        grant = session.get(Grant, tokens[wang.id]["grant"])
        assert grant is not None and grant.revoked_reason == "directory_sync"
        # Sync never imports: jdoe and disabled.user never logged in and do not exist.
        staff = session.scalars(select(User.id).where(User.kind == "staff")).all()
        assert sorted(staff) == sorted([wang.id, obrien.id, li.id])
        assert audit.verify(session).ok
    log = actions(app)
    assert ("staff.disabled", wang.id, "success") in log
    assert ("staff.disabled", obrien.id, "success") in log
    assert log[-1] == ("directory.sync", "hrss", "success")

    # A second run finds nothing more to do.
    again = sync_directory(services_of(app), services_of(app).directories["hrss"])
    assert again.disabled == [] and again.staff_checked == 1


def test_sync_follows_a_renamed_entry(
    make_app: Callable[..., Flask], make_slapd: Callable[..., Slapd], ldap_test_ca: LdapTestCA
) -> None:
    server = make_slapd("hrss-rename", hrss_tree(), tls=True)
    app = make_app(directories={"hrss": hrss_table(server, ldap_test_ca)})
    li = login(app, "hrss", "li.wei", "Lw-2017-secret!")
    admin = server.admin("hrss")
    assert isinstance(admin, ldap3.Connection)
    assert admin.modify_dn(f"uid=li.wei,ou=people,{HRSS}", "uid=wei.li")
    admin.unbind()
    report = sync_directory(services_of(app), services_of(app).directories["hrss"])
    assert report.disabled == [] and report.dn_updated == 1
    row = user_row(app, li.id)
    assert row.is_active and row.directory_dn == f"uid=wei.li,ou=people,{HRSS}"
    # Same entryUUID, so logging in under the new name is the same account.
    assert login(app, "hrss", "wei.li", "Lw-2017-secret!").id == li.id


def test_sync_refuses_a_listing_that_looks_wrong(
    make_app: Callable[..., Flask], slapd_hrss: Slapd, ldap_test_ca: LdapTestCA
) -> None:
    app = make_app(directories={"hrss": hrss_table(slapd_hrss, ldap_test_ca)})
    wang = login(app, "hrss", "wang.fang", "Wf-2017-secret!")
    # The same directory with a filter that matches nobody (a typo, an ACL change...).
    broken = LdapDirectory(
        services_of(app)
        .directories["hrss"]
        .config.__class__.from_mapping(
            "hrss", hrss_table(slapd_hrss, ldap_test_ca, user_filter="(objectClass=nobody)")
        )
    )
    report = sync_directory(services_of(app), broken)
    assert report.aborted is not None and "--force" in report.aborted
    assert user_row(app, wang.id).is_active
    assert actions(app)[-1] == ("directory.sync", "hrss", "failure")
    forced = sync_directory(services_of(app), broken, force=True)
    assert forced.disabled_gone == [wang.id]
    broken.close()


def test_sync_with_the_directory_down_changes_nothing(
    make_app: Callable[..., Flask], make_slapd: Callable[..., Slapd], ldap_test_ca: LdapTestCA
) -> None:
    server = make_slapd("hrss-down", hrss_tree(), tls=True)
    app = make_app(directories={"hrss": hrss_table(server, ldap_test_ca)})
    wang = login(app, "hrss", "wang.fang", "Wf-2017-secret!")
    server.stop()
    with pytest.raises(AdapterUnavailable):
        sync_directory(services_of(app), services_of(app).directories["hrss"])
    assert user_row(app, wang.id).is_active
    assert actions(app)[-1] == ("directory.sync", "hrss", "failure")


def test_checklist_92_end_to_end_leaver_loses_tokens(
    make_app: Callable[..., Flask], make_slapd: Callable[..., Slapd], ldap_test_ca: LdapTestCA
) -> None:
    """Through the real login page (``uid@department``), token and userinfo endpoints."""
    server = make_slapd("hrss-e2e", hrss_tree(), tls=True)
    app = make_app(directories={"hrss": hrss_table(server, ldap_test_ca)})
    rp = RegisteredClient.create(app)
    flow = Flow(app.test_client(), rp, scope="openid profile offline_access")
    resp = flow.login(flow.authorize(prompt="consent"), "wang.fang@hrss", "Wf-2017-secret!")
    tokens = flow.token(flow.follow_to_code(resp)["code"])
    assert tokens.status_code == 200, tokens.get_data(as_text=True)
    issued = tokens.get_json()
    bearer = {"Authorization": f"Bearer {issued['access_token']}"}
    assert flow.http.get("/userinfo", headers=bearer).status_code == 200

    admin = server.admin("hrss")
    assert isinstance(admin, ldap3.Connection)
    assert admin.delete(f"uid=wang.fang,ou=people,{HRSS}")
    admin.unbind()
    report = sync_directory(services_of(app), services_of(app).directories["hrss"])
    assert len(report.disabled_gone) == 1 and report.sessions_ended == 1

    assert flow.http.get("/userinfo", headers=bearer).status_code == 401
    with services_of(app).db.transaction() as session:
        for raw in (issued["access_token"], issued.get("refresh_token")):
            if raw:
                row = query_token(session, raw)
                assert row is not None and row.revoked_at is not None
    # And the directory itself now refuses the leaver at the login page.
    flow2 = Flow(app.test_client(), rp)
    page = flow2.login(flow2.authorize(), "wang.fang@hrss", "Wf-2017-secret!")
    assert page.status_code == 401 and "Location" not in page.headers


# ----------------------------------------------------------------------------- CLI
def test_cli_list_test_and_sync(
    make_app: Callable[..., Flask], slapd_hrss: Slapd, slapd_nr: Slapd, ldap_test_ca: LdapTestCA
) -> None:
    app = make_app(
        directories={
            "hrss": hrss_table(slapd_hrss, ldap_test_ca),
            "nr": nr_table(slapd_nr),
            "wrongca": hrss_table(
                slapd_hrss, ldap_test_ca, ca_file=str(ldap_test_ca.other_ca_file)
            ),
        }
    )
    runner = CliRunner()
    obj = {"services": services_of(app)}

    listed = runner.invoke(ldap_cli, ["list"], obj=obj)
    assert listed.exit_code == 0, listed.output
    assert "hrss  人力资源和社会保障厅" in listed.output
    assert f"{slapd_hrss.ldaps_url}  [closed]" in listed.output

    tested = runner.invoke(ldap_cli, ["test", "hrss"], obj=obj)
    assert tested.exit_code == 0, tested.output
    assert "[ok  ] tls: ldaps: TLS" in tested.output and "commonName=localhost" in tested.output
    assert f"[ok  ] service bind: bound as dn:cn=yitong-reader,{HRSS}" in tested.output
    assert f"uid=wang.fang,ou=people,{HRSS}" in tested.output

    tested_nr = runner.invoke(ldap_cli, ["test", "nr"], obj=obj)
    assert tested_nr.exit_code == 0, tested_nr.output
    assert "anonymous search" in tested_nr.output and f"ou=survey,ou=staff,{NR}" in tested_nr.output

    bad = runner.invoke(ldap_cli, ["test", "wrongca"], obj=obj)
    assert bad.exit_code == 1
    assert "[FAIL] connect" in bad.output and "certificate verify failed" in bad.output

    unknown = runner.invoke(ldap_cli, ["test", "nope"], obj=obj)
    assert unknown.exit_code == 2 and "no directory 'nope'" in unknown.output

    login(app, "hrss", "wang.fang", "Wf-2017-secret!")
    synced = runner.invoke(ldap_cli, ["sync", "hrss"], obj=obj)
    assert synced.exit_code == 0, synced.output
    assert "hrss: 5 entries listed (1 disabled there); 1 staff checked" in synced.output


def test_staff_claims_come_from_the_directory(
    make_app: Callable[..., Flask], slapd_hrss: Slapd, ldap_test_ca: LdapTestCA
) -> None:
    """Directory attributes become claims per scope; citizens' unique columns stay untouched."""
    from tests.helpers import Flow, RegisteredClient

    app = make_app(directories={"hrss": hrss_table(slapd_hrss, ldap_test_ca)})
    client = app.test_client()
    rp = RegisteredClient.create(
        app, scopes=["openid", "profile", "email", "phone", "groups", "staff"]
    )
    flow = Flow(client, rp, scope="openid profile email groups staff")
    params = flow.follow_to_code(flow.login(flow.authorize(), "wang.fang@hrss", "Wf-2017-secret!"))
    body = flow.token(params["code"]).get_json()
    info = client.get(
        "/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"}
    ).get_json()
    assert info["name"] == "王芳"
    assert info["preferred_username"] == "wang.fang"
    assert info["email"] == "wang.fang@hrss.ln.gov.example" and info["email_verified"] is True
    assert info["department"] == "hrss" and info["employee_number"] == "HRSS-0001"
    assert "case-officers" in info["groups"]
    assert "phone_number" not in info  # the phone scope was not asked for

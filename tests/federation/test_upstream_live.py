"""Upstream federation (issue 13 item 3) against a second Yitong instance acting as the
national platform: linking by verified identity number with consent, the level carried
over and never raised, upstream back-channel logout, state mismatch, refusal, outage."""

from __future__ import annotations

import re
from typing import Any

import pytest
import requests
from sqlalchemy import select

from idp.accounts.people import NewCitizen, register_citizen
from idp.accounts.privacy import mask
from idp.storage.models import AuditEvent, SsoSession, UpstreamLink, User
from tests.federation.conftest import CALLBACK, Bound, National
from tests.helpers import IDS, Citizen
from tests.oauth.test_rp_pyoidc import browse_to_code

pytestmark = pytest.mark.slow


def _field(html: str, name: str) -> str:
    m = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert m, f"no field {name} in {html[:300]}"
    return m.group(1).replace("&amp;", "&")


def _upstream_login(
    nat: National, ours: requests.Session, theirs: requests.Session, person: Citizen, ix: str = ""
) -> requests.Response:
    """Start at our button, sign in at the national platform, land back on our callback."""
    start = ours.get(
        nat.here.url + "/federation/upstream/start",
        params={"ix": ix} if ix else None,
        allow_redirects=False,
    )
    assert start.status_code == 302, start.text[:300]
    assert start.headers["Location"].startswith(nat.up.url + "/authorize?")
    query = browse_to_code(theirs, start.headers["Location"], person, nat.here.url + CALLBACK)
    return ours.get(nat.here.url + CALLBACK + "?" + query, allow_redirects=False)


def _live_sessions(nat: National, user_id: str) -> list[SsoSession]:
    with nat.ours.extensions["yitong"].db.session() as session:
        return list(
            session.scalars(
                select(SsoSession).where(
                    SsoSession.user_id == user_id, SsoSession.ended_at.is_(None)
                )
            )
        )


def test_link_with_consent_then_single_sign_on_and_upstream_logout(national: National) -> None:
    nat = national
    upstream_person, local = nat.person(3)
    ours, theirs = nat.browsers()
    # The login page offers the national platform (its own included template).
    page = ours.get(nat.here.url + "/login")
    assert 'id="upstream-login-button"' in page.text

    consent = _upstream_login(nat, ours, theirs, upstream_person)
    assert consent.status_code == 200 and 'id="link-form"' in consent.text
    assert mask(local.id_number) in consent.text and local.id_number not in consent.text
    assert _live_sessions(nat, local.id) == []  # nothing happens before the person agrees
    linked = ours.post(
        nat.here.url + "/federation/upstream/link",
        data={"csrf_token": _field(consent.text, "csrf_token"), "action": "link"},
        allow_redirects=False,
    )
    assert linked.status_code == 303 and linked.headers["Location"].endswith("/account")
    [sso] = _live_sessions(nat, local.id)
    # The level is what the upstream asserted (a password there), mapped, never more.
    assert sso.acr == "urn:yitong:acr:pwd" and sso.amr == ["fed"]
    with nat.ours.extensions["yitong"].db.session() as session:
        [link] = session.scalars(select(UpstreamLink)).all()
        assert link.user_id == local.id and link.issuer == nat.up.url
        actions = set(session.scalars(select(AuditEvent.action)))
    assert {"upstream.link", "upstream.login"} <= actions
    # A replayed link form links nothing twice.
    again = ours.post(
        nat.here.url + "/federation/upstream/link",
        data={"csrf_token": _field(consent.text, "csrf_token"), "action": "link"},
        allow_redirects=False,
    )
    assert again.status_code == 400

    # Next time: linked, so straight in (single sign-on upstream: no password there either).
    fresh = requests.Session()
    back = _upstream_login(nat, fresh, theirs, upstream_person)
    assert back.status_code == 303 and len(_live_sessions(nat, local.id)) == 2

    # Signing out at the national platform ends our sessions of that upstream session.
    confirm = theirs.get(nat.up.url + "/logout")
    theirs.post(
        nat.up.url + "/logout",
        data={"csrf_token": _field(confirm.text, "csrf_token"), "lr": _field(confirm.text, "lr")},
    )
    nat.upstream.extensions["yitong"].logout.wait()
    assert _live_sessions(nat, local.id) == []
    with nat.ours.extensions["yitong"].db.session() as session:
        events = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "upstream.logout")
        ).all()
    assert events and events[-1].details["sessions"] == 2


def test_refusing_consent_links_nothing(national: National) -> None:
    nat = national
    upstream_person, local = nat.person(4)
    ours, theirs = nat.browsers()
    consent = _upstream_login(nat, ours, theirs, upstream_person)
    refused = ours.post(
        nat.here.url + "/federation/upstream/link",
        data={"csrf_token": _field(consent.text, "csrf_token"), "action": "cancel"},
    )
    assert refused.status_code == 200 and 'id="local-login"' in refused.text
    assert _live_sessions(nat, local.id) == []
    with nat.ours.extensions["yitong"].db.session() as session:
        assert session.scalars(select(UpstreamLink)).all() == []
        refusals = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "upstream.link.refused")
        ).all()
    assert len(refusals) == 1


def test_never_linked_by_email_and_never_without_a_verified_number(national: National) -> None:
    nat = national
    # Upstream: verified person A.  Here: someone else with A's e-mail (another ID number).
    upstream_person = Citizen.create(nat.upstream, index=5)
    services = nat.upstream.extensions["yitong"]
    with services.db.transaction() as session:
        from idp.accounts.assurance import record_verification

        user = session.get(User, upstream_person.id)
        assert user is not None
        record_verification(session, user, "L3", "registry", verifier="test")
    ours_services = nat.ours.extensions["yitong"]
    with ours_services.db.transaction() as session:
        register_citizen(
            session,
            NewCitizen(
                name="李四",
                id_number=IDS["resident_ids"][6],
                phone="13900000006",
                email=upstream_person.email,
                password=upstream_person.password,
            ),
            vault=ours_services.vault,
            passwords=ours_services.passwords,
        )
    ours, theirs = nat.browsers()
    answer = _upstream_login(nat, ours, theirs, upstream_person)
    assert (
        answer.status_code == 403 and "No Yitong account" in answer.text
    ) or "没有" in answer.text
    with ours_services.db.session() as session:
        assert session.scalars(select(UpstreamLink)).all() == []

    # A number the upstream did not verify (self-declared, L2) links nothing either.
    unverified = Citizen.create(nat.upstream, index=7)
    Citizen.create(nat.ours, index=7)
    ours, theirs = nat.browsers()
    answer = _upstream_login(nat, ours, theirs, unverified)
    assert answer.status_code == 403 and 'id="upstream-message"' in answer.text
    with ours_services.db.session() as session:
        assert session.scalars(select(UpstreamLink)).all() == []


def test_state_mismatch_and_missing_state_are_refused(national: National) -> None:
    nat = national
    upstream_person, local = nat.person(8)
    ours, theirs = nat.browsers()
    start = ours.get(nat.here.url + "/federation/upstream/start", allow_redirects=False)
    query = browse_to_code(
        theirs, start.headers["Location"], upstream_person, nat.here.url + CALLBACK
    )
    forged = re.sub(r"state=[^&]+", "state=forged", query)
    refused = ours.get(nat.here.url + CALLBACK + "?" + forged, allow_redirects=False)
    assert refused.status_code == 400 and "access_denied" in refused.text
    # Another browser (no login in progress) presenting the real answer: refused too.
    stranger = requests.Session()
    assert stranger.get(nat.here.url + CALLBACK + "?" + query).status_code == 400
    # And the real browser's attempt was spent by the forged one.
    assert ours.get(nat.here.url + CALLBACK + "?" + query).status_code == 400
    assert _live_sessions(nat, local.id) == []


def test_upstream_outage_gives_a_page_and_local_login_keeps_working(
    national: National, make_app: Any
) -> None:
    nat = national
    dead = Bound()  # an address where the national platform is down
    dead.stop()
    ours = make_app(
        issuer=nat.here.url,
        upstream_issuer=dead.url,
        upstream_client_id=nat.rp.client_id,
        upstream_client_secret=nat.rp.secret,
        outbound_test_allowlist=(dead.host,),
    )
    nat.here.serve(ours)
    local = Citizen.create(ours, index=9)
    browser = requests.Session()
    down = browser.get(nat.here.url + "/federation/upstream/start")
    assert down.status_code == 503
    assert "国家政务服务平台暂时无法访问" in down.text
    assert 'id="local-login"' in down.text
    page = browser.get(nat.here.url + "/login")
    assert 'id="upstream-login-button"' in page.text
    done = browser.post(
        nat.here.url + "/login",
        data={
            "csrf_token": _field(page.text, "csrf_token"),
            "ix": "",
            "login": local.email,
            "password": local.password,
            "action": "login",
        },
        allow_redirects=False,
    )
    assert done.status_code == 303
    with ours.extensions["yitong"].db.session() as session:
        assert session.scalars(
            select(SsoSession).where(SsoSession.user_id == local.id, SsoSession.ended_at.is_(None))
        ).all()


def test_backchannel_logout_endpoint_refuses_bad_tokens(national: National) -> None:
    nat = national
    url = nat.here.url + "/federation/upstream/backchannel-logout"
    for form in ({}, {"logout_token": "x.y.z"}, {"logout_token": "not a jwt"}):
        resp = requests.post(url, data=form)
        assert resp.status_code == 400 and resp.json()["error"] == "invalid_request"
    # An ID token of the upstream (signed by it, but not a logout token) is refused.
    key = nat.upstream.extensions["yitong"].keys.signing_key("RS256")
    id_token = key.sign_jwt({"iss": nat.up.url, "aud": nat.rp.client_id, "sub": "x", "iat": 1})
    resp = requests.post(url, data={"logout_token": id_token})
    assert resp.status_code == 400


def test_federated_login_in_the_middle_of_an_authorization_request(national: National) -> None:
    """A relying party of ours asks for a login; the person uses the national platform
    button on our login page; the authorization request continues (the ``ix`` survives)."""
    from tests.helpers import RegisteredClient, pkce_pair

    nat = national
    upstream_person, local = nat.person(10)
    rp = RegisteredClient.create(nat.ours, redirect_uris=["https://rp.gov.example/cb"])
    _verifier, challenge = pkce_pair()
    ours, theirs = nat.browsers()
    authorize = ours.get(
        nat.here.url + "/authorize",
        params={
            "response_type": "code",
            "client_id": rp.client_id,
            "redirect_uri": rp.redirect_uri,
            "scope": "openid profile",
            "state": "rp-state",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        },
    )
    assert 'id="upstream-login-button"' in authorize.text
    ix = _field(authorize.text, "ix")
    consent = _upstream_login(nat, ours, theirs, upstream_person, ix=ix)
    linked = ours.post(
        nat.here.url + "/federation/upstream/link",
        data={"csrf_token": _field(consent.text, "csrf_token"), "action": "link"},
        allow_redirects=False,
    )
    assert "/authorize/resume?ix=" in linked.headers["Location"]
    page = ours.get(nat.here.url + linked.headers["Location"])  # to our consent page
    if 'id="consent-form"' in page.text:  # our own consent for the relying party
        page = ours.post(
            nat.here.url + "/consent",
            data={
                "csrf_token": _field(page.text, "csrf_token"),
                "ix": _field(page.text, "ix"),
                "action": "approve",
            },
            allow_redirects=False,
        )
    assert page.headers["Location"].startswith(rp.redirect_uri)
    assert "code=" in page.headers["Location"] and "state=rp-state" in page.headers["Location"]
    assert len(_live_sessions(nat, local.id)) == 1

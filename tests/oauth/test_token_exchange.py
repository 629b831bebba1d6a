"""RFC 8693 token exchange (issue 10 item 4): a service calls another on a person's behalf.

The portal receives the person's access token, exchanges it for a token to the tax API
(narrower scope, ``act`` naming the portal); the tax API's service exchanges that again for
the archive (``act`` nested).  Refusals: a client not registered for the grant, a dead or
foreign subject token, a wider scope, no target or one outside the client's registered
exchange targets (none by default), actor tokens.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from jose import jwt as jose_jwt

from idp.oauth.clients import TOKEN_EXCHANGE, ClientRegistrationError, ClientSpec, create_client
from tests.helpers import Flow, RegisteredClient
from tests.oauth import tokenkit as kit

TAX = "https://api.tax.gov.example/"
ARCHIVE = "https://api.archive.gov.example/"
ACCESS = "urn:ietf:params:oauth:token-type:access_token"


@pytest.fixture
def portal(app: Flask) -> RegisteredClient:
    return RegisteredClient.create(
        app,
        name="Provincial portal",
        scopes=["openid", "profile", "email", "offline_access"],
        grant_types=["authorization_code", "refresh_token", TOKEN_EXCHANGE],
        resources=[TAX],
        exchange_targets=[TAX],
    )


@pytest.fixture
def tax_api(app: Flask) -> RegisteredClient:
    """The tax API's own client: it receives tokens for TAX and may pass them on."""
    return kit.create_client(
        app,
        name="Tax API",
        grant_types=[TOKEN_EXCHANGE],
        resources=[TAX, ARCHIVE],
        exchange_targets=[ARCHIVE],
    )


def exchange(http: Any, rp: RegisteredClient, subject: str, **extra: Any) -> Any:
    data = {
        "grant_type": TOKEN_EXCHANGE,
        "subject_token": subject,
        "subject_token_type": ACCESS,
        "resource": TAX,
        **extra,
    }
    return kit.post(http, "/token", rp, {k: v for k, v in data.items() if v is not None})


def user_token(http: Any, portal: RegisteredClient, citizen: Any) -> dict[str, Any]:
    return kit.code_tokens(http, portal, citizen, scope="openid profile email offline_access")


def test_exchange_carries_act_and_narrower_scope(app, client, citizen, portal, tax_api):
    body = user_token(client, portal, citizen)
    resp = exchange(client, portal, body["access_token"], scope="profile")
    assert resp.status_code == 200, resp.get_json()
    got = resp.get_json()
    assert got["issued_token_type"] == ACCESS and got["token_type"] == "Bearer"
    assert got["scope"] == "profile" and "refresh_token" not in got and "id_token" not in got
    assert 0 < got["expires_in"] <= app.extensions["yitong"].settings.access_token_lifetime
    # The tax API introspects it: the person is sub, the portal acts.
    seen = kit.introspect(client, tax_api, got["access_token"]).get_json()
    assert seen["active"] is True
    assert seen["sub"] == citizen.id and seen["aud"] == TAX and seen["scope"] == "profile"
    assert seen["act"] == {"sub": portal.client_id, "client_id": portal.client_id}
    assert seen["client_id"] == portal.client_id
    # The subject token itself has no actor.
    assert "act" not in kit.introspect(client, portal, body["access_token"]).get_json()

    # Second hop: the tax API passes the call on to the archive; actors nest (RFC 8693 §4.1).
    hop = exchange(client, tax_api, got["access_token"], resource=ARCHIVE)
    assert hop.status_code == 200, hop.get_json()
    again = kit.introspect(client, tax_api, hop.get_json()["access_token"]).get_json()
    assert again["aud"] == ARCHIVE and again["scope"] == "profile"
    assert again["act"]["sub"] == tax_api.client_id
    assert again["act"]["act"]["sub"] == portal.client_id


def test_exchanged_token_dies_with_the_subject_grant(app, client, citizen, portal, tax_api):
    body = user_token(client, portal, citizen)
    got = exchange(client, portal, body["access_token"]).get_json()
    assert got["scope"] == "profile email"  # openid and offline_access never delegate
    assert kit.introspect(client, tax_api, got["access_token"]).get_json()["active"] is True
    # Revoking the person's refresh token revokes the grant, and the exchanged token with it.
    assert kit.revoke(client, portal, body["refresh_token"]).status_code == 200
    assert kit.introspect(client, tax_api, got["access_token"]).get_json() == {"active": False}
    # A dead subject token is refused (RFC 8693 §2.2.2: invalid_request).
    refused = exchange(client, portal, body["access_token"])
    assert refused.status_code == 400 and refused.get_json()["error"] == "invalid_request"


def test_jwt_access_token_carries_act(app, client, citizen, tax_api):
    portal = RegisteredClient.create(
        app,
        name="JWT portal",
        scopes=["openid", "profile"],
        grant_types=["authorization_code", TOKEN_EXCHANGE],
        resources=[TAX],
        exchange_targets=[TAX],
        access_token_format="jwt",
    )
    body = kit.code_tokens(client, portal, citizen, scope="openid profile")
    got = exchange(client, portal, body["access_token"]).get_json()
    claims = jose_jwt.get_unverified_claims(got["access_token"])
    assert claims["act"] == {"sub": portal.client_id, "client_id": portal.client_id}
    assert claims["aud"] == TAX and claims["sub"] == citizen.id and claims["scope"] == "profile"


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        ({"scope": "profile phone"}, "invalid_scope"),  # widens
        ({"scope": "openid"}, "invalid_scope"),  # login-only scope
        ({"resource": None}, "invalid_target"),  # no target
        ({"resource": "https://api.elsewhere.example/"}, "invalid_target"),
        ({"audience": "https://api.elsewhere.example/"}, "invalid_target"),
        (
            {"subject_token_type": "urn:ietf:params:oauth:token-type:refresh_token"},
            "invalid_request",
        ),
        ({"subject_token_type": None}, "invalid_request"),
        ({"actor_token": "x", "actor_token_type": ACCESS}, "invalid_request"),
        ({"requested_token_type": "urn:ietf:params:oauth:token-type:id_token"}, "invalid_request"),
    ],
)
def test_refusals(app, client, citizen, portal, extra, error):
    body = user_token(client, portal, citizen)
    resp = exchange(client, portal, body["access_token"], **extra)
    assert resp.status_code == 400, resp.get_json()
    assert resp.get_json()["error"] == error


def test_subject_token_must_be_a_live_access_token_of_the_caller(
    app, client, citizen, portal, tax_api
):
    body = user_token(client, portal, citizen)
    for subject in ("not-a-token", body["refresh_token"], "x" * 5000):
        resp = exchange(client, portal, subject)
        assert resp.status_code == 400 and resp.get_json()["error"] == "invalid_request"
    # The tax API never received the portal's token (its audience is the portal): refused.
    stolen = exchange(client, tax_api, body["access_token"])
    assert stolen.status_code == 400 and stolen.get_json()["error"] == "invalid_request"
    # A client-credentials token has no person to act for.
    machine = kit.api_client(app, grant_types=["client_credentials", TOKEN_EXCHANGE])
    cc = kit.post(client, "/token", machine, {"grant_type": "client_credentials"}).get_json()
    resp = exchange(client, machine, cc["access_token"], resource="https://api.hr.gov.example/")
    assert resp.status_code == 400 and resp.get_json()["error"] == "invalid_request"


def test_client_not_allowed(app, client, citizen):
    plain = RegisteredClient.create(app, name="Plain", resources=[TAX])
    body = kit.code_tokens(client, plain, citizen)
    resp = exchange(client, plain, body["access_token"])
    assert resp.status_code == 400 and resp.get_json()["error"] == "unauthorized_client"
    # Unauthenticated callers never get that far.
    anon = client.post(
        "/token",
        data={
            "grant_type": TOKEN_EXCHANGE,
            "subject_token": body["access_token"],
            "subject_token_type": ACCESS,
            "resource": TAX,
        },
    )
    assert anon.status_code == 401 and anon.get_json()["error"] == "invalid_client"


def test_public_clients_cannot_register_for_it(app):
    services = app.extensions["yitong"]
    with services.db.transaction() as session, pytest.raises(ClientRegistrationError):
        create_client(
            session,
            ClientSpec(
                name="App",
                redirect_uris=["https://app.example/cb"],
                public=True,
                grant_types=["authorization_code", TOKEN_EXCHANGE],
            ),
            actor="test",
        )


def test_discovery_advertises_token_exchange(client):
    doc = client.get("/.well-known/openid-configuration").get_json()
    assert TOKEN_EXCHANGE in doc["grant_types_supported"]


def test_exchange_is_audited(app, client, citizen, portal):
    from sqlalchemy import select

    from idp.storage.models import AuditEvent

    body = user_token(client, portal, citizen)
    assert exchange(client, portal, body["access_token"]).status_code == 200
    with app.extensions["yitong"].db.session() as session:
        row = session.scalars(
            select(AuditEvent)
            .where(AuditEvent.action == "token.exchange")
            .order_by(AuditEvent.seq.desc())
        ).first()
        assert row is not None and row.actor == portal.client_id and row.target == citizen.id


def test_exchange_targets_are_none_until_registered(app, client, citizen):
    """A client allowed the grant, with resources of its own, may still exchange for nothing
    until its exchange targets name the resource (RFC 8693 §2.2.2 ``invalid_target``)."""
    rp = RegisteredClient.create(
        app,
        name="Portal without targets",
        scopes=["openid", "profile"],
        grant_types=["authorization_code", TOKEN_EXCHANGE],
        resources=[TAX],
    )
    body = kit.code_tokens(client, rp, citizen, scope="openid profile")
    for extra in ({}, {"resource": None, "audience": TAX}):
        resp = exchange(client, rp, body["access_token"], **extra)
        assert resp.status_code == 400 and resp.get_json()["error"] == "invalid_target"


def test_only_the_registered_targets_of_the_caller(app, client, citizen, portal, tax_api):
    """The portal may reach TAX only; the tax API may reach ARCHIVE only, not TAX again."""
    body = user_token(client, portal, citizen)
    assert exchange(client, portal, body["access_token"], resource=ARCHIVE).status_code == 400
    # One allowed and one not: the whole request is refused, not trimmed.
    both = exchange(client, portal, body["access_token"], audience=ARCHIVE)
    assert both.status_code == 400 and both.get_json()["error"] == "invalid_target"
    got = exchange(client, portal, body["access_token"]).get_json()
    again = exchange(client, tax_api, got["access_token"])  # resource=TAX
    assert again.status_code == 400 and again.get_json()["error"] == "invalid_target"
    hop = exchange(client, tax_api, got["access_token"], resource=None, audience=ARCHIVE)
    assert hop.status_code == 200, hop.get_json()


def test_exchange_targets_through_the_admin_api(app, client, citizen):
    """Registered per client by an operator; a new target needs approval again; bad ones
    are refused; the client cannot set them itself at registration (RFC 7591 metadata)."""
    from tests.helpers import admin_token, bearer

    rp = RegisteredClient.create(
        app,
        name="Portal",
        scopes=["openid", "profile"],
        grant_types=["authorization_code", TOKEN_EXCHANGE],
    )
    sec = bearer(admin_token(app, ["security-admin"])[0])
    url = f"/admin/api/clients/{rp.client_id}"
    for bad in (["not a uri"], "https://api.tax.gov.example/", [f"{TAX}#frag"], [TAX] * 21 + [1]):
        refused = client.patch(url, json={"exchange_targets": bad}, headers=sec)
        assert refused.status_code == 400, (bad, refused.get_json())
    widened = client.patch(url, json={"exchange_targets": [TAX, ARCHIVE]}, headers=sec)
    assert widened.status_code == 200, widened.get_json()
    assert widened.get_json()["exchange_targets"] == [TAX, ARCHIVE]
    assert widened.get_json()["status"] == "pending"
    assert client.post(f"{url}/approve", headers=sec).status_code == 200
    narrowed = client.patch(url, json={"exchange_targets": [TAX]}, headers=sec).get_json()
    assert narrowed["status"] == "approved" and narrowed["exchange_targets"] == [TAX]
    body = kit.code_tokens(client, rp, citizen, scope="openid profile")
    assert exchange(client, rp, body["access_token"]).status_code == 200
    assert exchange(client, rp, body["access_token"], resource=ARCHIVE).status_code == 400
    # Cleared: nothing any more.
    cleared = client.patch(url, json={"exchange_targets": []}, headers=sec).get_json()
    assert cleared["exchange_targets"] == [] and cleared["status"] == "approved"
    assert exchange(client, rp, body["access_token"]).get_json()["error"] == "invalid_target"
    # An auditor reads but cannot change them.
    auditor = bearer(admin_token(app, ["auditor"])[0])
    assert client.patch(url, json={"exchange_targets": [TAX]}, headers=auditor).status_code == 403


# ------------------------------------------------------------------ DPoP (RFC 9449)
def dpop_exchange(http: Any, rp: RegisteredClient, holder: Any, subject: str) -> Any:
    """The exchange with ``rp``'s Basic authentication and a proof of ``holder``'s key (the
    nonce dance done once, RFC 9449 §8)."""
    from tests.oauth.test_dpop import TOKEN_URL

    data = {
        "grant_type": TOKEN_EXCHANGE,
        "subject_token": subject,
        "subject_token_type": ACCESS,
        "resource": TAX,
    }
    resp = None
    for _ in range(2):
        headers = {**rp.basic(), "DPoP": holder.proof("POST", TOKEN_URL)}
        resp = http.post("/token", data=data, headers=headers)
        holder.nonce = resp.headers.get("DPoP-Nonce", holder.nonce)
        if resp.get_json().get("error") != "use_dpop_nonce":
            break
    return resp


def test_checklist_45_exchange_with_a_proof_binds_the_new_token(
    app, client, citizen, portal, tax_api
):
    from tests.oauth.test_dpop import Holder

    holder = Holder()
    body = user_token(client, portal, citizen)
    resp = dpop_exchange(client, portal, holder, body["access_token"])
    assert resp.status_code == 200, resp.get_json()
    got = resp.get_json()
    assert got["token_type"] == "DPoP"
    seen = kit.introspect(client, tax_api, got["access_token"]).get_json()
    assert seen["active"] is True and seen["cnf"] == {"jkt": holder.jkt}
    assert seen["token_type"] == "DPoP"
    # without a proof the same exchange gives a Bearer token, unbound
    plain = exchange(client, portal, body["access_token"]).get_json()
    assert plain["token_type"] == "Bearer"
    assert "cnf" not in kit.introspect(client, tax_api, plain["access_token"]).get_json()


def test_checklist_45_dpop_bound_caller_must_prove_a_key(app, client, citizen, tax_api):
    from tests.oauth.test_dpop import Holder

    portal = RegisteredClient.create(
        app,
        name="Bound portal",
        scopes=["openid", "profile"],
        grant_types=["authorization_code", TOKEN_EXCHANGE],
        resources=[TAX],
        exchange_targets=[TAX],
        dpop_bound_access_tokens=True,
    )
    holder = Holder()
    flow_resp = Flow(client, portal, scope="openid profile")
    code = flow_resp.run(citizen)["code"]
    from tests.oauth.test_dpop import TOKEN_URL

    token_form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": portal.redirect_uri,
        "code_verifier": flow_resp.verifier,
    }
    first = None
    for _ in range(2):
        first = client.post(
            "/token",
            data=token_form,
            headers={**portal.basic(), "DPoP": holder.proof("POST", TOKEN_URL)},
        )
        holder.nonce = first.headers.get("DPoP-Nonce", holder.nonce)
        if first.status_code == 200:
            break
    assert first is not None and first.status_code == 200, first.get_json()
    subject = first.get_json()["access_token"]  # bound to holder's key
    # no proof: refused (the client is DPoP-bound, and the subject token is its own bound one)
    bare = exchange(client, portal, subject)
    assert bare.status_code == 400 and bare.get_json()["error"] == "invalid_dpop_proof"
    # a proof of another key: a stolen bound token is not laundered
    thief = Holder()
    thief.nonce = holder.nonce
    stolen = dpop_exchange(client, portal, thief, subject)
    assert stolen.status_code == 400 and stolen.get_json()["error"] == "invalid_dpop_proof"
    # the key's own proof: a token bound to the same key
    ok = dpop_exchange(client, portal, holder, subject)
    assert ok.status_code == 200, ok.get_json()
    assert kit.introspect(client, tax_api, ok.get_json()["access_token"]).get_json()["cnf"] == {
        "jkt": holder.jkt
    }

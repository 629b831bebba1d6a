"""The per-client release policy around companies (issue 10 items 3 and 7).

- Consent is asked again when the released set grows: a verified claim newly asked for, a
  wider ``allowed_claims``, or a company the person now acts for (the consent page names it).
- The account types a client serves (citizen, company, staff) decide the picker's options:
  a company-only service offers no "myself" (and refuses a person without a company), a
  people-only service offers no company.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from flask import Flask
from jose import jwt as jose_jwt

from idp.storage.models import Client
from tests.entities.kit import company, person
from tests.helpers import Flow, RegisteredClient, query_of
from tests.oauth.tokenkit import set_columns

SCOPE = "openid profile entity"


@dataclass
class Recording(Flow):
    """A flow that keeps the consent and picker pages it passed through."""

    consents: list[str] = field(default_factory=list)
    pickers: list[str] = field(default_factory=list)

    def consent(self, resp: Any, action: str = "approve") -> Any:
        self.consents.append(self.http.get(resp.headers["Location"]).get_data(as_text=True))
        return super().consent(resp, action)

    def choose(self, resp: Any, acting_for: str) -> Any:
        self.pickers.append(self.http.get(resp.headers["Location"]).get_data(as_text=True))
        return super().choose(resp, acting_for)


@pytest.fixture
def rp(app: Flask) -> RegisteredClient:
    return RegisteredClient.create(
        app, name="Licensing office", scopes=["openid", "profile", "entity"]
    )


def authority(flow: Flow, params: dict[str, str]) -> Any:
    body = flow.token(params["code"]).get_json()
    return jose_jwt.get_unverified_claims(body["id_token"]).get("authority")


def test_consent_asked_again_when_verified_claims_are_added(app, client, citizen, rp):
    """Checklist 20 too: what was never consented to is `consent_required` with prompt=none."""
    set_columns(app, Client, rp.client_id, allowed_verified_claims=["resident_id_number"])
    first = Recording(client, rp, scope="openid profile")
    assert "code" in first.run(citizen) and len(first.consents) == 1
    # Same request again: remembered, silent.
    assert "code" in Flow(client, rp, scope="openid profile").run(citizen, prompt="none")
    claims = json.dumps(
        {
            "userinfo": {
                "verified_claims": {
                    "verification": {"trust_framework": None},
                    "claims": {"resident_id_number": None},
                }
            }
        }
    )
    silent = Flow(client, rp, scope="openid profile").authorize(prompt="none", claims=claims)
    assert query_of(silent.headers["Location"])["error"] == "consent_required"
    asked = Recording(client, rp, scope="openid profile")
    assert "code" in asked.run(citizen, claims=claims)
    assert len(asked.consents) == 1 and "resident_id_number" in asked.consents[0]
    # Now covered: silent again.
    again = Flow(client, rp, scope="openid profile").run(citizen, prompt="none", claims=claims)
    assert "code" in again


def test_consent_asked_again_when_allowed_claims_grow(app, client, citizen, rp):
    set_columns(app, Client, rp.client_id, allowed_claims=["sub", "name"])
    assert "code" in Recording(client, rp, scope="openid profile").run(citizen)
    set_columns(app, Client, rp.client_id, allowed_claims=None)  # every profile claim now
    silent = Flow(client, rp, scope="openid profile").authorize(prompt="none")
    assert query_of(silent.headers["Location"])["error"] == "consent_required"


def test_acting_for_a_company_is_consented_separately(app, client, rp):
    entity, rep, _code = company(app)
    mine = Recording(client, rp, scope=SCOPE, acting_for="self")
    assert authority(mine, mine.run(rep)) is None and len(mine.consents) == 1
    # Acting for the company releases something new (the authority claim): asked again,
    # and the consent page names the company (masked code) and the role.
    firm = Recording(client, rp, scope=SCOPE, acting_for=entity.id)
    params = firm.run(rep)
    assert authority(firm, params)["applies_to"]["name"] == entity.name
    assert len(firm.consents) == 1
    page = firm.consents[0]
    assert entity.name in page and entity.credit_code_masked in page
    assert page.count('data-claim="authority"') == 1 and "legal-representative" in page
    # The same company again: no consent page (the picker still asks whom for).
    again = Recording(client, rp, scope=SCOPE, acting_for=entity.id)
    assert authority(again, again.run(rep)) is not None
    assert again.consents == [] and len(again.pickers) == 1


def test_company_only_service_offers_no_myself(app, client, rp):
    set_columns(app, Client, rp.client_id, account_types=["company"])
    entity, rep, _code = company(app)
    # The representative's only option is the company: no picker, acting for it.
    flow = Recording(client, rp, scope=SCOPE, acting_for="never-asked")
    got = authority(flow, flow.run(rep))
    assert got["applies_to"]["name"] == entity.name and flow.pickers == []
    # A person with no company to act for is refused.
    params = Flow(app.test_client(), rp, scope=SCOPE).run(person(app))
    assert params.get("error") == "access_denied"
    # Forcing "myself" into the picker form of a person with two companies is refused.
    other, rep_b, _ = company(app, 1)
    from tests.entities.kit import mandate

    mandate(app, other.id, rep_b.id, rep.id)
    http = app.test_client()
    flow = Recording(http, rp, scope=SCOPE)
    resp = flow.login(flow.authorize(), rep.email, rep.password)
    while "/entities/choose" not in resp.headers.get("Location", ""):
        resp = http.get(resp.headers["Location"])
    page = http.get(resp.headers["Location"]).get_data(as_text=True)
    assert 'value="self"' not in page and entity.name in page and other.name in page
    refused = flow.choose(resp, "self")
    assert refused.status_code == 400 and "picker-error" in refused.get_data(as_text=True)


def test_people_only_service_offers_no_company(app, client, rp):
    set_columns(app, Client, rp.client_id, account_types=["citizen"])
    _entity, rep, _code = company(app)
    flow = Recording(client, rp, scope=SCOPE, acting_for="never-asked")
    assert authority(flow, flow.run(rep)) is None and flow.pickers == []


def test_staff_only_service_refuses_a_company_login(app, client, rp):
    set_columns(app, Client, rp.client_id, account_types=["staff"])
    _entity, rep, _code = company(app)
    params = Flow(client, rp, scope=SCOPE).run(rep)
    assert params.get("error") == "access_denied"

"""``POST /admin/api/people/<id>/verify``: the admin API's ``yitong verify`` (issue 10 item 8).

The registry methods ask the configured (synthetic, in tests) population registry; the others
record what the operator saw.  Every refusal is an ``invalid_request`` (or 401/403/404) and
records nothing; a success is audited with the admin as the verifier.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from idp.storage.models import AuditEvent, IdentityVerification
from tests.entities.kit import admin_bearer, person
from tests.helpers import admin_token, bearer


def _levels(app: Flask, user_id: str) -> list[tuple[str, str]]:
    with app.extensions["yitong"].db.session() as session:
        rows = session.scalars(
            select(IdentityVerification)
            .where(IdentityVerification.user_id == user_id)
            .order_by(IdentityVerification.id)
        )
        return [(r.level, r.method) for r in rows]


def test_helpdesk_records_registry_and_counter_verifications(app: Flask, client: Any) -> None:
    who = person(app, name="张三")  # the synthetic registry knows these numbers as 张三
    token, actor = admin_token(app, ["helpdesk"], user_id=person(app, name="管理员").id)
    desk = bearer(token)
    got = client.post(
        f"/admin/api/people/{who.id}/verify",
        json={"level": "L3", "method": "registry"},
        headers=desk,
    )
    assert got.status_code == 201, got.get_json()
    body = got.get_json()
    assert (body["level"], body["method"], body["assurance"]) == ("L3", "registry", "L3")
    counter = client.post(
        f"/admin/api/people/{who.id}/verify",
        json={"level": "L5", "method": "counter", "evidence": {"verifier": {"txn": "C-1"}}},
        headers=desk,
    )
    assert counter.status_code == 201 and counter.get_json()["assurance"] == "L5"
    assert _levels(app, who.id)[-2:] == [("L3", "registry"), ("L5", "counter")]
    with app.extensions["yitong"].db.session() as session:
        events = session.scalars(
            select(AuditEvent).where(
                AuditEvent.action == "identity.verify", AuditEvent.target == who.id
            )
        ).all()
    assert len(events) == 2 and {e.actor for e in events} == {actor}
    assert events[0].details["method"] == "registry"


@pytest.mark.parametrize(
    ("body", "status", "text"),
    [
        ({"level": "L4", "method": "registry"}, 400, "L4 is reached"),
        ({"level": "L2", "method": "self-declared"}, 400, "registration"),
        ({"level": "L4", "method": "face"}, 400, "face image"),
        ({"level": "L4", "method": "face", "face_image": "%%%"}, 400, "base64"),
        ({"level": "L5", "method": "counter", "evidence": [1]}, 400, "JSON object"),
        ({"level": "L5", "method": "counter", "evidence": {"id_number": "x"}}, 400, "numbers"),
        ({"level": "L5", "method": "counter", "extra": 1}, 400, "unknown fields"),
        ({"level": 3, "method": "counter"}, 400, "required"),
        ({"level": "L9", "method": "counter"}, 400, "level must be"),
    ],
)
def test_refusals_record_nothing(
    app: Flask, client: Any, body: dict[str, Any], status: int, text: str
) -> None:
    who = person(app, name="张三")
    desk = admin_bearer(app, ["helpdesk"])
    before = _levels(app, who.id)
    resp = client.post(f"/admin/api/people/{who.id}/verify", json=body, headers=desk)
    assert resp.status_code == status, resp.get_json()
    assert resp.get_json()["error"] == "invalid_request"
    assert text in resp.get_json()["error_description"]
    assert _levels(app, who.id) == before


def test_registry_mismatch_and_face_mismatch(app: Flask, client: Any) -> None:
    who = person(app, name="不在册")  # the registry has another name for this number
    desk = admin_bearer(app, ["security-admin"])
    resp = client.post(
        f"/admin/api/people/{who.id}/verify",
        json={"level": "L3", "method": "registry"},
        headers=desk,
    )
    assert resp.status_code == 400 and "did not match" in resp.get_json()["error_description"]
    face = client.post(
        f"/admin/api/people/{who.id}/verify",
        json={
            "level": "L4",
            "method": "face",
            "face_image": base64.b64encode(b"not the registry photo").decode(),
        },
        headers=desk,
    )
    assert face.status_code == 400
    assert _levels(app, who.id) == [("L2", "self-declared")]


def test_roles_and_unknown_people(app: Flask, client: Any) -> None:
    who = person(app, name="张三")
    body = {"level": "L5", "method": "counter"}
    assert client.post(f"/admin/api/people/{who.id}/verify", json=body).status_code == 401
    weak = admin_bearer(app, ["client-admin"])
    assert (
        client.post(f"/admin/api/people/{who.id}/verify", json=body, headers=weak).status_code
        == 403
    )
    desk = admin_bearer(app, ["helpdesk"])
    missing = client.post("/admin/api/people/no-such-person/verify", json=body, headers=desk)
    assert missing.status_code == 404
    not_json = client.post(f"/admin/api/people/{who.id}/verify", data="x", headers=desk)
    assert not_json.status_code == 400

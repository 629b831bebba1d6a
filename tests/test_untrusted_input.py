"""Input from outside never becomes a 500 or a dirty log line (issue 14 item 1, 6; checklist
111, 109 and ASVS 16.4.1): untrusted JSON, NUL characters, control characters in logs, and
database errors that would repeat row values.
"""

from __future__ import annotations

import json
import logging
import uuid
from urllib.parse import urlencode

import pytest
from sqlalchemy.exc import IntegrityError

from idp import untrusted_json
from idp.logging_setup import escape_controls, scrub_database_detail
from idp.storage.models import User, utcnow
from tests.helpers import IDS, PASSWORD, csrf_token, pkce_pair

DEEP = "[" * 1000 + "]" * 1000


# ------------------------------------------------------------------ the loader itself
@pytest.mark.parametrize(
    "text",
    [
        '{"exp": NaN}',
        '{"exp": Infinity}',
        '{"exp": -Infinity}',
        '{"exp": 1e400}',
        DEEP,
        "{" + '"a":{' * 40 + "}" * 41,
        '{"a": "x\\u0000y"}',
        '{"a\\u0000": 1}',
        '{"a": "\\ud800"}',
        b'{"a": "\xff"}',
        "not json",
    ],
)
def test_untrusted_json_refuses(text):
    with pytest.raises(untrusted_json.UntrustedJsonError):
        untrusted_json.loads(text)


def test_untrusted_json_accepts_ordinary_documents():
    doc = {"a": [1, 2.5, "社保", None, True, {"b": "c"}]}
    assert untrusted_json.loads(json.dumps(doc, ensure_ascii=False)) == doc
    assert untrusted_json.loads("[" * 32 + "]" * 32) is not None


def test_finite_numbers():
    assert untrusted_json.is_finite_number(1) and untrusted_json.is_finite_number(1.5)
    for value in (float("nan"), float("inf"), -float("inf"), True, "1", None):
        assert not untrusted_json.is_finite_number(value)


# ------------------------------------------------------------------ /authorize and /par
def _params(rp, **overrides):
    _, challenge = pkce_pair()
    params = {
        "client_id": rp.client_id,
        "redirect_uri": rp.redirect_uri,
        "response_type": "code",
        "scope": "openid",
        "state": "s1",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    params.update(overrides)
    return params


@pytest.mark.parametrize(
    "claims", [DEEP, '{"id_token": ' + DEEP + "}", '{"id_token":{"acr":{"value":NaN}}}']
)
def test_hostile_claims_parameter_is_invalid_request(client, rp, claims):
    # checklist 111: a claims parameter 1,000 levels deep was a RecursionError (500).
    resp = client.get("/authorize?" + urlencode(_params(rp, claims=claims)))
    assert resp.status_code == 302
    assert "error=invalid_request" in resp.headers["Location"]
    resp = client.post("/par", data=_params(rp, claims=claims), headers=rp.basic())
    assert resp.status_code == 400
    assert resp.get_json()["error"] == "invalid_request"


@pytest.mark.parametrize("name", ["nonce", "state", "login_hint", "client_id"])
def test_nul_in_a_parameter_is_refused(client, rp, name):
    # checklist 111: PostgreSQL refuses NUL in text, so a NUL nonce was a 500 at the insert.
    resp = client.get("/authorize?" + urlencode(_params(rp, **{name: "a\x00b"})))
    assert resp.status_code == 400
    assert "Location" not in resp.headers
    resp = client.post("/par", data=_params(rp, **{name: "a\x00b"}), headers=rp.basic())
    assert resp.status_code == 400
    assert resp.get_json()["error"] == "invalid_request"


@pytest.mark.parametrize("field", ["name", "email", "phone", "password"])
def test_nul_in_registration_is_refused(client, services, field):
    # checklist 111: a NUL in a registration field was a 500 on PostgreSQL.
    page = client.get("/register")
    data = {
        "csrf_token": csrf_token(page.get_data(as_text=True)),
        "name": "李四",
        "id_number": IDS["resident_ids"][7],
        "phone": "13900002222",
        "email": "nul@example.cn",
        "password": PASSWORD,
        "password_confirm": PASSWORD,
    }
    data[field] = data[field][:3] + "\x00" + data[field][3:]
    if field == "password":
        data["password_confirm"] = data["password"]
    resp = client.post("/register", data=data)
    assert resp.status_code == 400
    with services.db.session() as session:
        assert session.query(User).filter(User.email == "nul@example.cn").count() == 0


def test_nul_in_a_json_body_is_refused(client, app):
    from tests.helpers import admin_token, bearer

    token, _ = admin_token(app, roles=["security-admin"])
    resp = client.post(
        "/admin/api/keys/k/revoke",
        data='{"reason": "a\\u0000b"}',
        headers={**bearer(token), "Content-Type": "application/json"},
    )
    assert resp.status_code == 400
    assert resp.get_json()["error"] == "invalid_request"


# ------------------------------------------------------------------ logs
def test_control_characters_are_escaped_in_log_records(app, caplog):
    # ASVS 16.4.1: a value an attacker sent cannot forge a second log line.
    caplog.set_level(logging.INFO)
    logging.getLogger("idp.test").info("login failed for %s", "bob\nINFO forged\x1b[2J\x00")
    record = caplog.records[-1]
    assert record.getMessage() == "login failed for bob\\x0aINFO forged\\x1b[2J\\x00"
    assert escape_controls("a\u2028b") == "a\\u2028b"


def test_database_detail_is_scrubbed():
    text = (
        'duplicate key value violates unique constraint "users_email_key"\n'
        "DETAIL:  Key (email)=(li@example.cn) already exists.\n"
        "[SQL: INSERT INTO users (email) VALUES (%(email)s)]\n"
        "[parameters: {'email': 'li@example.cn'}]"
    )
    scrubbed = scrub_database_detail(text)
    assert "li@example.cn" not in scrubbed
    assert "DETAIL: [hidden]" in scrubbed


def test_a_failing_insert_logs_no_row_values(app, services, caplog):
    # Issue 14 item 1: the failing insert's exception carried the argon2 hash, phone, e-mail.
    caplog.set_level(logging.DEBUG)
    marker = uuid.uuid4().hex[:8]
    phone, email = f"+86139{marker[:8]}", f"leak-{marker}@example.cn"
    password_hash = "$argon2id$v=19$m=19456,t=2,p=1$" + marker + "SECRETHASH"
    now = utcnow()

    def row(**extra):
        # A new id each time: the conflict is on phone/e-mail, which PostgreSQL's DETAIL
        # line repeats ("Key (phone)=(+86...) already exists").
        return User(
            id=uuid.uuid4().hex,
            kind="citizen",
            name="x",
            phone=phone,
            email=email,
            password_hash=password_hash,
            created_at=now,
            **extra,
        )

    with services.db.transaction() as session:
        session.add(row())
    with pytest.raises(IntegrityError), services.db.transaction() as session:
        try:
            session.add(row())
            session.flush()
        except IntegrityError:
            logging.getLogger("idp.test").exception("insert failed")
            raise
    assert "insert failed" in caplog.text
    for secret in (password_hash, "SECRETHASH", phone, email):
        assert secret not in caplog.text

"""Citizen registration and login through the pages (issue 2 item 4-5)."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import select

from idp.storage.models import User
from tests.helpers import IDS, PASSWORD, Citizen, csrf_token
from tests.interaction.mfa_kit import set_policy


def register(client, lang="en", **fields):
    client.set_cookie("yitong_lang", lang, domain="localhost")
    page = client.get("/register")
    data = {
        "csrf_token": csrf_token(page.get_data(as_text=True)),
        "name": "李四",
        "id_number": IDS["resident_ids"][5],
        "phone": "13900001111",
        "email": "lisi@example.cn",
        "password": PASSWORD,
        "password_confirm": PASSWORD,
    }
    data.update(fields)
    return client.post("/register", data=data)


def test_production_hashes_at_owasp_parameters(make_app, database_url, instance_dir):
    """Unless configured otherwise, passwords are hashed with argon2id at m=19 MiB, t=2, p=1."""
    from idp.config import Settings

    defaults = Settings()
    app = make_app(
        argon2_memory_kib=defaults.argon2_memory_kib,
        argon2_time_cost=defaults.argon2_time_cost,
        argon2_parallelism=defaults.argon2_parallelism,
    )
    stored = app.extensions["yitong"].passwords.hash("correct horse battery staple")
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")


def test_registration_creates_account_encrypts_id_and_logs_in(client, services, caplog):
    caplog.set_level(logging.DEBUG)
    resp = register(client)
    assert resp.status_code == 303
    assert client.get("/account").status_code == 200
    with services.db.session() as session:
        user = session.scalars(select(User).where(User.email == "lisi@example.cn")).one()
        assert user.id_number_masked == "2101**********8148"
        assert user.id_number_ciphertext and b"210102200405088148" not in user.id_number_ciphertext
        assert services.vault.open(user.id_number_ciphertext) == IDS["resident_ids"][5]
        # The configured parameters (the suite runs at the cheapest; production's are below).
        assert user.password_hash.startswith("$argon2id$v=19$m=1024,t=1,p=1$")
        assert user.phone == "+8613900001111"
    # The full ID number never reaches a log record.
    assert IDS["resident_ids"][5] not in caplog.text


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"id_number": "210202197806263287"}, "id_number", "check character"),
        ({"id_number": "21020219780230328X"}, "id_number", "birth date"),
        ({"phone": "12345"}, "phone", "mainland mobile"),
        ({"email": "not-an-email"}, "email", "e-mail"),
        # NIST SP 800-63B-4: 15 characters when the password is the only factor (the default).
        ({"password": "short", "password_confirm": "short"}, "password", "at least 15"),
        (
            {"password": "password1234567", "password_confirm": "password1234567"},
            "password",
            "too common",
        ),
        (
            {"password": "Password1234567", "password_confirm": "Password1234567"},
            "password",
            "too common",
        ),
        (
            {"password": PASSWORD, "password_confirm": PASSWORD + "x"},
            "password_confirm",
            "do not match",
        ),
        ({"name": ""}, "name", "required"),
    ],
)
def test_invalid_registration_shows_clear_message_on_form(client, fields, field, message):
    resp = register(client, **fields)
    assert resp.status_code == 400
    html = resp.get_data(as_text=True)
    assert f'data-field="{field}"' in html
    assert message in html
    # What was typed stays in the form (issue 15 item 6), passwords excepted.
    typed = fields.get("id_number", IDS["resident_ids"][5])
    assert f'value="{typed}"' in html
    assert PASSWORD not in html and 'value="short"' not in html


def test_every_error_is_shown_at_once_beside_its_field(client):
    """Issue 15 item 6: one submission names every wrong field; nothing typed is lost."""
    resp = register(
        client,
        lang="zh_CN",
        name="",
        id_number="210202197806263287",
        phone="12345",
        email="not-an-email",
        password="short",
        password_confirm="other",
    )
    assert resp.status_code == 400
    html = resp.get_data(as_text=True)
    for field in ("name", "id_number", "phone", "email", "password", "password_confirm"):
        assert f'data-field="{field}"' in html, field
        assert f'aria-describedby="{field}-error' in html, field
    assert "居民身份证号码校验位不正确" in html and "密码至少需要 15 个字符" in html
    assert 'value="210202197806263287"' in html and 'value="not-an-email"' in html
    assert 'value="short"' not in html and 'value="other"' not in html
    assert 'id="error-summary"' in html


def test_the_rule_shown_is_the_rule_enforced(client, app):
    """One source (the password.min_length policy) for the page and the server."""
    set_policy(app, "password.min_length", 20)
    html = client.get("/register").get_data(as_text=True)
    assert "20" in html.split('id="password-rule"')[1].split("</p>")[0]
    refused = register(client, password="correct horse battery", password_confirm="x")
    assert "correct horse battery" not in refused.get_data(as_text=True)
    nineteen = "abcdefghij klmnopqr"
    refused = register(client, password=nineteen, password_confirm=nineteen)
    assert refused.status_code == 400 and "at least 20" in refused.get_data(as_text=True)


def test_errors_are_shown_in_chinese_by_default(client):
    resp = register(client, lang="zh_CN", id_number="210202197806263287")
    assert resp.status_code == 400
    assert "居民身份证号码校验位不正确" in resp.get_data(as_text=True)


def confirm_everything(app, citizen):
    """The holder proved its phone and e-mail and was verified against the registry (L3)."""
    from idp.accounts.assurance import record_verification

    with app.extensions["yitong"].db.transaction() as session:
        row = session.get(User, citizen.id)
        row.phone_verified = row.email_verified = True
        record_verification(session, row, "L3", "registry", verifier="test")


def test_duplicate_registrations_are_refused_on_the_command_line_only(app):
    """An operator is told which field is taken; the public page never is
    (tests/accounts/test_registration_enumeration.py)."""
    from idp.accounts.people import NewCitizen, RegistrationError, register_citizen

    existing = Citizen.create(app, index=7)
    confirm_everything(app, existing)
    services = app.extensions["yitong"]
    for fields, field in [
        ({"id_number": existing.id_number}, "id_number"),
        ({"phone": existing.phone}, "phone"),
        ({"email": existing.email}, "email"),
    ]:
        data = {"name": "李四", "id_number": IDS["resident_ids"][5], "phone": None}
        data.update({"email": None, "password": PASSWORD, **fields})
        with pytest.raises(RegistrationError) as refused, services.db.transaction() as session:
            register_citizen(
                session, NewCitizen(**data), vault=services.vault, passwords=services.passwords
            )
        assert refused.value.field == field and "already exists" in refused.value.message


def test_overlong_password_refused_without_hashing(client):
    # checklist 84: a 1 MB password is refused before the KDF runs (and under the form limit).
    resp = register(client, password="a" * 200, password_confirm="a" * 200)
    assert resp.status_code == 400
    assert "at most 128" in resp.get_data(as_text=True)


def test_missing_csrf_token_gives_400_page(client):
    resp = client.post("/register", data={"name": "x", "id_number": IDS["resident_ids"][0]})
    assert resp.status_code == 400
    assert 'id="error-code">csrf<' in resp.get_data(as_text=True)
    resp = client.post("/login", data={"login": "a", "password": "b"})
    assert resp.status_code == 400


def test_email_differing_only_in_case_is_the_same_account(client, services):
    # Issue 14 item 10 (checklist 81, 111): Li.Wei@ and li.wei@ created two accounts.
    first = register(client, email="Li.Wei@Example.CN")
    assert first.status_code == 303
    with services.db.transaction() as session:
        row = session.scalars(select(User).where(User.email == "li.wei@example.cn")).one()
        row.email_verified = True  # the link was followed
    client.get("/logout")
    client.delete_cookie("yitong")
    second = register(
        client, email="li.wei@example.cn", id_number=IDS["resident_ids"][6], phone="13900003333"
    )
    assert second.status_code == 303  # the same answer; the address stays with its holder
    with services.db.session() as session:
        emails = session.scalars(select(User.email).where(User.email.ilike("li.wei@%"))).all()
    assert emails == ["li.wei@example.cn"]

"""The ``yitong`` command: init, users, clients, audit, demo set-up and refusal to start unsafe.

Commands run in-process through click's ``CliRunner`` with ``YITONG_*`` pointing at a
temporary instance directory and the run's test database (SQLite or PostgreSQL); the
production checks run ``python -m idp.cli`` as a subprocess with a controlled environment,
the way an operator would meet them.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import create_engine, func, select, text, update

from idp.cli import main
from idp.storage.models import AuditEvent, Client, LegalEntity, Mandate, SigningKey, User
from tests.conftest import _truncate
from tests.helpers import IDS, TEST_KEK

REPO = Path(__file__).resolve().parent.parent
SECRET = "cli-test-secret-key-" + "s" * 32
GOOD_PASSWORD = "Quiet-River-Lantern-42"

Run = Callable[..., Result]


def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("YITONG_") and name not in (
            "YITONG_TEST_DB",
            "YITONG_TEST_POSTGRES_URL",
        ):
            monkeypatch.delenv(name)


@pytest.fixture
def run(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Run:
    """``run("users", "add", …)`` against the test database; returns click's Result."""
    _truncate(database_url)
    _clean_env(monkeypatch)
    env = {
        "YITONG_ENV": "testing",
        "YITONG_ISSUER": "http://localhost",
        "YITONG_DATABASE_URL": database_url,
        "YITONG_INSTANCE_DIR": str(tmp_path / "instance"),
        "YITONG_SECRET_KEY": SECRET,
        "YITONG_KEY_ENCRYPTION_KEY": TEST_KEK,
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None) -> Result:
        return runner.invoke(main, list(args), input=input, catch_exceptions=False)

    return invoke


@pytest.fixture
def db(database_url: str) -> Iterator[Any]:
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


def _citizen_args(n: int = 0, **override: str) -> list[str]:
    values = {
        "--name": "李四",
        "--id-number": IDS["resident_ids"][n],
        "--phone": f"1390000{n:04d}",
        "--email": f"li{n}@example.cn",
        "--password": GOOD_PASSWORD,
    }
    values.update(override)
    return [part for k, v in values.items() for part in (k, v)]


# ------------------------------------------------------------------ init
def test_init_creates_schema_and_keys_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On an empty database: schema at head and a key per algorithm; a second run adds none."""
    _clean_env(monkeypatch)
    instance = tmp_path / "fresh"
    monkeypatch.setenv("YITONG_ENV", "testing")
    monkeypatch.setenv("YITONG_INSTANCE_DIR", str(instance))
    runner = CliRunner()
    first = runner.invoke(main, ["init"], catch_exceptions=False)
    assert first.exit_code == 0, first.output
    assert "schema up to date" in first.stdout
    assert first.stdout.count("generated signing key") >= 2  # RS256 and ES256 at least
    engine = create_engine(f"sqlite:///{instance / 'yitong.db'}")
    try:
        with engine.connect() as conn:
            tables = {
                r[0]
                for r in conn.execute(text("SELECT name FROM sqlite_master WHERE type='table'"))
            }
            assert {"users", "clients", "audit_events", "signing_keys", "alembic_version"} <= tables
            keys = conn.execute(select(func.count()).select_from(SigningKey)).scalar_one()
            assert keys >= 2
        # Development secrets were generated into the instance directory, private to the owner.
        for name in ("secret_key", "kek.key"):
            mode = stat.S_IMODE((instance / name).stat().st_mode)
            assert mode == 0o600, (name, oct(mode))
        second = runner.invoke(main, ["init"], catch_exceptions=False)
        assert second.exit_code == 0, second.output
        assert "generated signing key" not in second.stdout
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(SigningKey)).scalar_one() == keys
    finally:
        engine.dispose()


def test_init_on_the_test_database_is_idempotent(run: Run) -> None:
    assert run("init").exit_code == 0
    again = run("init")
    assert again.exit_code == 0, again.output
    assert "schema up to date" in again.stdout


# ------------------------------------------------------------------ users
def test_users_add_json_prints_the_id(run: Run, db: Any) -> None:
    result = run("users", "add", *_citizen_args(), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert list(data) == ["id"]
    with db.connect() as conn:
        row = conn.execute(
            select(User.name, User.id_number_masked).where(User.id == data["id"])
        ).one()
    assert row.name == "李四"
    number = IDS["resident_ids"][0]
    assert row.id_number_masked == number[:4] + "*" * 10 + number[-4:]
    assert number not in result.output  # a full ID number is never echoed


def test_users_add_text_output_is_masked(run: Run) -> None:
    result = run("users", "add", *_citizen_args(1))
    assert result.exit_code == 0, result.output
    number = IDS["resident_ids"][1]
    assert "created citizen" in result.stdout
    assert number not in result.stdout and number[:4] + "**********" + number[-4:] in result.stdout


@pytest.mark.parametrize(
    ("override", "field", "fragment"),
    [
        ({"--id-number": "210202197806263287"}, "id_number", "check character"),
        ({"--id-number": "2102021978062632"}, "id_number", "18 characters"),
        ({"--id-number": "210202197802303286"}, "id_number", "birth date"),
        ({"--password": "password1234567"}, "password", "too common"),
        ({"--password": "short"}, "password", "at least"),
        ({"--phone": "12345"}, "phone", "mainland mobile"),
        ({"--email": "not-an-address"}, "email", "not valid"),
    ],
)
def test_users_add_refuses_bad_input_clearly(
    run: Run, db: Any, override: dict[str, str], field: str, fragment: str
) -> None:
    result = run("users", "add", *_citizen_args(2, **override), "--json")
    assert result.exit_code != 0
    assert result.stdout == ""  # --json prints nothing on failure
    assert result.stderr.startswith(f"error: {field}: ")
    assert fragment in result.stderr
    assert "Traceback" not in result.output
    with db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(User)).scalar_one() == 0


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({}, "id_number"),
        ({"--id-number": IDS["resident_ids"][4]}, "phone"),
        ({"--id-number": IDS["resident_ids"][4], "--phone": "13900009999"}, "email"),
    ],
)
def test_users_add_refuses_duplicates(
    run: Run, db: Any, override: dict[str, str], field: str
) -> None:
    """Taken: an ID number verified at L3 or above, a confirmed phone or e-mail (unverified
    ones are claimed instead: tests/interaction/test_citizen_rights.py)."""
    assert run("users", "add", *_citizen_args(3)).exit_code == 0
    with db.begin() as conn:
        conn.execute(update(User).values(phone_verified=True, email_verified=True))
    assert run("verify", "li3@example.cn", "--level", "L5", "--method", "counter").exit_code == 0
    result = run("users", "add", *_citizen_args(3, **override))
    assert result.exit_code != 0
    assert result.stderr.startswith(f"error: {field}: ")
    assert "already exists" in result.stderr
    with db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(User)).scalar_one() == 1


# ------------------------------------------------------------------ clients
def test_clients_add_prints_id_and_secret_once(run: Run, db: Any) -> None:
    result = run(
        "clients",
        "add",
        "--name",
        "Housing fund",
        "--redirect-uri",
        "https://hf.gov.example/cb",
        "--scope",
        "openid profile",
        "--json",
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) == {"client_id", "client_secret"}
    assert len(data["client_secret"]) >= 43  # >= 256 bits, base64url
    with db.connect() as conn:
        stored = conn.execute(select(Client).where(Client.client_id == data["client_id"])).one()
    assert data["client_secret"] not in repr(tuple(stored))  # only its digest is kept
    listed = run("clients", "list", "--json")
    assert listed.exit_code == 0
    assert data["client_secret"] not in listed.output
    assert [c["client_id"] for c in json.loads(listed.stdout)] == [data["client_id"]]


def test_clients_add_public_has_no_secret(run: Run) -> None:
    result = run(
        "clients",
        "add",
        "--name",
        "Mobile app",
        "--public",
        "--redirect-uri",
        "cn.gov.ln.app:/cb",
        "--client-id",
        "mobile-app",
        "--json",
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"client_id": "mobile-app", "client_secret": None}


@pytest.mark.parametrize(
    ("uri", "fragment"),
    [
        ("http://hf.gov.example/cb", "must use https"),
        ("https://hf.gov.example/cb#frag", "fragment"),
        ("https://*.gov.example/cb", "wildcard"),
        ("javascript:alert(1)", "forbidden scheme"),
        ("https://user@hf.gov.example/cb", "userinfo"),
    ],
)
def test_clients_add_refuses_bad_redirect_uri(run: Run, db: Any, uri: str, fragment: str) -> None:
    result = run("clients", "add", "--name", "Bad", "--redirect-uri", uri, "--json")
    assert result.exit_code != 0
    assert result.stdout == ""
    assert result.stderr.startswith("error: ") and fragment in result.stderr
    with db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Client)).scalar_one() == 0


def test_clients_add_duplicate_client_id(run: Run) -> None:
    args = (
        "clients",
        "add",
        "--name",
        "Portal",
        "--redirect-uri",
        "https://p.example/cb",
        "--client-id",
        "portal",
    )
    assert run(*args).exit_code == 0
    again = run(*args)
    assert again.exit_code != 0 and "already taken" in again.stderr


# ------------------------------------------------------------------ audit
def _events(run: Run) -> None:
    assert run("users", "add", *_citizen_args(5)).exit_code == 0
    for n in range(3):
        assert (
            run(
                "clients", "add", "--name", f"C{n}", "--redirect-uri", f"https://c{n}.example/cb"
            ).exit_code
            == 0
        )


def test_audit_verify_intact(run: Run) -> None:
    _events(run)
    result = run("audit", "verify")
    assert result.exit_code == 0, result.output
    assert "intact: 4 entries" in result.stdout


def test_audit_verify_detects_an_edited_entry(run: Run, db: Any) -> None:
    _events(run)
    with db.begin() as conn:
        conn.execute(text("UPDATE audit_events SET actor = 'mallory' WHERE seq = 2"))
    result = run("audit", "verify")
    assert result.exit_code == 1
    assert "BROKEN: entry 2 was altered" in result.stderr


def test_audit_verify_detects_an_edited_detail(run: Run, db: Any) -> None:
    _events(run)
    with db.begin() as conn:
        conn.execute(text("UPDATE audit_events SET outcome = 'failure' WHERE seq = 3"))
    result = run("audit", "verify")
    assert result.exit_code == 1
    assert "entry 3 was altered" in result.stderr


def test_audit_verify_detects_a_deleted_entry(run: Run, db: Any) -> None:
    _events(run)
    with db.begin() as conn:
        conn.execute(text("DELETE FROM audit_events WHERE seq = 2"))
    result = run("audit", "verify")
    assert result.exit_code == 1
    assert "BROKEN: entry 2 is missing" in result.stderr


def test_audit_verify_detects_reordered_entries(run: Run, db: Any) -> None:
    _events(run)
    with db.begin() as conn:  # swap entries 2 and 3 (seq is the primary key: via a spare number)
        conn.execute(text("UPDATE audit_events SET seq = 1000 WHERE seq = 2"))
        conn.execute(text("UPDATE audit_events SET seq = 2 WHERE seq = 3"))
        conn.execute(text("UPDATE audit_events SET seq = 3 WHERE seq = 1000"))
    result = run("audit", "verify")
    assert result.exit_code == 1
    assert "BROKEN: entry 2 does not follow entry 1" in result.stderr
    with db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(AuditEvent)).scalar_one() == 4


# ------------------------------------------------------------------ demo set-up
def test_demo_no_serve_is_idempotent_and_prints_the_login(
    run: Run, db: Any, tmp_path: Path
) -> None:
    from idp.app import build_services
    from idp.config import load_settings

    first = run("demo", "--no-serve")
    assert first.exit_code == 0, first.output
    assert "created client demo-portal" in first.stdout
    assert "created client demo-service" in first.stdout
    assert "created citizen" in first.stdout
    for text_ in (
        "210202197806263286",
        "13800138000",
        "wang.xiaoming@example.cn",
        "http://localhost:5000",
        "http://localhost:5001",
        "http://localhost:5002",
        # Issue 10: the demo company, its representative and its agent, with their logins.
        "91210603A5Y2EXPB06",
        "法人登录",
        "zhang.san@example.cn",
        "li.si@example.cn",
    ):
        assert text_ in first.stdout
    assert "created company" in first.stdout and "created mandate finance" in first.stdout
    state_file = tmp_path / "instance" / "demo.json"
    assert stat.S_IMODE(state_file.stat().st_mode) == 0o600
    state = json.loads(state_file.read_text())
    password = state["citizen"]["password"]
    assert f"password   {password}" in first.stdout
    for key, role in (
        ("security_admin", "security-admin"),
        ("department_admin", "department-admin"),
    ):
        assert role in first.stdout
        assert state[key]["password"] in first.stdout and state[key]["totp_secret"] in first.stdout
    assert "/admin" in first.stdout
    for key in ("representative", "agent"):
        assert f"password {state[key]['password']}" in first.stdout
    # Issue 13: one demo legacy system of the ticket bridge, printed with its credentials.
    bridge = state["bridge"]
    assert bridge["system_id"].startswith("bridge-") and "created bridge system" in first.stdout
    assert bridge["system_id"] in first.stdout and bridge["secret"] in first.stdout
    assert "http://localhost:5003/callback" in first.stdout

    second = run("demo", "--no-serve")
    assert second.exit_code == 0, second.output
    assert "created" not in second.stdout
    assert json.loads(state_file.read_text()) == state  # same secrets, same password
    assert f"password   {password}" in second.stdout

    with db.connect() as conn:
        ids = conn.execute(select(Client.client_id).order_by(Client.client_id)).scalars().all()
        assert ids == sorted(["demo-portal", "demo-service", bridge["system_id"]])
        # The citizen, a security admin and a department admin (issue 11), the company's
        # representative and its agent (issue 10).
        assert conn.execute(select(func.count()).select_from(User)).scalar_one() == 5
        assert conn.execute(select(func.count()).select_from(LegalEntity)).scalar_one() == 1
        mandates = conn.execute(select(Mandate)).all()
        assert len(mandates) == 1 and mandates[0].accepted_at is not None
        assert mandates[0].client_ids == ["demo-service"] and mandates[0].ended_at is None
        portal_first_party = conn.execute(
            select(Client.first_party).where(Client.client_id == "demo-portal")
        ).scalar_one()
        assert portal_first_party is True

    # The printed password opens the printed account; the stored secrets match the clients.
    services = build_services(load_settings())
    try:
        from idp.accounts.people import find_citizen
        from idp.oauth.clients import OAuthClient
        from idp.storage.repo import query_client

        with services.db.session() as session:
            user = find_citizen(session, "wang.xiaoming@example.cn", vault=services.vault)
            assert user is not None and services.passwords.verify(user.password_hash, password)
            for key in ("representative", "agent"):
                person = find_citizen(session, state[key]["email"], vault=services.vault)
                assert person is not None
                assert services.passwords.verify(person.password_hash, state[key]["password"])
            for key in ("portal", "service"):
                row = query_client(session, state[key]["client_id"])
                assert OAuthClient(row).check_client_secret(state[key]["client_secret"])
            # the printed bridge secret is the one that keys the system's signed requests
            from idp.bridge.registry import system_secret

            system = query_client(session, bridge["system_id"])
            assert system is not None and system.status == "approved"
            assert system_secret(system, services.kek) == bridge["secret"].encode()
    finally:
        services.db.dispose()

    # Losing the state file replaces the secrets and password instead of duplicating anything.
    state_file.unlink()
    third = run("demo", "--no-serve")
    assert third.exit_code == 0, third.output
    assert "created" not in third.stdout
    renewed = json.loads(state_file.read_text())
    assert renewed["portal"]["client_secret"] != state["portal"]["client_secret"]
    assert renewed["citizen"]["password"] != password
    assert renewed["agent"]["password"] != state["agent"]["password"]
    with db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(User)).scalar_one() == 5
        # the two clients and the bridge's demo system, whose secret was replaced
        assert conn.execute(select(func.count()).select_from(Client)).scalar_one() == 3
        assert conn.execute(select(func.count()).select_from(Mandate)).scalar_one() == 1
    assert renewed["bridge"]["system_id"] == bridge["system_id"]
    assert renewed["bridge"]["secret"] != bridge["secret"]
    assert run("audit", "verify").exit_code == 0


# ------------------------------------------------------------------ production refuses unsafe settings
def _yitong(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("YITONG_")}
    return subprocess.run(
        [sys.executable, "-m", "idp.cli", *args],
        env={**base, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


PROD_OK = {
    "YITONG_ENV": "production",
    "YITONG_ISSUER": "https://id.ln.gov.example",
    "YITONG_SECRET_KEY": SECRET,
    "YITONG_KEY_ENCRYPTION_KEY": TEST_KEK,
}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("drop", "replace", "reason"),
    [
        ("YITONG_SECRET_KEY", None, "production needs YITONG_SECRET_KEY"),
        (
            None,
            ("YITONG_SECRET_KEY", "too-short"),
            "YITONG_SECRET_KEY must be at least 32 characters",
        ),
        (
            None,
            ("YITONG_ISSUER", "http://id.ln.gov.example"),
            "production needs an https:// YITONG_ISSUER",
        ),
        ("YITONG_KEY_ENCRYPTION_KEY", None, "production needs YITONG_KEY_ENCRYPTION_KEY"),
    ],
)
def test_production_refuses_to_start_and_says_why(
    tmp_path: Path, drop: str | None, replace: tuple[str, str] | None, reason: str
) -> None:
    env = dict(PROD_OK, YITONG_INSTANCE_DIR=str(tmp_path / "instance"))
    if drop:
        del env[drop]
    if replace:
        env[replace[0]] = replace[1]
    proc = _yitong(["init"], env, tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: configuration: ")
    assert reason in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "instance" / "yitong.db").exists()  # refused before touching anything
    assert not (tmp_path / "instance" / "secret_key").exists()  # and generated nothing


@pytest.mark.slow
def test_production_refuses_a_generated_development_kek(tmp_path: Path) -> None:
    dev = _yitong(
        ["init"],
        {"YITONG_ENV": "development", "YITONG_INSTANCE_DIR": str(tmp_path / "i")},
        tmp_path,
    )
    assert dev.returncode == 0, dev.stderr
    env = dict(
        PROD_OK,
        YITONG_INSTANCE_DIR=str(tmp_path / "i"),
        YITONG_KEY_ENCRYPTION_KEY_FILE=str(tmp_path / "i" / "kek.key"),
    )
    del env["YITONG_KEY_ENCRYPTION_KEY"]
    proc = _yitong(["init"], env, tmp_path)
    assert proc.returncode == 2
    assert "generated development key" in proc.stderr


@pytest.mark.slow
def test_config_file_then_environment_precedence(tmp_path: Path) -> None:
    """Defaults <- YITONG_CONFIG (TOML) <- YITONG_* variables."""
    config = tmp_path / "yitong.toml"
    config.write_text(
        'env = "production"\n'
        'issuer = "https://id.ln.gov.example"\n'
        f'secret_key = "{SECRET}"\n'
        f'key_encryption_key = "{TEST_KEK}"\n'
        f'instance_dir = "{tmp_path / "instance"}"\n'
    )
    # The file alone is a complete production configuration.
    ok = _yitong(["init"], {"YITONG_CONFIG": str(config)}, tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "generated signing key" in ok.stdout
    # A variable overrides the file: here it makes the issuer unsafe, and production says so.
    refused = _yitong(
        ["init"], {"YITONG_CONFIG": str(config), "YITONG_ISSUER": "http://id.example"}, tmp_path
    )
    assert refused.returncode == 2
    assert "production needs an https:// YITONG_ISSUER" in refused.stderr
    # And the environment can turn production off altogether.
    dev = _yitong(
        ["init"],
        {
            "YITONG_CONFIG": str(config),
            "YITONG_ENV": "development",
            "YITONG_ISSUER": "http://127.0.0.1:5000",
        },
        tmp_path,
    )
    assert dev.returncode == 0, dev.stderr


def test_config_errors_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _clean_env(monkeypatch)
    runner = CliRunner()
    monkeypatch.setenv("YITONG_CONFIG", str(tmp_path / "missing.toml"))
    result = runner.invoke(main, ["init"])
    assert result.exit_code == 2
    assert (
        result.stderr
        == f"error: configuration: YITONG_CONFIG: no such file: {tmp_path / 'missing.toml'}\n"
    )
    bad = tmp_path / "bad.toml"
    bad.write_text("session_idle_timeout = 'soon'\n")
    monkeypatch.setenv("YITONG_CONFIG", str(bad))
    result = runner.invoke(main, ["init"])
    assert result.exit_code == 2
    assert "session_idle_timeout: expected a whole number" in result.stderr
    monkeypatch.delenv("YITONG_CONFIG")
    monkeypatch.setenv("YITONG_ACCESS_TOKEN_LIFETIME", "ten")
    result = runner.invoke(main, ["init"])
    assert result.exit_code == 2
    assert "YITONG_ACCESS_TOKEN_LIFETIME: expected a whole number" in result.stderr

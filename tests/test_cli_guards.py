"""The ``yitong`` command's guards: escaped output and the schema check (issue 14, items 10-11).

Item 10: a registered client name (or any text from the database or an argument) with
terminal escape sequences or line breaks is printed escaped, so it cannot recolour or forge
lines on the operator's terminal; ``--json`` output stays exact once parsed.

Item 11: before ``yitong init`` (or on a schema this version does not know), every command but
``init`` and the server refuse in one line, exit non-zero and print no traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import flask
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import create_engine, inspect, text

from idp.cli import main
from idp.cli.common import safe, safe_json
from idp.storage.migrate import NOT_INITIALISED, upgrade
from tests.conftest import _truncate
from tests.helpers import IDS, TEST_KEK

REPO = Path(__file__).resolve().parent.parent
SECRET = "cli-guard-secret-key-" + "g" * 32
REFUSAL = f"error: {NOT_INITIALISED}\n"


def _env(database_url: str, instance: Path) -> dict[str, str]:
    return {
        "YITONG_ENV": "testing",
        "YITONG_ISSUER": "http://localhost",
        "YITONG_DATABASE_URL": database_url,
        "YITONG_INSTANCE_DIR": str(instance),
        "YITONG_SECRET_KEY": SECRET,
        "YITONG_KEY_ENCRYPTION_KEY": TEST_KEK,
    }


def _use(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for name in list(os.environ):
        if name.startswith("YITONG_") and name not in (
            "YITONG_TEST_DB",
            "YITONG_TEST_POSTGRES_URL",
        ):
            monkeypatch.delenv(name)
    for k, v in env.items():
        monkeypatch.setenv(k, v)


def _invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture
def fresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """An empty SQLite database that ``yitong init`` never saw; returns its URL."""
    url = f"sqlite:///{tmp_path / 'never-initialised.db'}"
    _use(monkeypatch, _env(url, tmp_path / "instance"))
    return url


@pytest.fixture
def initialised(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The run's test database (at head, emptied)."""
    _truncate(database_url)
    _use(monkeypatch, _env(database_url, tmp_path / "instance"))
    return database_url


# ------------------------------------------------------------------ item 11: schema check
UNINITIALISED_COMMANDS = [
    ("keys", "list"),
    ("clients", "list"),
    ("audit", "verify"),
    ("audit", "tail"),
    ("policy", "show"),
    ("policy", "set", "lockout.max_failures", "5"),
    ("users", "add", "--name", "李四", "--id-number", IDS["resident_ids"][0], "--password", "x"),
    ("users", "disable", "someone"),
    ("users", "unlock", "someone"),
    ("users", "totp-enroll", "someone", "--code", "123456"),
    ("logout", "deliver"),
    ("ldap", "list"),
]


@pytest.mark.parametrize("args", UNINITIALISED_COMMANDS, ids=" ".join)
def test_commands_refuse_a_database_never_initialised(fresh: str, args: tuple[str, ...]) -> None:
    result = _invoke(*args)
    assert result.exit_code == 2
    assert result.stderr == REFUSAL
    assert result.stdout == ""
    assert "Traceback" not in result.output
    engine = create_engine(fresh)
    try:
        assert inspect(engine).get_table_names() == []  # the refusal changed nothing
    finally:
        engine.dispose()


def test_run_refuses_to_serve_before_init(fresh: str, monkeypatch: pytest.MonkeyPatch) -> None:
    served: list[tuple[object, ...]] = []
    monkeypatch.setattr(flask.Flask, "run", lambda *a, **kw: served.append(a))
    result = _invoke("run", "--port", "5999")
    assert result.exit_code == 2
    assert result.stderr == REFUSAL
    assert served == []


def test_a_schema_without_revision_or_from_a_newer_version_is_refused(
    fresh: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    upgrade(fresh)
    engine = create_engine(fresh)
    try:
        with engine.connect() as conn:
            head = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM alembic_version"))
        assert _invoke("clients", "list").stderr == REFUSAL
        with engine.begin() as conn:  # an older revision this version knows: run init
            conn.execute(text("INSERT INTO alembic_version (version_num) VALUES ('0001_initial')"))
        assert _invoke("clients", "list").stderr == REFUSAL
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
        newer = _invoke("clients", "list")
        assert newer.exit_code == 2
        assert "revision 9999_future) is newer than this version" in newer.stderr
        with engine.begin() as conn:  # back at this version's head: the command works
            conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": head})
    finally:
        engine.dispose()
    listed = _invoke("clients", "list", "--json")
    assert listed.exit_code == 0 and json.loads(listed.stdout) == []


def test_init_then_commands_work(fresh: str) -> None:
    init = _invoke("init")
    assert init.exit_code == 0, init.output
    for args in (("keys", "list", "--json"), ("audit", "verify"), ("policy", "show", "--json")):
        result = _invoke(*args)
        assert result.exit_code == 0, (args, result.output)


@pytest.mark.slow
def test_wsgi_refuses_to_build_the_app_before_init(tmp_path: Path) -> None:
    """``gunicorn 'wsgi:app'`` imports wsgi.py: the worker stops there, with one line."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("YITONG_")}
    env.update(_env(f"sqlite:///{tmp_path / 'never.db'}", tmp_path / "instance"))
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.run(
        [sys.executable, "-c", "import wsgi"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 3  # gunicorn: "worker failed to boot", it stops
    assert proc.stderr == REFUSAL
    env["YITONG_DATABASE_URL"] = f"sqlite:///{tmp_path / 'ready.db'}"
    upgrade(env["YITONG_DATABASE_URL"])
    ok = subprocess.run(
        [sys.executable, "-c", "import flask, wsgi; print(isinstance(wsgi.app, flask.Flask))"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "True"


# ------------------------------------------------------------------ item 10: escaped output
EVIL = "\x1b[31mEvil\nforged-id  Forged client  approved\x1b[0m"
SNEAKY = "Bidi \u202egnp.exe\u202c C1 \x9b31m end"


def _add(name: str, client_id: str) -> None:
    result = _invoke(
        "clients", "add", "--name", name, "--client-id", client_id,
        "--redirect-uri", f"https://{client_id}.example/cb",
    )  # fmt: skip
    assert result.exit_code == 0, result.output


def test_clients_list_escapes_control_characters_in_names(initialised: str) -> None:
    _add("\x1b[31mEvil", "evil")
    _add(SNEAKY, "sneaky")
    _add("省政务服务门户", "portal")
    # Registration folds whitespace; a name stored another way (an older version, the
    # database itself) may still hold a line break.
    engine = create_engine(initialised)
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE clients SET name = :n WHERE client_id = 'evil'"), {"n": EVIL})
    finally:
        engine.dispose()
    listed = _invoke("clients", "list")
    assert listed.exit_code == 0
    lines = listed.stdout.splitlines()
    assert len(lines) == 3  # the newline in a name cannot forge a line
    assert "\x1b" not in listed.stdout and "\x9b" not in listed.stdout
    assert "\u202e" not in listed.stdout
    assert lines[0] == "evil  \\x1b[31mEvil\\nforged-id  Forged client  approved\\x1b[0m  approved"
    assert "Bidi \\u202egnp.exe\\u202c C1 \\x9b31m end" in lines[1]
    assert lines[2] == "portal  省政务服务门户  approved"  # ordinary text is left alone

    as_json = _invoke("clients", "list", "--json")
    assert as_json.exit_code == 0
    assert not any(c in as_json.stdout for c in "\x1b\x9b\u202e\u202c")
    assert [c["client_name"] for c in json.loads(as_json.stdout)] == [
        EVIL,
        SNEAKY,
        "省政务服务门户",
    ]  # exact once parsed


def test_error_messages_are_escaped_too(initialised: str) -> None:
    result = _invoke("users", "disable", "\x1b]0;pwned\x07\nerror: all good")
    assert result.exit_code == 2
    assert result.stderr == "error: no account \\x1b]0;pwned\\x07\\nerror: all good\n"


def test_safe_escapes_every_control_and_bidi_character() -> None:
    assert safe("a\x00b\tc\x7fd\x85e\u2028f\u2066g") == ("a\\x00b\\tc\\x7fd\\x85e\\u2028f\\u2066g")
    assert safe("王小明 wang.xiaoming@example.cn") == "王小明 wang.xiaoming@example.cn"
    text = safe_json({"n": "x\x1by\x9bz\u2029"})
    assert text == '{"n": "x\\u001by\\u009bz\\u2029"}'
    assert json.loads(text) == {"n": "x\x1by\x9bz\u2029"}

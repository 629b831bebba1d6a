"""``yitong keys``: each action works, reports clearly and lands in the audit trail with the
operator's name (checklist 98: who, what, old -> new; never key material)."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from idp import audit
from idp.cli.keys import KeysCli, keys
from idp.storage.db import Database
from idp.storage.models import AuditEvent, SigningKey, utcnow
from keys.crypto import Kek
from keys.sql import SqlKeyStore
from keys.store import KeyState
from tests.helpers import TEST_KEK
from tests.keys.conftest import POLICY, REFRESH, RSA_BITS

ACTOR = "cli:tester"


@pytest.fixture
def store(db: Database, kek: Kek) -> SqlKeyStore:
    s = SqlKeyStore(
        db, kek, algorithms=("RS256", "ES256"), rsa_bits=RSA_BITS, policy=POLICY,
        refresh_seconds=REFRESH,
    )  # fmt: skip
    s.rotate(utcnow() - dt.timedelta(hours=2))  # next keys published two hours ago
    return s


def run(store: SqlKeyStore, *args: str, input: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(keys, list(args), obj=KeysCli(store, ACTOR), input=input)
    return result.exit_code, result.stdout, result.stderr


def events(db: Database, action: str) -> list[AuditEvent]:
    with db.session() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


def test_list(store: SqlKeyStore) -> None:
    code, out, _ = run(store, "list", "--json")
    assert code == 0
    data = json.loads(out)
    assert {(k["alg"], k["state"]) for k in data["keys"]} == {
        (a, s) for a in ("RS256", "ES256") for s in ("active", "next")
    }
    assert "BEGIN" not in out and '"d"' not in out
    code, out, _ = run(store, "list")
    assert code == 0 and "STATE" in out and "next scheduled change" in out


def test_generate_is_audited(store: SqlKeyStore, db: Database) -> None:
    code, out, _ = run(store, "generate", "--alg", "EdDSA", "--json")
    assert code == 0
    kid = json.loads(out)["kid"]
    [event] = [e for e in events(db, "key.generate") if e.target == kid]
    assert event.actor == ACTOR and event.details["to"] == "next"
    code, _, err = run(store, "generate", "--alg", "EdDSA", "--activate")
    assert code == 0 and "warning" in err
    assert run(store, "generate", "--alg", "HS256")[0] == 2


def test_forced_rotation_respects_prepublication(store: SqlKeyStore, db: Database) -> None:
    # checklist 96: even "rotate now" never signs with a key younger than the JWKS cache
    old = store.signing_key("ES256").kid
    upcoming = [k.kid for k in store.list_keys() if k.alg == "ES256" and k.state == "next"]
    code, out, _ = run(store, "rotate", "--force", "ES256", "--json")
    assert code == 0
    data = json.loads(out)
    assert old in data["changed"] and data["not_yet"] == []
    assert [store.signing_key("ES256").kid] == upcoming  # published two hours ago
    [retire] = events(db, "key.retire")
    assert retire.actor == ACTOR and retire.target == old
    assert retire.details["reason"] == "rotated by hand"
    # Again at once: the new next key was published just now, so it must wait.
    code, out, err = run(store, "rotate", "--force", "ES256")
    assert code == 0 and "0 key(s) changed" in out
    assert "ES256" in err and "can sign from" in err
    assert [store.signing_key("ES256").kid] == upcoming
    # Issue 14 item 11: the time given is the end of the new next key's pre-publication, not
    # the store's next scheduled change (here the retired key's removal, before that end).
    [fresh] = [k for k in store.list_keys() if k.alg == "ES256" and k.state == "next"]
    ends = (fresh.created_at + POLICY.prepublish).strftime("%Y-%m-%d %H:%M:%SZ")
    assert f"can sign from {ends} " in err
    assert store.next_change() != fresh.created_at + POLICY.prepublish  # so the test can fail
    assert store.signing_key("RS256").kid not in data["changed"]  # only what was asked


def test_revoke_asks_and_is_audited(store: SqlKeyStore, db: Database) -> None:
    kid = store.signing_key("RS256").kid
    code, _, _ = run(store, "revoke", kid, input="n\n")
    assert code == 1  # aborted
    assert store.find(kid) is not None
    code, out, _ = run(store, "revoke", kid, "--yes", "--reason", "suspected leak")
    assert code == 0 and f"revoked {kid}" in out
    assert store.find(kid) is None
    [event] = events(db, "key.revoke")
    assert event.actor == ACTOR and event.details["reason"] == "suspected leak"
    code, _, err = run(store, "revoke", kid, "--yes")
    assert code == 2 and err.startswith("error:") and "already revoked" in err


def test_rewrap(store: SqlKeyStore, db: Database, tmp_path: Path) -> None:
    new = Kek.generate()
    path = tmp_path / "new.kek"
    path.write_text("# the new KEK\n" + new.to_text() + "\n")
    path.chmod(0o600)
    code, out, err = run(store, "rewrap", "--new-kek-file", str(path), "--json")
    assert code == 0 and err == ""
    assert json.loads(out)["kek_id"] == new.id
    with db.session() as session:
        assert set(session.scalars(select(SigningKey.kek_id).where(
            SigningKey.private_ciphertext.is_not(None)))) == {new.id}  # fmt: skip
        assert audit.verify(session).ok
    assert all(e.actor == ACTOR for e in events(db, "key.rewrap"))
    assert new.to_text() not in out

    path.chmod(0o644)
    code, _, err = run(store, "rewrap", "--new-kek-file", str(path))
    assert code == 0 and "readable by other users" in err
    bad = tmp_path / "bad.kek"
    bad.write_text("not a key\n")
    bad.chmod(0o600)
    code, _, err = run(store, "rewrap", "--new-kek-file", str(bad))
    assert code == 2 and err.startswith("error:")
    code, _, err = run(store, "rewrap", "--new-kek-file", str(tmp_path / "missing"))
    assert code == 2 and "missing" in err


def test_commands_reach_the_app_store(db: Database, database_url: str, tmp_path: Path) -> None:
    """Without an injected store the commands build the app from the environment."""
    env = {
        "YITONG_ENV": "testing",
        "YITONG_ISSUER": "http://localhost",
        "YITONG_DATABASE_URL": database_url,
        "YITONG_INSTANCE_DIR": str(tmp_path),
        "YITONG_SECRET_KEY": "s" * 40,
        "YITONG_KEY_ENCRYPTION_KEY": TEST_KEK,
        "YITONG_SIGNING_ALGORITHMS": "ES256",
    }
    runner = CliRunner()
    result = runner.invoke(keys, ["generate", "--alg", "ES256", "--json"], env=env)
    assert result.exit_code == 0, result.output
    kid = json.loads(result.stdout)["kid"]
    result = runner.invoke(keys, ["list", "--json"], env=env)
    assert result.exit_code == 0, result.output
    assert kid in {k["kid"] for k in json.loads(result.stdout)["keys"]}
    [event] = events(db, "key.generate")
    assert event.actor.startswith("cli:") and event.target == kid
    assert os.environ.get("YITONG_DATABASE_URL") != database_url  # env restored


def test_listing_shows_every_state(store: SqlKeyStore) -> None:
    store.revoke(store.signing_key("ES256").kid)
    _, out, _ = run(store, "list", "--json")
    states = {k["state"] for k in json.loads(out)["keys"]}
    assert KeyState.REVOKED in states

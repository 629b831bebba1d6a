"""``yitong verify`` and ``yitong clients release`` (issue 10 item 8)."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from idp.storage.models import AuditEvent, Client, IdentityVerification
from tests import test_cli as _cli
from tests.test_cli import Run, _citizen_args

# The CLI fixtures of tests/test_cli.py, shared rather than copied.
run = _cli.run
db = _cli.db


def _add_citizen(run: Run, n: int, name: str) -> str:
    result = run("users", "add", *_citizen_args(n, **{"--name": name}), "--json")
    assert result.exit_code == 0, result.output
    return str(json.loads(result.output)["id"])


def _levels(db: Any, user_id: str) -> list[tuple[str, str]]:
    with Session(db) as session:
        rows = session.scalars(
            select(IdentityVerification)
            .where(IdentityVerification.user_id == user_id)
            .order_by(IdentityVerification.id)
        )
        return [(r.level, r.method) for r in rows]


def test_registration_records_l2_and_verify_registry_records_l3(run: Run, db: Any) -> None:
    user_id = _add_citizen(run, 1, "张三")  # the bundled synthetic registry knows 张三 here
    assert _levels(db, user_id) == [("L2", "self-declared")]
    result = run("verify", "li1@example.cn", "--level", "L3", "--method", "registry", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["level"] == "L3"
    assert _levels(db, user_id) == [("L2", "self-declared"), ("L3", "registry")]
    with Session(db) as session:
        row = session.scalars(
            select(IdentityVerification).where(IdentityVerification.level == "L3")
        ).one()
        assert row.evidence[0]["type"] == "electronic_record"
        assert row.evidence[0]["record"]["source"]["name"] == "local-registry"
        assert row.verifier == "cli"
        actions = session.scalars(select(AuditEvent.action)).all()
    assert actions.count("identity.verify") == 1  # L2 is part of user.register


def test_verify_refuses_a_registry_mismatch(run: Run, db: Any) -> None:
    user_id = _add_citizen(run, 0, "李四")  # the registry says 王小明 for this number
    result = run("verify", "li0@example.cn", "--level", "L3", "--method", "registry")
    assert result.exit_code == 2
    assert "did not match" in result.output
    assert _levels(db, user_id) == [("L2", "self-declared")]


def test_verify_counter_with_evidence_by_phone(run: Run, db: Any) -> None:
    user_id = _add_citizen(run, 2, "张三")
    evidence = json.dumps(
        {"check_details": [{"check_method": "pvp", "organization": "沈阳政务大厅"}]}
    )
    result = run(
        "verify", "+8613900000002", "--level", "L5", "--method", "counter", "--evidence", evidence
    )
    assert result.exit_code == 0, result.output
    with Session(db) as session:
        row = session.scalars(
            select(IdentityVerification).where(IdentityVerification.level == "L5")
        ).one()
    assert row.user_id == user_id
    assert row.evidence[0]["type"] == "document"
    assert row.evidence[0]["check_details"][0]["organization"] == "沈阳政务大厅"


def test_verify_refuses_bad_input(run: Run) -> None:
    _add_citizen(run, 3, "张三")
    cases = [
        (["verify", "li3@example.cn", "--level", "L4", "--method", "registry"], "L4 is reached"),
        (
            [
                "verify",
                "li3@example.cn",
                "--level",
                "L5",
                "--method",
                "counter",
                "--evidence",
                "[1]",
            ],
            "JSON object",
        ),
        (["verify", "li3@example.cn", "--level", "L4", "--method", "face"], "--face-image"),
        (["verify", "nobody@example.cn", "--level", "L3", "--method", "registry"], ""),
    ]
    for args, message in cases:
        result = run(*args)
        assert result.exit_code != 0, args
        assert message in result.output, (args, result.output)
    assert run("verify", "li3@example.cn", "--level", "L9", "--method", "counter").exit_code == 2


def test_clients_release_sets_the_policy(run: Run, db: Any) -> None:
    added = run(
        "clients",
        "add",
        "--name",
        "Pension office",
        "--redirect-uri",
        "https://p.gov.example/cb",
        "--client-id",
        "pension-office",  # a random id may start with "-": the shell sees an option
        "--json",
    )
    client_id = json.loads(added.output)["client_id"]
    result = run(
        "clients",
        "release",
        client_id,
        "--claims",
        "name,email",
        "--verified-claims",
        "name,resident_id_number",
        "--min-assurance",
        "L3",
        "--account-types",
        "citizen,company",
        "--json",
    )
    assert result.exit_code == 0, result.output
    with Session(db) as session:
        row = session.get(Client, client_id)
        assert row is not None
        assert row.allowed_claims == ["name", "email"]
        assert row.allowed_verified_claims == ["name", "resident_id_number"]
        assert row.min_assurance == "L3"
        assert row.account_types == ["citizen", "company"]
    # options not given keep their value
    assert run("clients", "release", client_id, "--min-assurance", "L4").exit_code == 0
    with Session(db) as session:
        row = session.get(Client, client_id)
        assert row is not None and row.min_assurance == "L4"
        assert row.allowed_verified_claims == ["name", "resident_id_number"]


def test_clients_release_refuses_bad_input(run: Run) -> None:
    added = run(
        "clients",
        "add",
        "--name",
        "X",
        "--redirect-uri",
        "https://x.gov.example/cb",
        "--client-id",
        "x-office",
        "--json",
    )
    client_id = json.loads(added.output)["client_id"]
    cases = [
        (["--verified-claims", "shoe_size"], "unknown verified claims"),
        (["--claims", "resident_id_number"], "unknown claims"),
        (["--min-assurance", "L7"], "minimum assurance"),
        (["--account-types", "citizen,alien"], "account types"),
    ]
    for extra, message in cases:
        result = run("clients", "release", client_id, *extra)
        assert result.exit_code == 2, extra
        assert message in result.output
    result = run("clients", "release", "no-such-client", "--min-assurance", "L3")
    assert result.exit_code == 2 and "no such client" in result.output

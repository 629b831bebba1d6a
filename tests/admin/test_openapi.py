"""The admin API's OpenAPI 3.1 document (issue 11): it matches the routes the app serves, and a
property-based run of schemathesis against it, as a security admin, finds no server error and
no answer that breaks the document (status, content type, body schema).

The run is bounded (a fixed number of examples, derandomized, no example database), so it
takes the same time on every run; a failure prints the request that found it.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask

from admin.openapi import OPERATIONS
from tests.helpers import admin_token, bearer

#: Examples per operation (48 operations: about a minute in all).
EXAMPLES_PER_OPERATION = 6


def _served(app: Flask) -> set[tuple[str, str]]:
    return {
        (re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", r.rule).removeprefix("/admin/api"), m.lower())
        for r in app.url_map.iter_rules()
        if r.rule.startswith("/admin/api/")
        for m in r.methods - {"HEAD", "OPTIONS"}
    }


def test_document_matches_the_routes(app: Flask) -> None:
    resp = app.test_client().get("/admin/api/openapi.json")
    assert resp.status_code == 200
    doc = resp.get_json()
    assert doc["openapi"].startswith("3.1")
    documented = {(path, method) for path, ops in doc["paths"].items() for method in ops}
    assert documented == _served(app), (documented - _served(app), _served(app) - documented)
    assert len(documented) == len(OPERATIONS)
    op_ids = [op["operationId"] for ops in doc["paths"].values() for op in ops.values()]
    assert len(op_ids) == len(set(op_ids))


def test_schemathesis_finds_no_server_error_and_no_schema_break(app: Flask) -> None:
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import (
        content_type_conformance,
        not_a_server_error,
        response_schema_conformance,
        status_code_conformance,
    )

    schema = schemathesis.openapi.from_wsgi("/admin/api/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    token, _ = admin_token(app, ["security-admin", "auditor", "helpdesk", "client-admin"])
    headers = bearer(token)
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    calls = 0

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any) -> None:
            nonlocal calls
            case.call_and_validate(headers=headers, checks=checks)
            calls += 1

        run()
    # Every operation but the document's own route, which schemathesis leaves out.
    labels = {o.label for o in operations}
    assert len(labels) == len(OPERATIONS) - 1 and "GET /openapi.json" not in labels
    assert calls >= len(OPERATIONS) * 2  # every operation, several times

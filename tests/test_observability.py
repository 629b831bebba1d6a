"""Request ids, JSON logs, Prometheus metrics and the health probes (issue 12 item 4)."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from flask import Flask, g

from idp.logging_setup import JsonFormatter, RedactingFilter
from tests.helpers import Citizen, Flow, RegisteredClient, csrf_token


def sample(body: str, name: str, **labels: str) -> float:
    """The value of one sample of the exposition text (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in body.splitlines():
        if line.startswith(name + ("{" if labels else " ")):
            got = line[len(name) :].split(" ")[0].strip("{}")
            if ",".join(sorted(got.split(","))) == want or (not labels and not got):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def scrape(app: Flask, **headers: str) -> str:
    resp = app.test_client().get("/metrics", headers=headers)
    assert resp.status_code == 200 and resp.mimetype == "text/plain"
    return resp.get_data(as_text=True)


def test_request_id_is_echoed_when_sane_and_made_otherwise(client: Any) -> None:
    assert client.get("/healthz", headers={"X-Request-Id": "lb-42.a_b"}).headers[
        "X-Request-Id"
    ] == ("lb-42.a_b")
    for bad in ("x" * 65, "a b", "id;Set-Cookie: x", "ä", ""):
        made = client.get("/healthz", headers={"X-Request-Id": bad}).headers["X-Request-Id"]
        assert re.fullmatch(r"[0-9a-f]{16}", made)
    # Also on answers produced before the request's own hooks (an oversized query).
    assert client.get("/authorize?x=" + "a" * 20000).headers["X-Request-Id"]


def test_json_log_lines_carry_the_request_id_and_no_identity_number(app: Flask) -> None:
    record = logging.LogRecord(
        "idp.test",
        logging.WARNING,
        __file__,
        1,
        "lookup of %s failed",
        ("11010519491231002X",),
        None,
    )
    with app.test_request_context("/"):
        g.request_id = "req-1"
        RedactingFilter().filter(record)  # as the root handlers' filter does
        line = json.loads(JsonFormatter().format(record))
    assert line["request_id"] == "req-1" and line["level"] == "WARNING"
    assert "11010519491231002X" not in line["msg"] and line["ts"].endswith("Z")


def test_metrics_count_logins_tokens_and_latency(
    app: Flask, citizen: Citizen, rp: RegisteredClient
) -> None:
    before = scrape(app)
    client = app.test_client()
    html = client.get("/login").get_data(as_text=True)
    client.post(
        "/login",
        data={
            "csrf_token": csrf_token(html),
            "ix": "",
            "login": citizen.email,
            "password": "no" * 9,
        },
    )
    flow = Flow(app.test_client(), rp)
    assert flow.token(flow.run(citizen)["code"]).status_code == 200
    after = scrape(app)

    def delta(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert delta("yitong_login_failures_total", reason="password", account_type="citizen") == 1
    assert delta("yitong_logins_total", account_type="citizen", method="pwd") == 1
    assert delta("yitong_tokens_issued_total", grant_type="authorization_code") == 1
    assert delta("yitong_http_request_duration_seconds_count", endpoint="oidc.token") == 1
    assert delta("yitong_http_requests_total", endpoint="login.login_post", status="401") == 1
    # Scrape-time values: key age per algorithm, logout backlog, dependencies.
    assert 0 <= sample(after, "yitong_signing_key_age_seconds", alg="ES256") < 3600
    assert sample(after, "yitong_logout_outbox_backlog") == 0
    assert sample(after, "yitong_dependency_up", dependency="database") == 1
    assert 'dependency="redis"' not in after  # not configured, not reported


def test_metrics_token_is_required_when_set(make_app: Any) -> None:
    app = make_app(metrics_token="s3cret-scraper-token")
    http = app.test_client()
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "s3cret-scraper-token"},
    ):
        resp = http.get("/metrics", headers=headers)
        assert resp.status_code == 401 and b"yitong_" not in resp.data
    assert "yitong_http_requests" in scrape(app, Authorization="Bearer s3cret-scraper-token")


def test_readiness_reports_each_dependency(app: Flask) -> None:
    """Down states are driven for real in tests/test_redis_state.py (Redis) and the fault
    drills (database restart)."""
    http = app.test_client()
    ready = http.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json() == {"status": "ready", "database": "up", "keys": "up"}
    assert http.post("/readyz").status_code == 405


def test_new_endpoints_refuse_other_methods(client: Any) -> None:
    for path in ("/metrics", "/healthz"):
        assert client.post(path).status_code == 405
        assert client.delete(path).status_code == 405

"""Redis as the shared short-lived state (issue 12 item 2; checklist 23, 33, 80-82, 117).

Two app objects built on one database and one Redis stand for two nodes.  The attempt-counter
contract runs against both implementations (database and Redis).  With Redis down every check
that lives there fails closed: a 503 page or ``temporarily_unavailable``, never a 500 and
never an unchecked password, assertion or request_uri.
"""

from __future__ import annotations

import datetime as dt
import secrets
import threading
from typing import Any

import pytest
from flask import Flask

from idp.errors import StateStoreUnavailable
from idp.interaction.redis_counters import RedisCounters
from idp.interaction.throttle import AttemptCounters, Counters, Rule
from idp.storage.hot import RedisStore
from tests.helpers import Citizen, Flow, RegisteredClient, csrf_token
from tests.interaction.mfa_kit import set_policy
from tests.oauth import tokenkit as kit
from tests.oauth.test_dpop import USERINFO_URL, Holder, dpop_tokens
from tests.oauth.test_par import authorize_with, finish, push

pytestmark = pytest.mark.redis

DEAD_REDIS = "redis://127.0.0.1:9/0"  # nothing listens on the discard port


def services(app: Flask) -> Any:
    return app.extensions["yitong"]


def login_post(app: Flask, login: str, password: str) -> Any:
    client = app.test_client()
    html = client.get("/login").get_data(as_text=True)
    data = {"csrf_token": csrf_token(html), "ix": "", "login": login, "password": password}
    return client.post("/login", data=data, environ_base={"REMOTE_ADDR": "198.51.100.7"})


# ------------------------------------------------------------------ the counter contract
@pytest.fixture(params=["database", "redis"])
def counters(request: pytest.FixtureRequest, make_app: Any) -> AttemptCounters:
    if request.param == "database":
        return Counters(services(make_app()).db)
    store = RedisStore(request.getfixturevalue("redis_url"), namespace="contract")
    return RedisCounters(store)


def test_item80_counters_contract(counters: AttemptCounters) -> None:
    at = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    capped = Rule(free=100, base_delay=1, max_delay=60, cap=3)
    assert [counters.reserve("a", capped, at).allowed for _ in range(4)] == [1, 1, 1, 0]
    assert counters.peek("a", capped, at).locked and counters.failures("a") == 3
    counters.release("a")
    assert (
        counters.reserve("a", capped, at).allowed and not counters.reserve("a", capped, at).allowed
    )
    counters.reset("a")
    assert counters.failures("a") == 0 and counters.peek("a", capped, at).allowed
    # Back-off: the third failure waits 1 s, the fourth 2 s; the wait is reported.
    backoff = Rule(free=2, base_delay=1, max_delay=60)
    assert counters.reserve("b", backoff, at).allowed and counters.reserve("b", backoff, at).allowed
    refused = counters.reserve("b", backoff, at)
    assert not refused.allowed and refused.retry_after == 1 and not refused.locked
    later = at + dt.timedelta(seconds=1)
    assert counters.reserve("b", backoff, later).failures == 3
    assert counters.peek("b", backoff, later).retry_after == 2
    # A refusal on the second counter undoes the reservation on the first.
    for _ in range(3):
        counters.reserve("a", capped, at)
    assert counters.reserve_all([("ip", backoff), ("a", capped)], at)[-1].locked
    assert counters.failures("ip") == 0
    # A window forgets old failures.
    windowed = Rule(free=100, base_delay=1, max_delay=60, window=60)
    counters.reserve("w", windowed, at)
    assert counters.reserve("w", windowed, at + dt.timedelta(seconds=61)).failures == 1
    counters.settle(release=("w",), reset=("a", "b"))
    assert (counters.failures("w"), counters.failures("a"), counters.failures("b")) == (0, 0, 0)


def test_item82_parallel_reservations_never_exceed_the_cap(redis_url: str) -> None:
    counters = RedisCounters(RedisStore(redis_url, namespace="race"))
    rule = Rule(free=100, base_delay=1, max_delay=60, cap=5)
    results: list[bool] = []
    lock = threading.Lock()

    def attempt() -> None:
        allowed = counters.reserve("acct", rule).allowed
        with lock:
            results.append(allowed)

    threads = [threading.Thread(target=attempt) for _ in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results, reverse=True) == [True] * 5 + [False] * 19


def test_item117_lost_scripts_and_connections_come_back(redis_url: str) -> None:
    # A Redis restart flushes the scripts and ends every connection: the next command loads
    # the script again, and a dead connection costs at most one refused call (fail closed),
    # after which the thread's fresh connection serves.
    store = RedisStore(redis_url, namespace="recover-" + secrets.token_hex(4))
    counters = RedisCounters(store)
    rule = Rule(free=100, base_delay=1, max_delay=60, cap=5)
    assert counters.reserve("a", rule).failures == 1
    store.client.script_flush()
    assert counters.reserve("a", rule).failures == 2
    mine = store.command("id", "CLIENT", "ID")
    store.client.client_kill_filter(_id=mine)
    outcomes = []
    for _ in range(2):
        try:
            outcomes.append(counters.reserve("a", rule).failures)
        except StateStoreUnavailable:
            outcomes.append(None)
    assert outcomes in ([None, 3], [3, 4])
    assert store.command("id", "CLIENT", "ID") != mine


# ------------------------------------------------------------------ two nodes, one Redis
@pytest.fixture
def nodes(make_app: Any, redis_url: str) -> tuple[Flask, Flask]:
    return make_app(redis_url=redis_url), make_app(redis_url=redis_url)


def test_item80_lockout_is_shared_by_nodes_and_kept_in_redis(nodes: tuple[Flask, Flask]) -> None:
    a, b = nodes
    citizen = Citizen.create(a)
    for node in (a, b):  # each node's policy cache sees the change at once
        set_policy(node, "lockout.free_attempts", 100)
        set_policy(node, "lockout.max_failures", 3)
    for node in (a, b, a):
        assert login_post(node, citizen.email, "wrong password 1234567").status_code == 401
    assert login_post(b, citizen.email, citizen.password).status_code == 429
    assert isinstance(services(b).login_gate.counters, RedisCounters)
    with services(a).db.session() as session:  # nothing of it in the database
        from sqlalchemy import func, select

        from idp.storage.models import Throttle

        assert session.scalar(select(func.count()).select_from(Throttle)) == 0


def test_item23_pushed_request_lives_in_redis_and_is_used_once(
    nodes: tuple[Flask, Flask],
) -> None:
    a, b = nodes
    citizen = Citizen.create(a)
    rp = RegisteredClient.create(a)
    other = RegisteredClient.create(a, name="Other", redirect_uris=["https://o.gov.example/cb"])
    http_a, http_b = a.test_client(), b.test_client()
    flow = Flow(http_a, rp)
    resp = push(http_a, rp, flow)
    assert resp.status_code == 201, resp.get_json()
    request_uri = resp.get_json()["request_uri"]
    keys = services(a).hot.client.keys(services(a).hot.key("par", "*"))
    assert len(keys) == 1 and request_uri.encode() not in keys[0]
    # Another client's presentation does not consume it; node B takes it once.
    assert authorize_with(http_b, other, request_uri).status_code == 400
    flow.http = http_b
    assert "code" in finish(flow, authorize_with(http_b, rp, request_uri), citizen)
    again = authorize_with(http_a, rp, request_uri)
    assert again.status_code == 400 and "invalid_request_uri" in again.get_data(as_text=True)


def test_item33_assertion_jti_replay_is_refused_on_the_other_node(
    nodes: tuple[Flask, Flask],
) -> None:
    a, b = nodes
    key = kit.ec_key()
    api = kit.api_client(a, auth_method="private_key_jwt", jwks=kit.public_jwks(key))
    form = {
        "grant_type": "client_credentials",
        **kit.assertion_form(kit.assertion(api.client_id, key)),
    }
    assert a.test_client().post("/token", data=form).status_code == 200
    replay = b.test_client().post("/token", data=form)
    assert replay.status_code == 401 and replay.get_json()["error"] == "invalid_client"


def test_item45_dpop_proof_replay_is_refused_on_the_other_node(
    nodes: tuple[Flask, Flask],
) -> None:
    a, b = nodes
    citizen = Citizen.create(a)
    native = RegisteredClient.create(
        a, public=True, redirect_uris=["http://127.0.0.1/callback"], name="Native app"
    )
    flow = Flow(a.test_client(), native, scope="openid profile offline_access")
    holder = Holder()
    access = dpop_tokens(flow, citizen, holder)["access_token"]
    proof = holder.proof("GET", USERINFO_URL, token=access)
    headers = {"Authorization": f"DPoP {access}", "DPoP": proof}
    assert a.test_client().get("/userinfo", headers=headers).status_code == 200
    replay = b.test_client().get("/userinfo", headers=headers)
    assert replay.status_code == 401 and replay.get_json()["error"] == "invalid_dpop_proof"
    assert services(a).hot.client.keys(services(a).hot.key("dpop", "*"))


# ------------------------------------------------------------------ Redis down: fail closed
def test_item117_with_redis_down_nothing_is_checked_against_nothing(make_app: Any) -> None:
    app = make_app(redis_url=DEAD_REDIS)
    citizen = Citizen.create(app)
    rp = RegisteredClient.create(app)
    # A password is never checked without its counters: a translated 503 page.
    page = login_post(app, citizen.email, citizen.password)
    assert page.status_code == 503 and page.headers["Retry-After"] == "5"
    assert "服务暂时不可用" in page.get_data(as_text=True)
    assert "yitong_sso" not in page.headers.get("Set-Cookie", "")
    # Protocol endpoints answer temporarily_unavailable, never a 500.
    http = app.test_client()
    pushed = push(http, rp, Flow(http, rp))
    assert pushed.status_code == 503
    assert pushed.get_json()["error"] == "temporarily_unavailable"
    key = kit.ec_key()
    api = kit.api_client(app, auth_method="private_key_jwt", jwks=kit.public_jwks(key))
    form = {
        "grant_type": "client_credentials",
        **kit.assertion_form(kit.assertion(api.client_id, key)),
    }
    token = http.post("/token", data=form)
    assert token.status_code == 503 and token.get_json()["error"] == "temporarily_unavailable"
    # The load balancer is told: not ready (Redis down), but alive.
    ready = http.get("/readyz")
    assert ready.status_code == 503 and ready.get_json()["redis"] == "down"
    assert http.get("/healthz").status_code == 200
    # Client-secret flows need no Redis and keep working.
    secret = http.post("/token", data={"grant_type": "client_credentials"}, headers=rp.basic())
    assert secret.status_code in (200, 400), secret.get_json()
    assert secret.get_json().get("error") != "temporarily_unavailable"

"""TOTP as an attacker sees it (SECURITY-CHECKLIST items 70-75; RFC 6238 §5.2).

Every test drives the real pages through the Flask test client against the real database.
"""

from __future__ import annotations

import base64
import threading
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select, update

from idp.interaction import mfa
from idp.storage.models import AuditEvent, Throttle, TotpCredential
from tests.helpers import Flow, csrf_token, query_of
from tests.interaction.mfa_kit import (
    ACR_MFA,
    code,
    enrol_totp,
    failures,
    login_page_post,
    other_code,
    page,
    services,
    set_policy,
    submit,
    to_challenge,
)


def _signed_in_client(app: Flask, citizen: Any) -> Any:
    client = app.test_client()
    resp = login_page_post(client, citizen.email, citizen.password)
    assert resp.status_code == 303, resp.get_data(as_text=True)[:300]
    return client


# ----------------------------------------------------------------------------- item 74
def test_item74_enrolment_secret_is_160_bits_encrypted_and_active_only_after_a_code(
    app: Flask, citizen: Any
) -> None:
    client = _signed_in_client(app, citizen)
    html = client.get("/account/security").get_data(as_text=True)
    resp = client.post("/account/security/totp", data={"csrf_token": csrf_token(html)})
    assert resp.status_code == 200
    enrol = resp.get_data(as_text=True)
    assert 'src="data:image/svg+xml;base64,' in enrol  # the QR code, inline
    secret = enrol.split('id="totp-secret">')[1].split("<")[0]
    assert len(base64.b32decode(secret)) * 8 >= 160
    with services(app).db.session() as s:  # nothing is active before a code proves it
        assert s.get(TotpCredential, citizen.id) is None

    wrong = client.post(
        "/account/security/totp/confirm",
        data={"csrf_token": csrf_token(enrol), "code": other_code(secret)},
    )
    assert wrong.status_code == 401
    with services(app).db.session() as s:
        assert s.get(TotpCredential, citizen.id) is None

    proving = code(secret)
    ok = client.post(
        "/account/security/totp/confirm", data={"csrf_token": csrf_token(enrol), "code": proving}
    )
    assert ok.status_code == 200  # the recovery codes, shown once
    assert ok.get_data(as_text=True).count("<li><code>") == 10
    with services(app).db.session() as s:
        row = s.get(TotpCredential, citizen.id)
        assert row is not None and row.confirmed_at is not None
        assert secret.encode() not in row.secret_ciphertext  # encrypted at rest
        assert mfa.open_totp_secret(services(app).kek, citizen.id, row.secret_ciphertext) == secret
        assert not any(secret in str(e.details) for e in s.scalars(select(AuditEvent)))
    # The secret cannot be read back through any page.
    assert secret not in client.get("/account/security").get_data(as_text=True)

    # The proving code cannot then log in (item 74, third bullet).
    other = app.test_client()
    resp = login_page_post(other, citizen.email, citizen.password)
    assert "/login/mfa" in resp.headers["Location"]
    html = page(other, resp)
    assert submit(other, html, "totp", proving).status_code == 401


# ----------------------------------------------------------------------------- item 70
def test_item70_a_code_is_accepted_once_within_its_step(app: Flask, citizen: Any, rp: Any) -> None:
    secret = enrol_totp(app, citizen.id)
    now_code = code(secret)
    first = Flow(app.test_client(), rp)
    html = to_challenge(first, citizen)
    ok = submit(first.http, html, "totp", now_code)
    assert ok.status_code == 303 and "/authorize/resume" in ok.headers["Location"]

    second = Flow(app.test_client(), rp)
    html = to_challenge(second, citizen)
    replay = submit(second.http, html, "totp", now_code)
    assert replay.status_code == 401
    assert 'id="mfa-error"' in replay.get_data(as_text=True)


def test_item70_after_step_t_a_code_of_step_t_minus_1_is_rejected(app: Flask, citizen: Any) -> None:
    secret = enrol_totp(app, citizen.id)
    db, kek = services(app).db, services(app).kek
    assert mfa.verify_totp(db, kek, citizen.id, code(secret, +1))
    assert not mfa.verify_totp(db, kek, citizen.id, code(secret, 0))
    assert not mfa.verify_totp(db, kek, citizen.id, code(secret, -1))


# ----------------------------------------------------------------------------- item 73
@pytest.mark.parametrize("steps", [-2, 2, -3, 3])
def test_item73_codes_two_steps_away_are_rejected(app: Flask, citizen: Any, steps: int) -> None:
    secret = enrol_totp(app, citizen.id)
    assert not mfa.verify_totp(services(app).db, services(app).kek, citizen.id, code(secret, steps))


@pytest.mark.parametrize("steps", [-1, 1])
def test_item73_one_step_of_drift_is_accepted(app: Flask, citizen: Any, steps: int) -> None:
    secret = enrol_totp(app, citizen.id)
    assert mfa.verify_totp(services(app).db, services(app).kek, citizen.id, code(secret, steps))


def test_item73_a_client_supplied_time_is_ignored(app: Flask, citizen: Any, rp: Any) -> None:
    secret = enrol_totp(app, citizen.id)
    flow = Flow(app.test_client(), rp)
    html = to_challenge(flow, citizen)
    future = code(secret, 10)
    resp = submit(flow.http, html, "totp", future, timestamp=str(10**10), time=str(10**10))
    assert resp.status_code == 401


# ----------------------------------------------------------------------------- item 71
def test_item71_ten_parallel_submissions_of_one_code_give_exactly_one_login(
    app: Flask, citizen: Any, rp: Any
) -> None:
    set_policy(app, "mfa.max_attempts", 10)  # all ten reach the TOTP check
    secret = enrol_totp(app, citizen.id)
    pages = []
    for _ in range(10):
        flow = Flow(app.test_client(), rp)
        pages.append((flow, to_challenge(flow, citizen)))
    the_code = code(secret)
    barrier = threading.Barrier(10)
    results: list[int] = []
    lock = threading.Lock()

    def worker(flow: Flow, html: str) -> None:
        barrier.wait()
        resp = submit(flow.http, html, "totp", the_code)
        with lock:
            results.append(resp.status_code)

    threads = [threading.Thread(target=worker, args=pair) for pair in pages]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(results) == [303] + [401] * 9, results


def test_item71_the_compare_and_set_itself_under_threads(app: Flask, citizen: Any) -> None:
    secret = enrol_totp(app, citizen.id)
    the_code = code(secret)
    db, kek = services(app).db, services(app).kek
    barrier = threading.Barrier(10)
    outcomes: list[bool] = []

    def worker() -> None:
        barrier.wait()
        outcomes.append(mfa.verify_totp(db, kek, citizen.id, the_code))

    threads = [threading.Thread(target=worker) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert outcomes.count(True) == 1 and len(outcomes) == 10


# ----------------------------------------------------------------------------- item 72
def test_item72_five_wrong_codes_end_the_pending_login(app: Flask, citizen: Any, rp: Any) -> None:
    secret = enrol_totp(app, citizen.id)
    flow = Flow(app.test_client(), rp)
    html = to_challenge(flow, citizen)
    saved_cookie = flow.http.get_cookie("yitong")
    assert saved_cookie is not None
    for attempt in range(1, 5):
        resp = submit(flow.http, html, "totp", other_code(secret))
        assert resp.status_code == 401, attempt
        html = resp.get_data(as_text=True)
    fifth = submit(flow.http, html, "totp", other_code(secret))
    assert fifth.status_code == 401
    body = fifth.get_data(as_text=True)
    assert 'id="login-form"' in body and 'id="login-error"' in body  # password step again
    # The right code no longer helps this pending login ...
    assert submit(flow.http, html, "totp", code(secret)).status_code == 401
    # ... not even when the browser puts back its earlier cookie (the pid is dead server-side).
    flow.http.set_cookie("yitong", saved_cookie.value)
    late = submit(flow.http, html, "totp", code(secret))
    assert late.status_code == 401 and 'id="login-form"' in late.get_data(as_text=True)


def test_item72_the_account_counter_survives_restarting_the_login(
    app: Flask, citizen: Any, rp: Any
) -> None:
    secret = enrol_totp(app, citizen.id)
    flow = Flow(app.test_client(), rp)
    html = to_challenge(flow, citizen)
    for _ in range(5):
        html = submit(flow.http, html, "totp", other_code(secret)).get_data(as_text=True)
    assert failures(app, f"mfa:{citizen.id}") == 5

    # The attacker knows the password and simply starts again: no fresh five tries.
    restart = Flow(app.test_client(), rp)
    html = to_challenge(restart, citizen)
    refused = submit(restart.http, html, "totp", code(secret))
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) >= 1
    assert failures(app, f"mfa:{citizen.id}") == 5  # not reset, and the refused try not verified

    # Once the wait is over the owner gets in, and success clears the counter.
    with services(app).db.transaction() as s:
        s.execute(
            update(Throttle).where(Throttle.key == f"mfa:{citizen.id}").values(blocked_until=None)
        )
    ok = submit(restart.http, html, "totp", code(secret))
    assert ok.status_code == 303
    assert failures(app, f"mfa:{citizen.id}") == 0


def test_item72_the_counter_is_shared_by_all_workers(make_app: Any, rp_factory: Any = None) -> None:
    from tests.helpers import Citizen, RegisteredClient

    worker_a = make_app()
    worker_b = make_app()  # a second process of the same deployment: same database
    citizen = Citizen.create(worker_a)
    rp = RegisteredClient.create(worker_a)
    secret = enrol_totp(worker_a, citizen.id)
    for worker, wrong in ((worker_a, 3), (worker_b, 2)):
        flow = Flow(worker.test_client(), rp)
        html = to_challenge(flow, citizen)
        for _ in range(wrong):
            html = submit(flow.http, html, "totp", other_code(secret)).get_data(as_text=True)
    assert failures(worker_b, f"mfa:{citizen.id}") == 5
    flow = Flow(worker_a.test_client(), rp)
    html = to_challenge(flow, citizen)
    assert submit(flow.http, html, "totp", code(secret)).status_code == 429


# ----------------------------------------------------------------------------- the whole login
def test_password_plus_totp_gives_an_mfa_id_token(app: Flask, citizen: Any, rp: Any) -> None:
    from tests.oauth.test_code_flow import verify_id_token

    secret = enrol_totp(app, citizen.id)
    flow = Flow(app.test_client(), rp)
    html = to_challenge(flow, citizen)
    assert 'id="totp-form"' in html and 'id="recovery-section"' not in html
    params = flow.follow_to_code(submit(flow.http, html, "totp", code(secret)))
    assert params["state"] == flow.state
    token = flow.token(params["code"]).get_json()
    claims = verify_id_token(
        flow.http, token["id_token"], rp.client_id, access_token=token["access_token"]
    )
    assert claims["acr"] == ACR_MFA
    assert sorted(claims["amr"]) == ["mfa", "otp", "pwd"]


def test_cancel_at_the_second_factor_is_access_denied(app: Flask, citizen: Any, rp: Any) -> None:
    enrol_totp(app, citizen.id)
    flow = Flow(app.test_client(), rp)
    html = to_challenge(flow, citizen)
    resp = submit(flow.http, html, "cancel")
    assert resp.status_code in (302, 303)
    assert query_of(resp.headers["Location"])["error"] == "access_denied"


def test_forced_enrolment_at_login_when_policy_requires_mfa(
    app: Flask, citizen: Any, rp: Any
) -> None:
    set_policy(app, "mfa.required_for", ["everyone"])
    flow = Flow(app.test_client(), rp)
    resp = flow.login(flow.authorize(), citizen.email, citizen.password)
    html = page(flow.http, resp)
    assert 'id="enrol-required"' in html
    secret = html.split('id="totp-secret">')[1].split("<")[0]
    data = {
        "csrf_token": csrf_token(html),
        "ix": html.split('name="ix" value="')[1].split('"')[0],
        "code": code(secret),
    }
    done = flow.http.post("/login/mfa/enrol", data=data)
    assert done.status_code == 200 and done.get_data(as_text=True).count("<li><code>") == 10
    cont = (
        done.get_data(as_text=True).split('id="continue"')[0].rsplit('href="', 1)[1].split('"')[0]
    )
    params = flow.follow_to_code(flow.http.get(cont.replace("&amp;", "&")))
    token = flow.token(params["code"]).get_json()
    from tests.oauth.test_code_flow import verify_id_token

    assert (
        verify_id_token(
            flow.http, token["id_token"], rp.client_id, access_token=token["access_token"]
        )["acr"]
        == ACR_MFA
    )

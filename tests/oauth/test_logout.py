"""Logout across services: RP-initiated, back-channel and front-channel (issue 3 item 9).

SECURITY-CHECKLIST items 63, 64, 65, 69 (and 101, 105 for the logout pages).  Back-channel
receivers are real HTTP servers on loopback, reached through the testing-only allow-list;
logout tokens are verified with python-jose against the published JWKS.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from jose import jwt as jose_jwt
from sqlalchemy import select

from idp.oauth import logout as logout_mod
from idp.storage.models import Grant, LogoutDelivery, SsoSession, Token
from tests.helpers import ISSUER, Citizen, Flow, RegisteredClient, csrf_token, hidden, query_of
from tests.services.recorder import Recorder


# ------------------------------------------------------------------ a back-channel receiver
class Receiver(Recorder):
    """Local RP endpoint: records POSTed logout tokens; answers with ``status`` after ``delay``."""

    @property
    def tokens(self) -> list[str]:
        return self.posted("logout_token")

    def url(self, path: str = "/backchannel") -> str:
        return super().url(path)


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    made = [Receiver().start() for _ in range(3)]
    yield made
    for r in made:
        r.stop()


@pytest.fixture
def bcl_app(make_app, receivers):
    return make_app(outbound_test_allowlist=tuple(r.host for r in receivers))


def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


# ------------------------------------------------------------------ helpers
def sign_in(
    http: Any, citizen: Citizen, rp: RegisteredClient, scope: str = "openid profile"
) -> dict[str, Any]:
    """A full flow; returns the token response (with the ID token to use as hint)."""
    flow = Flow(http, rp, scope=scope)
    params = flow.run(citizen)
    resp = flow.token(params["code"])
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()  # type: ignore[no-any-return]


def end_session(http: Any, method: str = "GET", **params: Any) -> Any:
    params = {k: v for k, v in params.items() if v is not None}
    if method == "GET":
        return http.get("/logout?" + urlencode(params, doseq=True))
    return http.post("/logout", data=params)


def is_signed_in(http: Any) -> bool:
    return http.get("/account").status_code == 200


def confirm(http: Any, page: Any) -> Any:
    html = page.get_data(as_text=True)
    data = {"csrf_token": csrf_token(html), "action": "logout"}
    if 'name="lr"' in html:
        data["lr"] = hidden(html, "lr")
    return http.post("/logout", data=data)


def assert_confirmation_page(resp: Any) -> None:
    assert resp.status_code == 200, (resp.status_code, resp.headers.get("Location"))
    assert "Location" not in resp.headers
    html = resp.get_data(as_text=True)
    assert 'id="logout-form"' in html
    assert resp.headers["X-Frame-Options"] == "DENY"  # checklist 101
    assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]


@pytest.fixture
def logout_rp(app) -> RegisteredClient:
    return RegisteredClient.create(
        app,
        name="Tax service",
        redirect_uris=["https://tax.gov.example/cb"],
        post_logout_redirect_uris=[
            "https://tax.gov.example/bye",
            "https://tax.gov.example/bye?lang=zh",
        ],
    )


# ------------------------------------------------------------------ item 63: RP-initiated
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_item63_valid_hint_and_registered_uri_redirects_with_state(
    client, citizen, logout_rp, method, services
):
    hint = sign_in(client, citizen, logout_rp)["id_token"]
    resp = end_session(
        client,
        method,
        id_token_hint=hint,
        post_logout_redirect_uri="https://tax.gov.example/bye",
        state="st+/=ate",
    )
    assert resp.status_code == (302 if method == "GET" else 303)
    location = resp.headers["Location"]
    assert location.startswith("https://tax.gov.example/bye?")
    assert query_of(location) == {"state": "st+/=ate"}
    assert not is_signed_in(client)
    with services.db.session() as session:
        assert session.scalars(select(SsoSession)).one().ended_at is not None


def test_item63_registered_uri_with_its_own_query_keeps_it(client, citizen, logout_rp):
    hint = sign_in(client, citizen, logout_rp)["id_token"]
    resp = end_session(
        client,
        id_token_hint=hint,
        post_logout_redirect_uri="https://tax.gov.example/bye?lang=zh",
        state="s",
    )
    assert resp.headers["Location"] == "https://tax.gov.example/bye?lang=zh&state=s"


def test_item63_no_state_no_state(client, citizen, logout_rp):
    hint = sign_in(client, citizen, logout_rp)["id_token"]
    resp = end_session(
        client, id_token_hint=hint, post_logout_redirect_uri="https://tax.gov.example/bye"
    )
    assert resp.headers["Location"] == "https://tax.gov.example/bye"


def _forged_hints(app: Any, real: str) -> dict[str, str]:
    import base64
    import json

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    claims = jose_jwt.get_unverified_claims(real)
    header = jose_jwt.get_unverified_header(real)
    b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()  # noqa: E731
    none_hint = (
        b64(json.dumps({"alg": "none", "typ": "JWT"}).encode()) + "." + real.split(".")[1] + "."
    )
    pem = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    other_key = jose_jwt.encode(claims, pem, algorithm="RS256", headers={"kid": header["kid"]})
    parts = real.split(".")
    tampered_claims = dict(claims, sub="someone-else")
    tampered = parts[0] + "." + b64(json.dumps(tampered_claims).encode()) + "." + parts[2]
    return {"alg_none": none_hint, "other_key": other_key, "tampered": tampered, "garbage": "x.y.z"}


@pytest.mark.parametrize(
    "case",
    [
        "unregistered_uri",
        "query_added",
        "no_hint",
        "alg_none",
        "other_key",
        "tampered",
        "garbage",
        "other_clients_uri",
        "client_id_mismatch",
        "repeated_uri",
        "fragment_added",
        "case_changed",
    ],
)
def test_item63_bad_requests_never_redirect(app, client, citizen, logout_rp, case):
    hint = sign_in(client, citizen, logout_rp)["id_token"]
    uri: Any = "https://tax.gov.example/bye"
    extra: dict[str, Any] = {}
    if case == "unregistered_uri":
        uri = "https://evil.example/bye"
    elif case == "query_added":
        uri = "https://tax.gov.example/bye?foo=bar"
    elif case == "fragment_added":
        uri = "https://tax.gov.example/bye#x"
    elif case == "case_changed":
        uri = "https://TAX.gov.example/bye"
    elif case == "no_hint":
        hint = None
    elif case in ("alg_none", "other_key", "tampered", "garbage"):
        hint = _forged_hints(app, hint)[case]
    elif case == "other_clients_uri":
        other = RegisteredClient.create(
            app,
            name="Other",
            redirect_uris=["https://o.gov.example/cb"],
            post_logout_redirect_uris=["https://o.gov.example/bye"],
        )
        uri = "https://o.gov.example/bye"
        del other
    elif case == "client_id_mismatch":
        extra["client_id"] = "someone-else"
    elif case == "repeated_uri":
        uri = ["https://tax.gov.example/bye", "https://tax.gov.example/bye"]
    resp = end_session(client, id_token_hint=hint, post_logout_redirect_uri=uri, state="s", **extra)
    assert_confirmation_page(resp)
    assert is_signed_in(client)  # nothing happened without confirmation
    done = confirm(client, resp)
    assert done.status_code == 303
    assert urlsplit(done.headers["Location"]).path == "/logged-out"
    assert not is_signed_in(client)


def test_item63_expired_hint_is_still_a_hint(client, citizen, logout_rp, services):
    real = sign_in(client, citizen, logout_rp)["id_token"]
    claims = jose_jwt.get_unverified_claims(real)
    claims["iat"] -= 7200
    claims["exp"] = int(time.time()) - 3600
    expired = services.keys.signing_key("RS256").sign_jwt(claims)
    resp = end_session(
        client, id_token_hint=expired, post_logout_redirect_uri="https://tax.gov.example/bye"
    )
    assert resp.headers["Location"] == "https://tax.gov.example/bye"


def test_access_token_is_not_an_id_token_hint(app, client, citizen):
    # checklist 51: a JWT access token (typ at+jwt) is no hint.
    jwt_rp = RegisteredClient.create(
        app,
        name="JWT AT",
        access_token_format="jwt",
        post_logout_redirect_uris=["https://c1.gov.example/bye"],
    )
    tokens = sign_in(client, citizen, jwt_rp)
    resp = end_session(
        client,
        id_token_hint=tokens["access_token"],
        post_logout_redirect_uri="https://c1.gov.example/bye",
    )
    assert_confirmation_page(resp)


def test_valid_hint_for_another_session_asks_then_redirects(app, client, citizen, logout_rp):
    other = Citizen.create(app)
    other_hint = sign_in(app.test_client(), other, logout_rp)["id_token"]
    sign_in(client, citizen, logout_rp)
    resp = end_session(
        client,
        id_token_hint=other_hint,
        post_logout_redirect_uri="https://tax.gov.example/bye",
        state="abc",
    )
    assert_confirmation_page(resp)
    assert "Tax service" in resp.get_data(as_text=True)
    assert is_signed_in(client)
    done = confirm(client, resp)
    assert done.headers["Location"] == "https://tax.gov.example/bye?state=abc"
    assert not is_signed_in(client)


def test_tampered_confirmation_token_does_not_redirect(client, citizen, logout_rp):
    sign_in(client, citizen, logout_rp)
    page = end_session(client)
    html = page.get_data(as_text=True)
    resp = client.post(
        "/logout", data={"csrf_token": csrf_token(html), "lr": hidden(html, "lr") + "x"}
    )
    assert urlsplit(resp.headers["Location"]).path == "/logged-out"


def test_without_a_session_a_valid_request_goes_back(client, citizen, logout_rp, app):
    hint = sign_in(app.test_client(), citizen, logout_rp)["id_token"]
    resp = end_session(
        client,
        id_token_hint=hint,
        post_logout_redirect_uri="https://tax.gov.example/bye",
        state="x",
    )
    assert resp.headers["Location"] == "https://tax.gov.example/bye?state=x"
    resp = end_session(client, post_logout_redirect_uri="https://tax.gov.example/bye")
    assert urlsplit(resp.headers["Location"]).path == "/logged-out"


def test_confirmation_needs_our_csrf_token(client, citizen, logout_rp):
    # checklist 105: a cross-site POST cannot confirm a logout.
    sign_in(client, citizen, logout_rp)
    resp = client.post(
        "/logout",
        data={"csrf_token": "forged", "action": "logout"},
        headers={"Origin": "https://evil.example"},
    )
    assert resp.status_code == 400
    assert is_signed_in(client)
    resp = client.post(
        "/logout", data={"action": "logout"}, headers={"Origin": "https://evil.example"}
    )
    assert_confirmation_page(resp)
    assert is_signed_in(client)


def test_account_page_sign_out_everywhere(client, citizen, logout_rp):
    sign_in(client, citizen, logout_rp)
    page = client.get("/account")
    resp = client.post("/logout", data={"csrf_token": csrf_token(page.get_data(as_text=True))})
    assert resp.status_code == 303 and urlsplit(resp.headers["Location"]).path == "/logged-out"
    assert client.get("/logged-out").status_code == 200
    assert not is_signed_in(client)


# ------------------------------------------------------------------ items 64, 69: really over
def test_item64_after_logout_everything_of_the_session_is_dead(
    app, client, citizen, logout_rp, services
):
    tokens = sign_in(client, citizen, logout_rp, scope="openid profile")
    offline = sign_in(
        client,
        citizen,
        RegisteredClient.create(app, name="Offline", redirect_uris=["https://off.gov.example/cb"]),
        scope="openid offline_access",
    )
    cookie = client.get_cookie("yitong_sso").value
    resp = end_session(
        client,
        id_token_hint=tokens["id_token"],
        post_logout_redirect_uri="https://tax.gov.example/bye",
    )
    assert resp.status_code == 302
    # The old cookie replayed: not signed in; prompt=none: login_required.
    client.set_cookie("yitong_sso", cookie, domain="localhost")
    assert not is_signed_in(client)
    flow = Flow(client, logout_rp)
    assert query_of(flow.authorize(prompt="none").headers["Location"])["error"] == "login_required"
    # The session's access token is dead; the offline grant survives (OIDC Core §11).
    info = client.get("/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert info.status_code == 401
    with services.db.session() as session:
        grants = {g.client_id: g for g in session.scalars(select(Grant))}
        assert grants[logout_rp.client_id].revoked_at is not None
        assert grants[logout_rp.client_id].revoked_reason == "logout"
        offline_grant = next(g for g in grants.values() if g.offline)
        assert offline_grant.revoked_at is None
        live = session.scalars(
            select(Token).where(
                Token.grant_id == grants[logout_rp.client_id].id, Token.revoked_at.is_(None)
            )
        ).all()
        assert live == []
    if "refresh_token" in tokens:
        refresh = client.post(
            "/token",
            data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
            headers=RegisteredClient(logout_rp.client_id, logout_rp.secret, []).basic(),
        )
        assert refresh.status_code == 400 and refresh.get_json()["error"] == "invalid_grant"
    del offline


def test_item69_next_user_on_the_same_browser_gets_nothing_of_the_previous(
    app, client, citizen, logout_rp
):
    sign_in(client, citizen, logout_rp)
    page = client.get("/account")
    client.post("/logout", data={"csrf_token": csrf_token(page.get_data(as_text=True))})
    other = Citizen.create(app)
    tokens = sign_in(client, other, logout_rp)
    assert jose_jwt.get_unverified_claims(tokens["id_token"])["sub"] == other.id
    info = client.get("/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert info.get_json()["sub"] == other.id


# ------------------------------------------------------------------ item 65: back-channel
def _bcl_client(
    app: Any, receiver: Receiver, name: str, host: str, **extra: Any
) -> RegisteredClient:
    return RegisteredClient.create(
        app,
        name=name,
        redirect_uris=[f"https://{host}/cb"],
        post_logout_redirect_uris=[f"https://{host}/bye"],
        backchannel_logout_uri=receiver.url(),
        **extra,
    )


def verify_logout_token(http: Any, token: str, audience: str) -> dict[str, Any]:
    header = jose_jwt.get_unverified_header(token)
    assert header["typ"] == "logout+jwt"
    jwks = http.get("/jwks").get_json()
    key = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    return jose_jwt.decode(token, key, algorithms=[header["alg"]], audience=audience, issuer=ISSUER)


def test_item65_every_client_of_the_session_gets_a_logout_token(bcl_app, receivers):
    app = bcl_app
    http = app.test_client()
    citizen = Citizen.create(app)
    a = _bcl_client(app, receivers[0], "Portal", "portal.gov.example")
    b = _bcl_client(app, receivers[1], "Housing", "housing.gov.example", subject_type="pairwise")
    untouched = _bcl_client(app, receivers[2], "Never used", "never.gov.example")
    hint = sign_in(http, citizen, a)["id_token"]
    b_tokens = sign_in(http, citizen, b)
    sid = jose_jwt.get_unverified_claims(hint)["sid"]
    resp = end_session(
        http, id_token_hint=hint, post_logout_redirect_uri="https://portal.gov.example/bye"
    )
    assert resp.status_code == 302
    app.extensions["yitong"].logout.wait()
    wait_for(lambda: receivers[0].tokens and receivers[1].tokens)
    assert receivers[2].tokens == []
    for receiver, rp in ((receivers[0], a), (receivers[1], b)):
        assert len(receiver.tokens) == 1
        claims = verify_logout_token(http, receiver.tokens[0], rp.client_id)
        assert claims["events"] == {"http://schemas.openid.net/event/backchannel-logout": {}}
        assert claims["sid"] == sid
        assert "nonce" not in claims
        assert claims["jti"] and claims["iat"] <= time.time() + 5 and claims["exp"] > time.time()
    # Each client sees its own subject (pairwise for b).
    assert verify_logout_token(http, receivers[0].tokens[0], a.client_id)["sub"] == citizen.id
    b_sub = jose_jwt.get_unverified_claims(b_tokens["id_token"])["sub"]
    assert b_sub != citizen.id
    assert verify_logout_token(http, receivers[1].tokens[0], b.client_id)["sub"] == b_sub
    with app.extensions["yitong"].db.session() as session:
        rows = session.scalars(select(LogoutDelivery)).all()
        assert len(rows) == 2 and all(r.delivered_at is not None and r.attempts == 1 for r in rows)
    del untouched


def test_item65_slow_and_failing_clients_never_block_or_undo_logout(bcl_app, receivers):
    app = bcl_app
    http = app.test_client()
    citizen = Citizen.create(app)
    # The slow receiver answers only once the user already has the answer: if logout waited for
    # delivery it would hang, and a delivery cut short by a timeout would not count as delivered.
    receivers[0].gate = threading.Event()
    receivers[1].status = 500
    slow = _bcl_client(app, receivers[0], "Slow", "slow.gov.example")
    failing = _bcl_client(app, receivers[1], "Failing", "fail.gov.example")
    sign_in(http, citizen, slow)
    hint = sign_in(http, citizen, failing)["id_token"]
    resp = end_session(
        http, id_token_hint=hint, post_logout_redirect_uri="https://fail.gov.example/bye"
    )
    assert resp.status_code == 302 and receivers[0].tokens == []
    receivers[0].gate.set()
    assert not is_signed_in(http)
    dispatcher = app.extensions["yitong"].logout
    dispatcher.wait(15)
    dispatcher.close()
    services = app.extensions["yitong"]
    with services.db.session() as session:
        rows = {r.client_id: r for r in session.scalars(select(LogoutDelivery))}
        assert rows[slow.client_id].delivered_at is not None
        bad = rows[failing.client_id]
        assert bad.delivered_at is None and bad.attempts == 1 and bad.last_error == "HTTP 500"
        assert bad.next_attempt_at > dt.datetime.now(dt.UTC)
        sso = session.scalars(select(SsoSession)).one()
        assert sso.ended_at is not None  # the failure did not undo anything
    # Retries with back-off: nothing is due now; when due and the client recovered, delivered.
    poster = dispatcher.poster
    report = logout_mod.deliver_due(services.db, poster)
    assert report.delivered == report.failed == 0
    receivers[1].status = 200
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=11)
    report = logout_mod.deliver_due(services.db, poster, now=lambda: later)
    assert report.delivered == 1
    assert len(receivers[1].tokens) == 2


def test_backoff_doubles_and_gives_up(bcl_app, receivers):
    app = bcl_app
    services = app.extensions["yitong"]
    receivers[0].status = 503
    with services.db.transaction() as session:
        session.add(
            LogoutDelivery(
                client_id="c",
                uri=receivers[0].url(),
                logout_token="t",
                next_attempt_at=dt.datetime.now(dt.UTC),
            )
        )
    poster = services.logout.poster
    clock = dt.datetime.now(dt.UTC)
    delays = []
    for _ in range(logout_mod.MAX_ATTEMPTS):
        logout_mod.deliver_due(services.db, poster, now=lambda at=clock: at)
        with services.db.session() as session:
            row = session.scalars(select(LogoutDelivery)).one()
        if row.abandoned_at is not None:
            break
        delays.append(round((row.next_attempt_at - clock).total_seconds()))
        clock = row.next_attempt_at
    assert delays[:4] == [10, 20, 40, 80]
    assert row.abandoned_at is not None and row.attempts == logout_mod.MAX_ATTEMPTS
    assert len(receivers[0].tokens) == logout_mod.MAX_ATTEMPTS


@pytest.mark.parametrize(
    ("status", "retried"), [(400, False), (401, False), (429, True), (408, True), (502, True)]
)
def test_refusals_are_not_retried_but_transient_errors_are(bcl_app, receivers, status, retried):
    services = bcl_app.extensions["yitong"]
    receivers[0].status = status
    with services.db.transaction() as session:
        session.add(
            LogoutDelivery(
                client_id="c",
                uri=receivers[0].url(),
                logout_token="t",
                next_attempt_at=dt.datetime.now(dt.UTC),
            )
        )
    logout_mod.deliver_due(services.db, services.logout.poster)
    with services.db.session() as session:
        row = session.scalars(select(LogoutDelivery)).one()
    assert row.last_error == f"HTTP {status}"
    assert (row.abandoned_at is None) is retried


def test_parallel_workers_deliver_each_token_once(bcl_app, receivers):
    app = bcl_app
    services = app.extensions["yitong"]
    with services.db.transaction() as session:
        for n in range(6):
            session.add(
                LogoutDelivery(
                    client_id=f"c{n}",
                    uri=receivers[0].url(),
                    logout_token=f"t{n}",
                    next_attempt_at=dt.datetime.now(dt.UTC),
                )
            )
    poster = services.logout.poster
    barrier = threading.Barrier(3)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            barrier.wait()
            logout_mod.deliver_due(services.db, poster)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert sorted(receivers[0].tokens) == [f"t{n}" for n in range(6)]


def test_item59_backchannel_to_a_private_address_is_refused(app, client, citizen, receivers):
    # No allow-list: the loopback receiver must not be contacted (SSRF guard).
    rp = _bcl_client(app, receivers[0], "Loopback", "lb.gov.example")
    hint = sign_in(client, citizen, rp)["id_token"]
    end_session(client, id_token_hint=hint)
    dispatcher = app.extensions["yitong"].logout
    dispatcher.wait()
    dispatcher.close()
    assert receivers[0].tokens == []
    with app.extensions["yitong"].db.session() as session:
        row = session.scalars(select(LogoutDelivery)).one()
        assert row.delivered_at is None and "https" in (row.last_error or "")


def test_cli_logout_deliver(bcl_app, receivers, monkeypatch, database_url, tmp_path):
    from click.testing import CliRunner

    from idp.cli import main
    from tests.helpers import TEST_KEK

    services = bcl_app.extensions["yitong"]
    with services.db.transaction() as session:
        session.add(
            LogoutDelivery(
                client_id="c",
                uri=receivers[0].url(),
                logout_token="tok",
                next_attempt_at=dt.datetime.now(dt.UTC),
            )
        )
    env = {
        "YITONG_ENV": "testing",
        "YITONG_ISSUER": ISSUER,
        "YITONG_DATABASE_URL": database_url,
        "YITONG_INSTANCE_DIR": str(tmp_path / "i"),
        "YITONG_SECRET_KEY": "s" * 40,
        "YITONG_KEY_ENCRYPTION_KEY": TEST_KEK,
        "YITONG_OUTBOUND_TEST_ALLOWLIST": receivers[0].host,
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    result = CliRunner().invoke(main, ["logout", "deliver"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "delivered 1" in result.output
    assert receivers[0].tokens == ["tok"]


# ------------------------------------------------------------------ front-channel
def test_frontchannel_iframes_with_iss_and_sid_and_a_tight_csp(app, client, citizen):
    fc = RegisteredClient.create(
        app,
        name="Front",
        redirect_uris=["https://front.gov.example/cb"],
        post_logout_redirect_uris=["https://front.gov.example/bye"],
        frontchannel_logout_uri="https://front.gov.example/fc-logout?x=1",
    )
    plain = RegisteredClient.create(
        app, name="Plain", redirect_uris=["https://plain.gov.example/cb"]
    )
    hint = sign_in(client, citizen, fc)["id_token"]
    sign_in(client, citizen, plain)
    sid = jose_jwt.get_unverified_claims(hint)["sid"]
    resp = end_session(
        client,
        id_token_hint=hint,
        post_logout_redirect_uri="https://front.gov.example/bye",
        state="s1",
    )
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    expected = "https://front.gov.example/fc-logout?x=1&amp;" + urlencode(
        {"iss": ISSUER, "sid": sid}
    ).replace("&", "&amp;")
    assert f'src="{expected}"' in html
    assert html.count("<iframe") == 1
    assert 'href="https://front.gov.example/bye?state=s1"' in html
    csp = resp.headers["Content-Security-Policy"]
    assert "frame-src https://front.gov.example;" in csp
    assert "frame-ancestors 'none'" in csp
    nonce = csp.split("'nonce-")[1].split("'")[0]
    assert f'<script nonce="{nonce}">' in html
    assert not is_signed_in(client)


def test_logout_pages_carry_the_security_headers(client, citizen, logout_rp):
    # checklist 101, 103, 104 on the confirmation and signed-out pages.
    sign_in(client, citizen, logout_rp)
    for resp in (end_session(client), client.get("/logged-out")):
        assert resp.headers["X-Frame-Options"] == "DENY"
        assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
        assert resp.headers["Referrer-Policy"] == "no-referrer"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert end_session(client).headers["Cache-Control"] == "no-store"

"""Pushed authorization requests (RFC 9126) and request objects (RFC 9101).

SECURITY-CHECKLIST items 22 and 23; issue 3 item 7.  A ``request_uri`` is accepted only from
our own PAR endpoint: the tests for other URIs run a local HTTP server and check that it was
never contacted.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import urlencode

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, OKPKey, RSAKey
from sqlalchemy import select, update

from idp.storage.models import PushedRequest
from tests.helpers import ISSUER, Citizen, Flow, RegisteredClient, query_of

URN = "urn:ietf:params:oauth:request_uri:"


# ------------------------------------------------------------------ helpers
def push(
    client: Any, rp: RegisteredClient, flow: Flow, auth: str = "basic", **overrides: Any
) -> Any:
    data = flow.params(**overrides)
    headers: dict[str, str] = {}
    if auth == "basic":
        headers = rp.basic()
        data.pop("client_id", None)
    elif auth == "post":
        data["client_secret"] = rp.secret
    return client.post("/par", data=data, headers=headers)


def authorize_with(client: Any, rp: RegisteredClient, request_uri: str, **extra: Any) -> Any:
    query = {"client_id": rp.client_id, "request_uri": request_uri, **extra}
    return client.get("/authorize?" + urlencode(query))


def finish(flow: Flow, resp: Any, citizen: Citizen) -> dict[str, str]:
    if resp.status_code in (302, 303) and "/login" in resp.headers["Location"]:
        resp = flow.login(resp, citizen.email, citizen.password)
    return flow.follow_to_code(resp)


def assert_error_page(resp: Any, error: str | None = None) -> None:
    assert 400 <= resp.status_code < 500, (resp.status_code, resp.headers.get("Location"))
    assert "Location" not in resp.headers
    if error:
        assert f'id="error-code">{error}<' in resp.get_data(as_text=True), resp.get_data(
            as_text=True
        )[:600]


class CountingServer:
    """A local HTTP server that records every request it receives."""

    def __init__(self) -> None:
        hits: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hits.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "application/jwt")
                self.end_headers()
                self.wfile.write(b"eyJhbGciOiJub25lIn0.e30.")

            def log_message(self, *args: Any) -> None:
                return None

        self.hits = hits
        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def counting_server() -> Any:
    server = CountingServer()
    yield server
    server.close()


# ------------------------------------------------------------------ PAR (item 23)
def test_par_happy_path(client, citizen, rp, services):
    flow = Flow(client, rp)
    resp = push(client, rp, flow)
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    assert body["request_uri"].startswith(URN)
    assert len(body["request_uri"]) - len(URN) >= 43  # 256 bits
    assert 0 < body["expires_in"] < 600
    assert resp.headers["Cache-Control"] == "no-store"
    # Stored by digest only.
    with services.db.session() as session:
        row = session.scalars(select(PushedRequest)).one()
        assert row.digest != body["request_uri"] and body["request_uri"] not in str(row.params)
        assert (row.expires_at - dt.datetime.now(dt.UTC)).total_seconds() < 600
    params = finish(flow, authorize_with(client, rp, body["request_uri"]), citizen)
    assert "code" in params and params["state"] == flow.state and params["iss"] == ISSUER
    token = flow.token(params["code"])
    assert token.status_code == 200, token.get_json()


def test_par_with_client_secret_post_and_public_client(client, app, citizen, public_rp):
    post_rp = RegisteredClient.create(app, name="Post auth", auth_method="client_secret_post")
    assert push(client, post_rp, Flow(client, post_rp), auth="post").status_code == 201
    flow = Flow(client, public_rp)
    resp = push(client, public_rp, flow, auth="none")
    assert resp.status_code == 201, resp.get_json()
    params = finish(
        flow, authorize_with(client, public_rp, resp.get_json()["request_uri"]), citizen
    )
    assert "code" in params


def test_item23_request_uri_is_single_use(client, citizen, rp):
    flow = Flow(client, rp)
    request_uri = push(client, rp, flow).get_json()["request_uri"]
    assert "code" in finish(flow, authorize_with(client, rp, request_uri), citizen)
    assert_error_page(authorize_with(client, rp, request_uri), "invalid_request_uri")


def test_item23_expired_request_uri(client, rp, services):
    request_uri = push(client, rp, Flow(client, rp)).get_json()["request_uri"]
    with services.db.transaction() as session:
        session.execute(
            update(PushedRequest).values(
                expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
            )
        )
    assert_error_page(authorize_with(client, rp, request_uri), "invalid_request_uri")


def test_item23_request_uri_is_bound_to_the_client(app, client, citizen, rp):
    c2 = RegisteredClient.create(
        app, name="Client two", redirect_uris=["https://c2.gov.example/cb"]
    )
    flow = Flow(client, rp)
    request_uri = push(client, rp, flow).get_json()["request_uri"]
    assert_error_page(authorize_with(client, c2, request_uri), "invalid_request_uri")
    # C2's attempt did not burn it: C1 can still use it.
    assert "code" in finish(flow, authorize_with(client, rp, request_uri), citizen)


def test_item23_unknown_request_uri(client, rp):
    assert_error_page(authorize_with(client, rp, URN + "x" * 43), "invalid_request_uri")
    assert_error_page(authorize_with(client, rp, URN + "x" * 500), "invalid_request_uri")


@pytest.mark.parametrize("how", ["nothing", "wrong_secret", "unknown_client", "secret_in_query"])
def test_item23_par_needs_client_authentication(client, rp, how):
    flow = Flow(client, rp)
    data = flow.params()
    headers: dict[str, str] = {}
    if how == "wrong_secret":
        import base64

        headers = {
            "Authorization": "Basic " + base64.b64encode(f"{rp.client_id}:nope".encode()).decode()
        }
    elif how == "unknown_client":
        data["client_id"] = "nobody"
        data["client_secret"] = "x"
    url = "/par"
    if how == "secret_in_query":
        url += "?" + urlencode({"client_secret": rp.secret})
    resp = client.post(url, data=data, headers=headers)
    assert resp.status_code == 401
    assert resp.get_json()["error"] == "invalid_client"
    assert resp.headers["Cache-Control"] == "no-store"


def test_item23_get_par_is_405(client):
    resp = client.get("/par")
    assert resp.status_code == 405
    assert resp.is_json


def test_item23_par_required_refuses_plain_requests(app, client, citizen):
    strict = RegisteredClient.create(app, name="FAPI client", require_par=True)
    flow = Flow(client, strict)
    resp = flow.authorize()
    params = query_of(resp.headers["Location"])
    assert params["error"] == "invalid_request" and params["state"] == flow.state
    assert params["iss"] == ISSUER
    request_uri = push(client, strict, flow).get_json()["request_uri"]
    # Through login and consent (the sealed interaction remembers the request was pushed).
    assert "code" in finish(flow, authorize_with(client, strict, request_uri), citizen)


def test_par_validates_the_pushed_request(client, rp):
    flow = Flow(client, rp)
    cases = [
        ({"code_challenge": None}, "invalid_request"),
        ({"redirect_uri": "https://evil.example/cb"}, "invalid_request"),
        ({"scope": "bogus"}, "invalid_scope"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"prompt": "none login"}, "invalid_request"),
        ({"request_uri": URN + "abc"}, "invalid_request"),
        ({"response_mode": "fragment"}, "invalid_request"),
    ]
    for overrides, error in cases:
        resp = push(client, rp, flow, **overrides)
        assert resp.status_code == 400, (overrides, resp.get_json())
        assert resp.get_json()["error"] == error, (overrides, resp.get_json())
        assert "Location" not in resp.headers


def test_par_client_id_must_match_the_authenticated_client(app, client, rp):
    other = RegisteredClient.create(app, name="Other", redirect_uris=["https://o.gov.example/cb"])
    flow = Flow(client, rp)
    data = flow.params(client_id=other.client_id)
    resp = client.post("/par", data=data, headers=rp.basic())
    assert resp.status_code in (400, 401)
    assert resp.get_json()["error"] in ("invalid_request", "invalid_client")


def test_par_refuses_json_bodies(client, rp):
    resp = client.post("/par", json=Flow(client, rp).params(), headers=rp.basic())
    assert resp.status_code == 400


def test_outer_parameters_are_ignored_with_request_uri(client, citizen, rp):
    flow = Flow(client, rp)
    request_uri = push(client, rp, flow).get_json()["request_uri"]
    resp = authorize_with(
        client,
        rp,
        request_uri,
        redirect_uri="https://evil.example/cb",
        state="outer",
        scope="bogus",
    )
    params = finish(flow, resp, citizen)
    assert params["state"] == flow.state and "code" in params


@pytest.mark.parametrize(
    "uri_template",
    [
        "http://127.0.0.1:{port}/ro",
        "https://127.0.0.1:{port}/ro",
        "http://localhost:{port}/ro",
        "http://169.254.169.254/latest/meta-data/",
        "http://127.0.0.1:6379/",
        "file:///etc/passwd",
        "urn:ietf:params:oauth:request_uri-not:{port}",
    ],
)
def test_item22_foreign_request_uri_is_never_fetched(client, rp, counting_server, uri_template):
    uri = uri_template.format(port=counting_server.port)
    flow = Flow(client, rp)
    resp = client.get(
        "/authorize?" + urlencode({"client_id": rp.client_id, "request_uri": uri, **flow.params()})
    )
    assert_error_page(resp, "request_uri_not_supported")
    time.sleep(0.05)
    assert counting_server.hits == []


def test_request_and_request_uri_together_are_refused(client, rp):
    resp = client.get(
        "/authorize?"
        + urlencode({"client_id": rp.client_id, "request": "a.b.c", "request_uri": URN + "x"})
    )
    assert_error_page(resp, "invalid_request")


# ------------------------------------------------------------------ request objects (item 22)
@pytest.fixture
def client_key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": "rp-key-1", "use": "sig"})


@pytest.fixture
def jar_rp(app, client_key) -> RegisteredClient:
    return RegisteredClient.create(
        app, name="Signed requests", jwks={"keys": [client_key.as_dict(private=False)]}
    )


def request_object(
    flow: Flow,
    key: Any,
    alg: str = "RS256",
    header: dict[str, Any] | None = None,
    drop: tuple[str, ...] = (),
    **claims: Any,
) -> str:
    now = int(time.time())
    body: dict[str, Any] = {
        **flow.params(),
        "iss": flow.rp.client_id,
        "aud": ISSUER,
        "iat": now,
        "exp": now + 300,
    }
    body.update(claims)
    for name in drop:
        body.pop(name, None)
    body = {k: v for k, v in body.items() if v is not None}
    hdr = {"alg": alg, "kid": key.kid} if key is not None else {"alg": alg}
    hdr.update(header or {})
    return jwt.encode(hdr, body, key)


def use_request(client: Any, rp: RegisteredClient, token: str, **outer: Any) -> Any:
    return client.get(
        "/authorize?" + urlencode({"client_id": rp.client_id, "request": token, **outer})
    )


def test_signed_request_object_works_and_only_its_parameters_count(
    client, citizen, jar_rp, client_key
):
    flow = Flow(client, jar_rp)
    token = request_object(flow, client_key)
    resp = use_request(client, jar_rp, token, state="outer-state", scope="bogus", prompt="none")
    params = finish(flow, resp, citizen)
    assert params["state"] == flow.state and "code" in params
    assert flow.token(params["code"]).status_code == 200


@pytest.mark.parametrize("kty", ["EC", "OKP"])
def test_request_objects_signed_with_es256_and_eddsa(app, client, citizen, kty):
    key: Any = (
        ECKey.generate_key("P-256", parameters={"kid": "ec"})
        if kty == "EC"
        else OKPKey.generate_key("Ed25519", parameters={"kid": "ed"})
    )
    rp2 = RegisteredClient.create(
        app, name=f"{kty} signer", jwks={"keys": [key.as_dict(private=False)]}
    )
    flow = Flow(client, rp2)
    from keys.software import JWS_REGISTRY

    now = int(time.time())
    body = {**flow.params(), "iss": rp2.client_id, "aud": ISSUER, "iat": now, "exp": now + 60}
    token = jwt.encode(
        {"alg": "ES256" if kty == "EC" else "EdDSA", "kid": key.kid},
        body,
        key,
        registry=JWS_REGISTRY,
    )
    assert "code" in finish(flow, use_request(client, rp2, token), citizen)


def test_request_object_through_par(client, citizen, jar_rp, client_key):
    flow = Flow(client, jar_rp)
    token = request_object(flow, client_key)
    resp = client.post("/par", data={"request": token}, headers=jar_rp.basic())
    assert resp.status_code == 201, resp.get_json()
    params = finish(flow, authorize_with(client, jar_rp, resp.get_json()["request_uri"]), citizen)
    assert "code" in params and params["state"] == flow.state


def _b64(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_item22_unsigned_request_object_is_refused(client, jar_rp):
    import json

    flow = Flow(client, jar_rp)
    now = int(time.time())
    body = {**flow.params(), "iss": jar_rp.client_id, "aud": ISSUER, "exp": now + 60}
    token = _b64(b'{"alg":"none"}') + "." + _b64(json.dumps(body).encode()) + "."
    assert_error_page(use_request(client, jar_rp, token), "invalid_request_object")


def test_item22_request_object_signed_with_an_unregistered_key(client, jar_rp):
    flow = Flow(client, jar_rp)
    stranger = RSAKey.generate_key(2048, parameters={"kid": "rp-key-1"})
    assert_error_page(
        use_request(client, jar_rp, request_object(flow, stranger)), "invalid_request_object"
    )


def test_item22_hmac_with_the_public_key_is_refused(client, jar_rp, client_key):
    import hashlib
    import hmac
    import json

    flow = Flow(client, jar_rp)
    now = int(time.time())
    body = {**flow.params(), "iss": jar_rp.client_id, "aud": ISSUER, "exp": now + 60}
    head = _b64(json.dumps({"alg": "HS256", "kid": "rp-key-1"}).encode())
    signing_input = head + "." + _b64(json.dumps(body).encode())
    for secret in (
        client_key.as_pem(private=False),
        json.dumps(client_key.as_dict(private=False)).encode(),
    ):
        sig = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        token = signing_input + "." + _b64(sig)
        assert_error_page(use_request(client, jar_rp, token), "invalid_request_object")


def test_item22_embedded_jwk_header_is_refused(client, jar_rp):
    flow = Flow(client, jar_rp)
    attacker = RSAKey.generate_key(2048, parameters={"kid": "rp-key-1"})
    token = request_object(flow, attacker, header={"jwk": attacker.as_dict(private=False)})
    assert_error_page(use_request(client, jar_rp, token), "invalid_request_object")


@pytest.mark.parametrize(
    "claims",
    [
        {"iss": "someone-else"},
        {"aud": "https://other-issuer.example"},
        {"exp": int(time.time()) - 10},
        {"exp": None},
        {"exp": int(time.time()) + 7200, "iat": int(time.time())},
        {"nbf": int(time.time()) + 10**7},  # far ahead: parameters are made at collection
        {"client_id": "someone-else"},
        {"request_uri": URN + "nested"},
        {"exp": "soon"},
    ],
)
def test_request_object_claims_are_checked(client, jar_rp, client_key, claims):
    flow = Flow(client, jar_rp)
    token = request_object(flow, client_key, **claims)
    assert_error_page(use_request(client, jar_rp, token), "invalid_request_object")


def test_request_object_for_a_client_without_keys(client, rp, client_key):
    flow = Flow(client, rp)
    assert_error_page(
        use_request(client, rp, request_object(flow, client_key)), "invalid_request_object"
    )


@pytest.mark.parametrize("token", ["a.b.c", "x" * 40000, "a.b.c.d.e", "....", "not a jwt"])
def test_garbage_request_objects(client, jar_rp, token):
    assert_error_page(use_request(client, jar_rp, token))


def test_request_object_errors_after_redirect_uri_are_redirected(client, jar_rp, client_key):
    flow = Flow(client, jar_rp)
    token = request_object(flow, client_key, scope="bogus")
    resp = use_request(client, jar_rp, token)
    params = query_of(resp.headers["Location"])
    assert params["error"] == "invalid_scope" and params["state"] == flow.state


def test_discovery_advertises_par_and_request_objects(client):
    meta = client.get("/.well-known/openid-configuration").get_json()
    assert meta["pushed_authorization_request_endpoint"] == ISSUER + "/par"
    assert meta["require_pushed_authorization_requests"] is False
    assert meta["request_parameter_supported"] is True
    assert meta["request_uri_parameter_supported"] is True
    assert meta["require_request_uri_registration"] is True
    assert "none" not in meta["request_object_signing_alg_values_supported"]

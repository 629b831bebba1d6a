"""Client authentication: SECURITY-CHECKLIST items 32, 33, 59 and issue 3 item 5; discovery (item 12).

Every method is driven through the real token endpoint.  ``private_key_jwt`` keys come by value
or from a ``jwks_uri`` served by a local HTTP server that only the testing-only
``outbound_test_allowlist`` setting lets us reach; without it, the SSRF guard refuses loopback.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from joserfc.jwk import OctKey

from idp.oauth import client_auth, outbound
from tests.helpers import ISSUER, RegisteredClient
from tests.oauth import tokenkit as kit

CC = {"grant_type": "client_credentials"}


def token_with(http: Any, data: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
    return http.post("/token", data={**CC, **data}, headers=headers or {})


def assert_invalid_client(resp: Any) -> None:
    assert resp.status_code == 401, (resp.status_code, resp.get_json())
    assert resp.get_json() == {
        "error": "invalid_client",
        "error_description": "client authentication failed",
    }
    assert resp.headers["Cache-Control"] == "no-store"


# ------------------------------------------------------------------ a local JWKS server
class JwksServer:
    def __init__(self) -> None:
        self.documents: dict[str, tuple[int, bytes, dict[str, str]]] = {}
        self.hits: dict[str, int] = {}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hits[self.path] = outer.hits.get(self.path, 0) + 1
                if self.path == "/slow":
                    time.sleep(1.5)
                status, body, headers = outer.documents.get(self.path, (404, b"", {}))
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that gave up (timeout test) is expected here

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def serve_json(self, path: str, doc: Any) -> None:
        self.documents[path] = (200, json.dumps(doc).encode(), {"Content-Type": "application/json"})

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def jwks_server() -> Iterator[JwksServer]:
    server = JwksServer()
    yield server
    server.close()


# ------------------------------------------------------------------ the secret methods (32)
def test_basic_and_post_each_only_for_their_registered_method(client, app):
    basic = kit.api_client(app, auth_method="client_secret_basic")
    post = kit.api_client(app, auth_method="client_secret_post")
    assert token_with(client, {}, basic.basic()).status_code == 200
    assert (
        token_with(client, {"client_id": post.client_id, "client_secret": post.secret}).status_code
        == 200
    )
    # Checklist 32: a method other than the registered one -> invalid_client.
    assert_invalid_client(
        token_with(client, {"client_id": basic.client_id, "client_secret": basic.secret})
    )
    assert_invalid_client(token_with(client, {}, post.basic()))


def test_wrong_secret_basic_is_401_with_www_authenticate(client, app):
    """Checklist 32: wrong secret via HTTP Basic -> 401 invalid_client with WWW-Authenticate: Basic."""
    api = kit.api_client(app)
    resp = token_with(client, {}, RegisteredClient(api.client_id, "wrong", []).basic())
    assert_invalid_client(resp)
    assert resp.headers["WWW-Authenticate"].startswith("Basic")


def test_wrong_or_missing_secret_post(client, app):
    api = kit.api_client(app, auth_method="client_secret_post")
    assert_invalid_client(
        token_with(client, {"client_id": api.client_id, "client_secret": "wrong"})
    )
    assert_invalid_client(token_with(client, {"client_id": api.client_id}))  # missing secret
    assert_invalid_client(token_with(client, {}))  # nothing at all


def test_two_credentials_in_one_request_are_refused(client, app):
    """RFC 6749 §2.3: more than one authentication method in a request -> invalid_client."""
    api = kit.api_client(app)
    resp = token_with(
        client, {"client_id": api.client_id, "client_secret": api.secret}, api.basic()
    )
    assert_invalid_client(resp)
    other = kit.api_client(app)
    assert_invalid_client(token_with(client, {"client_id": other.client_id}, api.basic()))


@pytest.mark.parametrize(
    "header", ["Basic", "Basic !!!", "Basic " + "Og==", "Bearer abc", "Basic " + "YTpi" * 3000]
)
def test_malformed_authorization_headers(client, app, header):
    assert_invalid_client(token_with(client, {}, {"Authorization": header}))


def test_unknown_client_and_wrong_secret_are_indistinguishable(app, monkeypatch):
    """Checklist 32: same status, headers and body, and the same work (counted, not timed:
    bench/login_timing.py measures the medians)."""
    http = app.test_client()
    api = kit.api_client(app)
    wrong = RegisteredClient(api.client_id, "x" * 43, []).basic()
    unknown = RegisteredClient("unknown-client-id-xyz", "x" * 43, []).basic()
    a, b = token_with(http, {}, wrong), token_with(http, {}, unknown)
    assert a.status_code == b.status_code == 401
    assert a.get_data() == b.get_data()
    assert a.headers["WWW-Authenticate"] == b.headers["WWW-Authenticate"]
    compared: list[tuple[int, int]] = []
    real_compare = client_auth.hmac.compare_digest

    def counting(a: str, b: str) -> bool:
        compared.append((len(a), len(b)))
        return real_compare(a, b)

    monkeypatch.setattr(client_auth.hmac, "compare_digest", counting)
    token_with(http, {}, wrong)
    token_with(http, {}, unknown)
    # One constant-time comparison of two SHA-256 hex digests each, known client or not.
    assert compared == [(64, 64), (64, 64)]


def test_public_client_cannot_use_secret_methods_and_confidential_cannot_use_none(
    client, app, rp, public_rp
):
    assert_invalid_client(
        client.post(
            "/token",
            data={"grant_type": "refresh_token", "refresh_token": "x", "client_id": rp.client_id},
        )
    )
    assert_invalid_client(
        client.post(
            "/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": "x",
                "client_id": public_rp.client_id,
                "client_secret": "anything",
            },
        )
    )


# ------------------------------------------------------------------ private_key_jwt (33)
@pytest.fixture
def pkj(app: Any) -> tuple[RegisteredClient, Any]:
    key = kit.ec_key()
    return kit.api_client(app, auth_method="private_key_jwt", jwks=kit.public_jwks(key)), key


def test_private_key_jwt_accepts_a_good_assertion(client, pkj):
    api, key = pkj
    for aud in (ISSUER, kit.TOKEN_URL, [kit.TOKEN_URL, "https://other.example"]):
        resp = token_with(client, kit.assertion_form(kit.assertion(api.client_id, key, aud=aud)))
        assert resp.status_code == 200, resp.get_json()


def test_private_key_jwt_with_rsa_and_eddsa_keys(client, app):
    from joserfc.jwk import OKPKey

    rsa = kit.rsa_key()
    okp = OKPKey.generate_key("Ed25519", private=True, auto_kid=True)
    api = kit.api_client(app, auth_method="private_key_jwt", jwks=kit.public_jwks(rsa, okp))
    for key, alg in ((rsa, "RS256"), (rsa, "PS256"), (okp, "EdDSA")):
        resp = token_with(client, kit.assertion_form(kit.assertion(api.client_id, key, alg)))
        assert resp.status_code == 200, (alg, resp.get_json())


def test_assertion_iat_eight_seconds_ahead_is_accepted(client, pkj):
    """Checklist 33: iat/nbf 8 s in the future is accepted (FAPI 2.0 clock tolerance)."""
    api, key = pkj
    now = int(time.time())
    token = kit.assertion(api.client_id, key, iat=now + 8, nbf=now + 8)
    assert token_with(client, kit.assertion_form(token)).status_code == 200


def _bad_assertions(api: RegisteredClient, key: Any) -> dict[str, Callable[[], str]]:
    """Each case built only when its test runs, right before the request: the 90 s cases
    keep half a minute of margin beyond the 60 s tolerance, whatever the machine's load."""
    now = math.ceil(time.time())
    cid = api.client_id
    attacker = kit.ec_key()
    return {
        "exp 5 min in the past": lambda: kit.assertion(cid, key, iat=now - 400, exp=now - 300),
        "no exp": lambda: kit.assertion(cid, key, drop=("exp",)),
        "exp a day ahead": lambda: kit.assertion(cid, key, exp=now + 86400),
        "aud another issuer": lambda: kit.assertion(cid, key, aud="https://other-idp.example"),
        "aud missing": lambda: kit.assertion(cid, key, drop=("aud",)),
        "no sub": lambda: kit.assertion(cid, key, drop=("sub",)),
        "sub != iss": lambda: kit.assertion(cid, key, sub="someone-else"),
        "iss != client": lambda: kit.assertion(cid, key, iss="someone-else"),
        "iat 90 s ahead": lambda: kit.assertion(cid, key, iat=now + 90),
        "nbf 90 s ahead": lambda: kit.assertion(cid, key, nbf=now + 90),
        "no jti": lambda: kit.assertion(cid, key, drop=("jti",)),
        "alg none": lambda: kit.raw_jws(
            {"alg": "none"},
            {"iss": cid, "sub": cid, "aud": ISSUER, "exp": now + 60, "jti": "n1"},
            b"",
        ),
        "signed by another key": lambda: kit.assertion(cid, attacker, header={"kid": key.kid}),
        "jwk header with attacker key": lambda: kit.assertion(
            cid, attacker, header={"kid": key.kid, "jwk": attacker.as_dict(private=False)}
        ),
        "jku header": lambda: kit.assertion(cid, key, header={"jku": "https://evil.example/jwks"}),
        "x5u header": lambda: kit.assertion(cid, key, header={"x5u": "https://evil.example/cert"}),
        "crit header": lambda: kit.assertion(cid, key, header={"crit": ["foo"], "foo": 1}),
        "typ of another token": lambda: kit.assertion(cid, key, header={"typ": "at+jwt"}),
    }


@pytest.mark.parametrize(
    "case", list(_bad_assertions(RegisteredClient("x", None, []), kit.ec_key()))
)
def test_private_key_jwt_refusals(client, pkj, case):
    """Checklist 33 and 53: each bad assertion -> invalid_client."""
    api, key = pkj
    token = _bad_assertions(api, key)[case]()
    assert_invalid_client(token_with(client, kit.assertion_form(token)))


def test_hs256_keyed_with_the_clients_public_key_is_refused(client, pkj):
    """Checklist 33/53: HS256 whose secret is the client's public key (JWK JSON, PEM, DER)."""
    from cryptography.hazmat.primitives import serialization

    api, key = pkj
    public = key.as_dict(private=False)
    raw = key.raw_value.public_key()
    secrets_ = [
        json.dumps(public).encode(),
        raw.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        raw.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        raw.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH),
    ]
    now = int(time.time())
    claims = {
        "iss": api.client_id,
        "sub": api.client_id,
        "aud": ISSUER,
        "iat": now,
        "exp": now + 60,
    }
    for i, secret in enumerate(secrets_):
        token = kit.hs256_raw({"alg": "HS256", "kid": key.kid}, {**claims, "jti": f"hs{i}"}, secret)
        assert_invalid_client(token_with(client, kit.assertion_form(token)))


def test_assertion_jti_cannot_be_replayed(client, pkj):
    """Checklist 33: a reused jti within validity -> invalid_client."""
    api, key = pkj
    token = kit.assertion(api.client_id, key)
    assert token_with(client, kit.assertion_form(token)).status_code == 200
    assert_invalid_client(token_with(client, kit.assertion_form(token)))


def test_assertion_jti_is_spent_even_if_the_request_fails_later(client, pkj):
    api, key = pkj
    token = kit.assertion(api.client_id, key)
    resp = token_with(client, kit.assertion_form(token, scope="not-allowed"))
    assert resp.get_json()["error"] == "invalid_scope"
    assert_invalid_client(token_with(client, kit.assertion_form(token)))


def test_parallel_replays_of_one_assertion_succeed_once(app, pkj):
    api, key = pkj
    token = kit.assertion(api.client_id, key)
    results = kit.run_parallel(
        8, lambda _i: token_with(app.test_client(), kit.assertion_form(token))
    )
    assert sorted(r.status_code for r in results) == [200] + [401] * 7


def test_assertion_client_id_parameter_must_match(client, pkj, app):
    api, key = pkj
    other = kit.api_client(app)
    token = kit.assertion(api.client_id, key)
    assert_invalid_client(token_with(client, kit.assertion_form(token, client_id=other.client_id)))
    token = kit.assertion(api.client_id, key)
    assert token_with(client, kit.assertion_form(token, client_id=api.client_id)).status_code == 200


@pytest.mark.parametrize(
    "assertion_type", ["", "urn:ietf:params:oauth:client-assertion-type:saml2-bearer"]
)
def test_wrong_assertion_type(client, pkj, assertion_type):
    api, key = pkj
    data = {
        "client_assertion_type": assertion_type,
        "client_assertion": kit.assertion(api.client_id, key),
    }
    assert_invalid_client(token_with(client, data))


def test_assertion_for_a_secret_client_is_refused(client, app):
    """A client registered for client_secret_basic cannot authenticate with an assertion."""
    api = kit.api_client(app)
    token = kit.assertion(api.client_id, OctKey.import_key(api.secret.encode()), "HS256")
    assert_invalid_client(token_with(client, kit.assertion_form(token)))


def test_assertion_audience_for_revocation_and_introspection(client, pkj):
    api, key = pkj
    at = token_with(client, kit.assertion_form(kit.assertion(api.client_id, key))).get_json()[
        "access_token"
    ]
    form = kit.assertion_form(
        kit.assertion(api.client_id, key, aud=ISSUER + "/introspect"), token=at
    )
    assert client.post("/introspect", data=form).get_json()["active"] is True
    form = kit.assertion_form(kit.assertion(api.client_id, key, aud=ISSUER + "/revoke"), token=at)
    assert client.post("/revoke", data=form).status_code == 200
    form = kit.assertion_form(kit.assertion(api.client_id, key), token=at)
    assert client.post("/introspect", data=form).get_json() == {"active": False}


# ------------------------------------------------------------------ client_secret_jwt
def test_client_secret_jwt(client, app):
    api = kit.api_client(app, auth_method="client_secret_jwt")
    from idp.storage.models import Client

    with app.extensions["yitong"].db.session() as session:
        row = session.get(Client, api.client_id)
        assert row.secret_ciphertext and api.secret.encode() not in row.secret_ciphertext
    secret_key = OctKey.import_key(api.secret.encode())
    for alg in ("HS384", "HS512"):  # every algorithm discovery lists for it works
        signed = kit.assertion(api.client_id, secret_key, alg)
        assert token_with(client, kit.assertion_form(signed)).status_code == 200, alg
    ok = kit.assertion(api.client_id, secret_key, "HS256")
    assert token_with(client, kit.assertion_form(ok)).status_code == 200
    assert_invalid_client(token_with(client, kit.assertion_form(ok)))  # replay
    wrong = kit.assertion(api.client_id, OctKey.import_key(b"w" * 43), "HS256")
    assert_invalid_client(token_with(client, kit.assertion_form(wrong)))
    # Asymmetric algorithms are not accepted from a client_secret_jwt client.
    assert_invalid_client(
        token_with(client, kit.assertion_form(kit.assertion(api.client_id, kit.ec_key())))
    )
    # Nor are the secret methods it did not register.
    assert_invalid_client(token_with(client, {}, api.basic()))


def test_client_secret_jwt_needs_the_kek_to_register(app):
    from idp.oauth.clients import ClientRegistrationError, ClientSpec, create_client

    with (
        app.extensions["yitong"].db.transaction() as session,
        pytest.raises(ClientRegistrationError),
    ):
        create_client(
            session,
            ClientSpec(
                name="x", grant_types=["client_credentials"], auth_method="client_secret_jwt"
            ),
            actor="test",
        )


# ------------------------------------------------------------------ jwks_uri and SSRF (59)
def test_private_key_jwt_with_jwks_uri_is_fetched_once_and_cached(make_app, jwks_server):
    app = make_app(outbound_test_allowlist=(f"127.0.0.1:{jwks_server.port}",))
    http = app.test_client()
    key = kit.ec_key()
    jwks_server.serve_json("/jwks", kit.public_jwks(key))
    api = kit.api_client(app, auth_method="private_key_jwt", jwks_uri=jwks_server.url("/jwks"))
    for _ in range(3):
        resp = token_with(http, kit.assertion_form(kit.assertion(api.client_id, key)))
        assert resp.status_code == 200, resp.get_json()
    assert jwks_server.hits["/jwks"] == 1


def test_jwks_uri_on_loopback_is_refused_without_the_test_allowlist(app, jwks_server):
    """Checklist 59: no fetch to 127.0.0.1 (or any non-public address) in normal operation."""
    key = kit.ec_key()
    jwks_server.serve_json("/jwks", kit.public_jwks(key))
    api = kit.api_client(app, auth_method="private_key_jwt", jwks_uri=jwks_server.url("/jwks"))
    assert_invalid_client(
        token_with(app.test_client(), kit.assertion_form(kit.assertion(api.client_id, key)))
    )
    assert jwks_server.hits.get("/jwks", 0) == 0


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/jwks",
        "https://[::1]/jwks",
        "https://10.1.2.3/jwks",
        "https://172.16.0.1/jwks",
        "https://192.168.1.1/jwks",
        "https://169.254.169.254/latest/meta-data",
        "https://localhost/jwks",
        "https://[::ffff:169.254.169.254]/",
        "https://100.64.0.1/",
        "https://0.0.0.0/",
        "file:///etc/passwd",
        "gopher://example.com/",
        "http://example.com/jwks",
        "https://user@example.com/",
        "https://[x]/",
    ],
)
def test_ssrf_targets_are_refused_before_connecting(url):
    """Checklist 59: private, loopback, link-local, metadata, non-https schemes -> refused."""
    with pytest.raises(outbound.OutboundError):
        outbound.resolve_target(url)


def test_outbound_limits_size_redirects_and_time(jwks_server):
    """Checklist 59: 64 KB cap, no redirects, timeout (the default is 5 s; 1 s here)."""
    allow = (f"127.0.0.1:{jwks_server.port}",)
    jwks_server.serve_json("/big", {"keys": [], "pad": "x" * 70_000})
    jwks_server.documents["/redirect"] = (302, b"", {"Location": jwks_server.url("/big")})
    jwks_server.serve_json("/slow", {"keys": []})
    jwks_server.documents["/notjson"] = (200, b"<html>", {})
    policy = outbound.OutboundPolicy(allowlist=allow)
    assert outbound.TIMEOUT_SECONDS <= 5 and outbound.MAX_BYTES == 64 * 1024
    for path in ("/big", "/redirect", "/notjson", "/missing"):
        with pytest.raises(outbound.OutboundError):
            outbound.fetch_json(jwks_server.url(path), policy)
    # The server answers /slow after 1.5 s with a valid document: only the 0.5 s timeout can
    # make this fail (no stopwatch: the refusal itself is the evidence).
    with pytest.raises(outbound.OutboundError):
        outbound.fetch_json(
            jwks_server.url("/slow"), outbound.OutboundPolicy(allowlist=allow, timeout=0.5)
        )
    assert outbound.fetch_json(
        jwks_server.url("/slow"), outbound.OutboundPolicy(allowlist=allow, timeout=5)
    ) == {"keys": []}


def test_outbound_allowlist_is_refused_outside_testing():
    from idp.config import ConfigError, load_settings

    with pytest.raises(ConfigError, match="tests only"):
        load_settings(environ={}, env="development", outbound_test_allowlist=("127.0.0.1:1",))


# ------------------------------------------------------------------ discovery (issue item 12)
def test_discovery_lists_exactly_what_works(client):
    doc = client.get("/.well-known/openid-configuration").get_json()
    assert doc["grant_types_supported"] == [
        "authorization_code",
        "refresh_token",
        "client_credentials",
        "urn:ietf:params:oauth:grant-type:token-exchange",  # RFC 8693, test_token_exchange.py
        "urn:ietf:params:oauth:grant-type:device_code",  # RFC 8628, test_device_grant.py
    ]
    assert set(doc["token_endpoint_auth_methods_supported"]) == {
        "client_secret_basic",
        "client_secret_post",
        "client_secret_jwt",
        "private_key_jwt",
        "none",
    }
    algs = set(doc["token_endpoint_auth_signing_alg_values_supported"])
    assert "none" not in algs and {"ES256", "RS256", "HS256"} <= algs
    assert doc["revocation_endpoint"] == ISSUER + "/revoke"
    assert doc["introspection_endpoint"] == ISSUER + "/introspect"
    assert "none" not in doc["introspection_endpoint_auth_methods_supported"]
    assert "none" in doc["revocation_endpoint_auth_methods_supported"]
    assert (
        doc["revocation_endpoint_auth_signing_alg_values_supported"]
        == doc["token_endpoint_auth_signing_alg_values_supported"]
    )


# ------------------------------------------------------------------ an independent client library
def test_authlib_client_against_a_live_server(make_app, monkeypatch):
    """Authlib's own OAuth 2.0 client (requests), over real HTTP: client_secret_basic with an
    RFC 8707 resource, private_key_jwt built by Authlib (aud = token endpoint), revocation."""
    import socket

    from authlib.integrations.requests_client import OAuth2Session
    from authlib.oauth2.rfc7523 import PrivateKeyJWT
    from werkzeug.serving import make_server

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    app = make_app(issuer=base)
    key = kit.ec_key()
    api = kit.api_client(app)
    pkj = kit.api_client(app, auth_method="private_key_jwt", jwks=kit.public_jwks(key))
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("AUTHLIB_INSECURE_TRANSPORT", "1")  # plain http on loopback, tests only
    try:
        basic = OAuth2Session(api.client_id, api.secret, scope="hr:read")
        token = basic.fetch_token(
            base + "/token", grant_type="client_credentials", resource="https://api.hr.gov.example/"
        )
        assert token["scope"] == "hr:read" and token["token_type"] == "Bearer"
        signed = OAuth2Session(
            pkj.client_id,
            key,
            scope="hr:read",
            token_endpoint_auth_method=PrivateKeyJWT(base + "/token", alg="ES256"),
        )
        assert signed.fetch_token(base + "/token", grant_type="client_credentials")["access_token"]
        assert basic.revoke_token(base + "/revoke", token["access_token"]).status_code == 200
        info = basic.post(
            base + "/introspect",
            data={"token": token["access_token"]},
            auth=(api.client_id, api.secret),
        ).json()
        assert info == {"active": False}
    finally:
        server.shutdown()
        thread.join(5)


def test_client_changes_apply_at_once_here_and_within_the_ttl_elsewhere(client, app, monkeypatch):
    """The per-worker client snapshot: an ORM change in this process applies at once; a change
    made elsewhere (another worker, the CLI; simulated by a bulk UPDATE) within the TTL."""
    from sqlalchemy import update

    from idp.oauth.client_cache import ClientSnapshot
    from idp.storage.models import Client

    monkeypatch.setattr(ClientSnapshot, "TTL", 0.3)
    api = kit.api_client(app)
    assert token_with(client, {}, api.basic()).status_code == 200
    kit.set_columns(app, Client, api.client_id, status="disabled")
    assert_invalid_client(token_with(client, {}, api.basic()))
    kit.set_columns(app, Client, api.client_id, status="approved")
    assert token_with(client, {}, api.basic()).status_code == 200
    with app.extensions["yitong"].db.transaction() as session:
        session.execute(
            update(Client).where(Client.client_id == api.client_id).values(status="disabled")
        )
    time.sleep(0.4)
    assert_invalid_client(token_with(client, {}, api.basic()))

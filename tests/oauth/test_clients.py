"""Client registration: every option validated (issue 3 item 11; checklist 48, 54-56, 59).

``create_client`` is what the CLI, the admin API and the demo all call; the ``yitong clients
add`` tests drive the real command through click's ``CliRunner`` (and once as a subprocess).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from joserfc.jwk import ECKey, OctKey, RSAKey
from sqlalchemy import create_engine, func, select

import idp.oauth.clients as clients_module
from idp.cli import main
from idp.oauth.clients import ClientRegistrationError, ClientSpec, create_client
from idp.oauth.outbound import OutboundPolicy, fetch_json
from idp.storage.models import Client
from tests.conftest import _truncate
from tests.helpers import TEST_KEK

REPO = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------ a sector_identifier_uri server
class JsonServer:
    """Serves ``body`` (bytes) after ``delay`` seconds on loopback; counts requests."""

    def __init__(self) -> None:
        self.body = b"[]"
        self.delay = 0.0
        self.status = 200
        self.hits = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.hits += 1
                time.sleep(server.delay)
                self.send_response(server.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(server.body)))
                self.end_headers()
                with contextlib.suppress(OSError):
                    self.wfile.write(server.body)

            def log_message(self, *args: Any) -> None:
                return None

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, path: str = "/sector.json") -> str:
        return f"http://{self.host}{path}"

    def serve(self, value: Any) -> None:
        self.body = json.dumps(value).encode()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def sector_server() -> Iterator[JsonServer]:
    server = JsonServer()
    yield server
    server.close()


def fetcher_for(server: JsonServer, **policy: Any) -> Callable[[str], Any]:
    """The real SSRF-guarded fetch, with the local server allow-listed (testing only)."""
    rules = OutboundPolicy(allowlist=(server.host,), **policy)
    return lambda uri: fetch_json(uri, rules)


def register(app: Any, fetcher: Any = None, **fields: Any) -> tuple[Client, str | None]:
    fields.setdefault("name", "Test service")
    fields.setdefault("redirect_uris", ["https://svc.gov.example/cb"])
    services = app.extensions["yitong"]
    with services.db.transaction() as session:
        client, secret = create_client(
            session,
            ClientSpec(**fields),
            actor="test",
            signing_algorithms=services.settings.signing_algorithms,
            sector_fetcher=fetcher,
        )
        session.expunge(client)
    return client, secret


def refused(app: Any, fragment: str, fetcher: Any = None, **fields: Any) -> None:
    with pytest.raises(ClientRegistrationError) as info:
        register(app, fetcher, **fields)
    assert fragment in info.value.message, info.value.message
    with app.extensions["yitong"].db.session() as session:
        assert session.scalar(select(func.count()).select_from(Client)) == 0


# ------------------------------------------------------------------ redirect and logout URIs
@pytest.mark.parametrize(
    ("uri", "fragment"),
    [
        ("https://c.gov.example/cb#x", "fragment"),
        ("javascript:alert(1)", "forbidden scheme"),
        ("JavaScript:alert(1)", "forbidden scheme"),
        ("data:text/html,<script>alert(1)</script>", "forbidden scheme"),
        ("data:text/html,x", "forbidden scheme"),
        ("vbscript:msgbox", "forbidden scheme"),
        ("http://c.gov.example/cb", "https"),
        ("https://user@c.gov.example/cb", "userinfo"),
        ("https://*.gov.example/cb", "wildcard"),
        ("http://[x]/", "parsed"),
        (" https://c.gov.example/cb", "spaces"),
        ("https:///cb", "host"),
        ("https://c.gov.example\\@evil.example/cb", "backslash"),
    ],
)
@pytest.mark.parametrize("field", ["redirect_uris", "post_logout_redirect_uris"])
def test_items54_55_bad_uris_are_refused(app, uri, fragment, field):
    refused(app, fragment, **{field: [uri]})


@pytest.mark.parametrize("field", ["backchannel_logout_uri", "frontchannel_logout_uri"])
@pytest.mark.parametrize(
    "uri", ["https://c.gov.example/l#f", "javascript:x", "http://c.gov.example/l"]
)
def test_logout_uris_are_validated(app, field, uri):
    with pytest.raises(ClientRegistrationError):
        register(app, **{field: uri})


def test_a_complete_client_is_stored_as_asked(app):
    key = ECKey.generate_key("P-256", parameters={"kid": "k1"})
    client, secret = register(
        app,
        post_logout_redirect_uris=["https://svc.gov.example/bye"],
        backchannel_logout_uri="https://svc.gov.example/bcl",
        frontchannel_logout_uri="https://svc.gov.example/fcl",
        auth_method="private_key_jwt",
        jwks={"keys": [key.as_dict(private=False)]},
        id_token_alg="ES256",
        access_token_format="jwt",
        require_par=True,
        web_origins=["https://spa.gov.example/"],
        resources=["https://api.gov.example/", "urn:gov:api:tax"],
    )
    # Issue 14 item 10: a private_key_jwt client gets no secret it would never use.
    assert secret is None and client.secret_digest is None
    assert client.token_endpoint_auth_method == "private_key_jwt"
    assert client.id_token_signed_response_alg == "ES256"
    assert client.require_pushed_authorization_requests is True
    assert client.web_origins == ["https://spa.gov.example"]
    assert client.resources == ["https://api.gov.example/", "urn:gov:api:tax"]
    assert client.backchannel_logout_uri == "https://svc.gov.example/bcl"


# ------------------------------------------------------------------ keys, algorithms, options
def _small_rsa_jwk() -> dict[str, str]:
    """A 1024-bit RSA public JWK, built by hand (joserfc rightly warns about making one)."""
    import base64

    from cryptography.hazmat.primitives.asymmetric import rsa

    numbers = (
        rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key().public_numbers()
    )

    def b64(n: int) -> str:
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return {"kty": "RSA", "n": b64(numbers.n), "e": b64(numbers.e)}


def test_item48_alg_none_and_unknown_algorithms_are_refused(app):
    for alg in ("none", "HS256", "RS512", ""):
        with pytest.raises(ClientRegistrationError):
            register(app, id_token_alg=alg)


def test_id_token_alg_needs_a_configured_key(app):
    assert "PS256" not in app.extensions["yitong"].settings.signing_algorithms
    refused(app, "YITONG_SIGNING_ALGORITHMS", id_token_alg="PS256")


@pytest.mark.parametrize(
    ("jwks", "fragment"),
    [
        ({"keys": []}, "JWK set"),
        ({"nokeys": 1}, "JWK set"),
        ({"keys": ["x"]}, "JSON object"),
        ({"keys": [OctKey.generate_key(256).as_dict()]}, "shared secrets"),
        ({"keys": [RSAKey.generate_key(2048).as_dict(private=True)]}, "private key material"),
        (
            {"keys": [{"kty": "EC", "crv": "P-256", "x": "abc", "y": "def"}]},
            "not a valid public key",
        ),
        ({"keys": [_small_rsa_jwk()]}, "2048"),
        (
            {
                "keys": [
                    dict(ECKey.generate_key("P-256").as_dict(private=False), kid="a"),
                    dict(ECKey.generate_key("P-256").as_dict(private=False), kid="a"),
                ]
            },
            "unique",
        ),
    ],
)
def test_client_jwks_must_be_usable_public_keys(app, jwks, fragment):
    refused(app, fragment, auth_method="private_key_jwt", jwks=jwks)


def test_private_key_jwt_needs_keys_and_not_both_kinds(app):
    refused(app, "jwks", auth_method="private_key_jwt")
    key = ECKey.generate_key("P-256").as_dict(private=False)
    refused(
        app,
        "not both",
        auth_method="private_key_jwt",
        jwks={"keys": [key]},
        jwks_uri="https://svc.gov.example/jwks",
    )
    refused(app, "jwks_uri", auth_method="private_key_jwt", jwks_uri="http://svc.gov.example/jwks")


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"grant_types": ["password"]}, "not supported"),
        ({"grant_types": ["implicit"]}, "not supported"),
        ({"grant_types": ["refresh_token"]}, "needs authorization_code"),
        ({"grant_types": ["client_credentials"]}, "only used by the authorization_code"),
        ({"auth_method": "tls_client_auth"}, "not one of"),
        ({"public": True, "auth_method": "client_secret_basic"}, "public client"),
        ({"auth_method": "none"}, "confidential client"),
        (
            {"public": True, "grant_types": ["client_credentials"], "redirect_uris": []},
            "public client cannot",
        ),
        ({"subject_type": "secret"}, "public or pairwise"),
        ({"access_token_format": "paseto"}, "opaque or jwt"),
        ({"web_origins": ["https://spa.gov.example/path"]}, "scheme://host"),
        ({"web_origins": ["http://spa.gov.example"]}, "https"),
        ({"web_origins": ["*"]}, "scheme://host"),
        ({"resources": ["https://api.gov.example/#frag"]}, "fragment"),
        ({"resources": ["relative/path"]}, "absolute URI"),
        ({"resources": ["javascript:alert(1)"]}, "forbidden"),
        ({"scopes": ["open id"]}, "scope"),
        ({"client_id": "has space"}, "client_id"),
        ({"client_id": "x" * 65}, "client_id"),
        ({"name": "  "}, "name"),
        ({"redirect_uris": "https://svc.gov.example/cb"}, "list of strings"),
        ({"redirect_uris": [1]}, "list of strings"),
        ({"sector_identifier_uri": "https://s.gov.example/s.json"}, "pairwise"),
        (
            {"require_par": True, "grant_types": ["client_credentials"], "redirect_uris": []},
            "authorization_code",
        ),
        (
            {
                "backchannel_logout_uri": "https://x.gov.example/l",
                "grant_types": ["client_credentials"],
                "redirect_uris": [],
            },
            "authorization_code",
        ),
    ],
)
def test_every_option_is_validated_with_a_clear_message(app, fields, fragment):
    refused(app, fragment, **fields)


def test_client_id_cannot_be_a_user_subject(app, citizen):
    # BCP §4.15 / checklist 57: a client_id equal to a user's sub is refused.
    refused(app, "already taken", client_id=citizen.id)


# ------------------------------------------------------------------ pairwise and sectors (56, 59)
def test_a_generated_client_id_never_starts_with_a_dash(app, monkeypatch):
    # An operator passes the id on the command line, where "-X…" reads as an option.
    real = clients_module.new_secret
    drawn = ["-Xdash-first-draw", "second-draw"]
    monkeypatch.setattr(
        clients_module, "new_secret", lambda n=32: drawn.pop(0) if drawn else real(n)
    )
    client, _secret = register(app)
    assert client.client_id == "second-draw"


def test_pairwise_sector_from_the_single_redirect_host(app):
    client, _ = register(app, subject_type="pairwise")
    assert client.sector == "svc.gov.example" and client.sector_identifier_uri is None


def test_pairwise_with_several_hosts_needs_a_sector_uri(app):
    refused(
        app,
        "sector_identifier_uri",
        subject_type="pairwise",
        redirect_uris=["https://a.gov.example/cb", "https://b.gov.example/cb"],
    )


def test_sector_identifier_uri_listing_every_redirect_uri(app, sector_server):
    uris = ["https://a.gov.example/cb", "https://b.gov.example/cb"]
    sector_server.serve([*uris, "https://c.gov.example/cb"])
    client, _ = register(
        app,
        fetcher_for(sector_server),
        subject_type="pairwise",
        redirect_uris=uris,
        sector_identifier_uri=sector_server.url(),
    )
    assert client.sector == "127.0.0.1" and client.sector_identifier_uri == sector_server.url()
    assert sector_server.hits == 1


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (["https://a.gov.example/cb"], "does not list"),
        ({"redirect_uris": ["https://a.gov.example/cb"]}, "JSON array"),
        ([1, 2], "JSON array"),
    ],
)
def test_item56_sector_document_must_list_the_redirect_uris(app, sector_server, body, fragment):
    sector_server.serve(body)
    refused(
        app,
        fragment,
        fetcher_for(sector_server),
        subject_type="pairwise",
        redirect_uris=["https://a.gov.example/cb", "https://b.gov.example/cb"],
        sector_identifier_uri=sector_server.url(),
    )


def test_item59_sector_fetch_limits(app, sector_server):
    fields = {
        "subject_type": "pairwise",
        "redirect_uris": ["https://a.gov.example/cb"],
        "sector_identifier_uri": sector_server.url(),
    }
    sector_server.body = b'["https://a.gov.example/cb", "' + b"x" * (70 * 1024) + b'"]'
    refused(app, "cannot be fetched", fetcher_for(sector_server), **fields)  # > 64 KB
    sector_server.serve(["https://a.gov.example/cb"])
    sector_server.delay = 1.5
    # A valid document after 1.5 s: refused only because the 0.5 s timeout fired.
    refused(app, "cannot be fetched", fetcher_for(sector_server, timeout=0.5), **fields)
    sector_server.delay = 0
    sector_server.status = 302
    refused(app, "cannot be fetched", fetcher_for(sector_server), **fields)  # no redirects
    sector_server.status = 200
    sector_server.body = b"not json"
    refused(app, "cannot be fetched", fetcher_for(sector_server), **fields)


@pytest.mark.parametrize(
    "uri",
    [
        "https://127.0.0.1/s.json",
        "https://10.0.0.8/s.json",
        "https://172.16.3.4/s.json",
        "https://192.168.1.1/s.json",
        "https://169.254.169.254/latest/meta-data/",
        "https://[::1]/s.json",
        "https://localhost/s.json",
        "https://[::ffff:127.0.0.1]/s.json",
    ],
)
def test_item59_sector_uri_to_private_addresses_is_refused_without_a_request(app, uri):
    # The default fetcher (no allow-list): refused after resolution, before connecting.
    refused(
        app,
        "cannot",
        subject_type="pairwise",
        redirect_uris=["https://a.gov.example/cb"],
        sector_identifier_uri=uri,
    )


def test_sector_uri_must_be_https(app):
    refused(
        app,
        "https",
        subject_type="pairwise",
        redirect_uris=["https://a.gov.example/cb"],
        sector_identifier_uri="http://sector.gov.example/s.json",
    )


def test_item59_local_server_is_refused_without_the_allowlist(app, sector_server):
    sector_server.serve(["https://a.gov.example/cb"])
    refused(
        app,
        "cannot be fetched",
        subject_type="pairwise",
        redirect_uris=["https://a.gov.example/cb"],
        sector_identifier_uri=sector_server.url(),
    )
    assert sector_server.hits == 0


# ------------------------------------------------------------------ yitong clients add
Run = Callable[..., Result]


@pytest.fixture
def cli_env(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    _truncate(database_url)
    for name in list(os.environ):
        if name.startswith("YITONG_") and name not in (
            "YITONG_TEST_DB",
            "YITONG_TEST_POSTGRES_URL",
        ):
            monkeypatch.delenv(name)
    env = {
        "YITONG_ENV": "testing",
        "YITONG_ISSUER": "http://localhost",
        "YITONG_DATABASE_URL": database_url,
        "YITONG_INSTANCE_DIR": str(tmp_path / "instance"),
        "YITONG_SECRET_KEY": "cli-test-secret-key-" + "s" * 32,
        "YITONG_KEY_ENCRYPTION_KEY": TEST_KEK,
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


@pytest.fixture
def run(cli_env: dict[str, str]) -> Run:
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(main, ["clients", "add", *args], catch_exceptions=False)

    return invoke


def stored(database_url: str, client_id: str) -> Any:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return conn.execute(select(Client).where(Client.client_id == client_id)).one()
    finally:
        engine.dispose()


def test_cli_every_option(run, database_url, tmp_path):
    key = RSAKey.generate_key(2048, parameters={"kid": "rp1"})
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps({"keys": [key.as_dict(private=False)]}))
    result = run(
        "--name",
        "Housing fund",
        "--client-id",
        "housing",
        "--redirect-uri",
        "https://hf.gov.example/cb",
        "--redirect-uri",
        "https://hf.gov.example/cb2",
        "--scope",
        "openid profile",
        "--scope",
        "email",
        "--grant-type",
        "authorization_code",
        "--grant-type",
        "refresh_token",
        "--auth-method",
        "private_key_jwt",
        "--jwks-file",
        str(jwks_file),
        "--id-token-alg",
        "ES256",
        "--subject-type",
        "public",
        "--access-token-format",
        "jwt",
        "--require-par",
        "--post-logout-redirect-uri",
        "https://hf.gov.example/bye",
        "--post-logout-redirect-uri",
        "https://hf.gov.example/bye2",
        "--backchannel-logout-uri",
        "https://hf.gov.example/bcl",
        "--frontchannel-logout-uri",
        "https://hf.gov.example/fcl",
        "--web-origin",
        "https://spa.hf.gov.example",
        "--resource",
        "https://api.hf.gov.example/",
        "--json",
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["client_id"] == "housing"
    row = stored(database_url, "housing")
    assert row.redirect_uris == ["https://hf.gov.example/cb", "https://hf.gov.example/cb2"]
    assert row.scopes == ["openid", "profile", "email"]
    assert row.token_endpoint_auth_method == "private_key_jwt"
    assert row.jwks["keys"][0]["kid"] == "rp1"
    assert row.id_token_signed_response_alg == "ES256"
    assert row.access_token_format == "jwt" and row.require_pushed_authorization_requests
    assert row.post_logout_redirect_uris == [
        "https://hf.gov.example/bye",
        "https://hf.gov.example/bye2",
    ]
    assert row.backchannel_logout_uri == "https://hf.gov.example/bcl"
    assert row.frontchannel_logout_uri == "https://hf.gov.example/fcl"
    assert row.web_origins == ["https://spa.hf.gov.example"]
    assert row.resources == ["https://api.hf.gov.example/"]


def test_cli_pairwise_with_a_sector_uri(run, cli_env, database_url, sector_server, monkeypatch):
    monkeypatch.setenv("YITONG_OUTBOUND_TEST_ALLOWLIST", sector_server.host)
    sector_server.serve(["https://a.gov.example/cb"])
    ok = run(
        "--name",
        "Pairwise",
        "--client-id",
        "pw",
        "--redirect-uri",
        "https://a.gov.example/cb",
        "--subject-type",
        "pairwise",
        "--sector-identifier-uri",
        sector_server.url(),
    )
    assert ok.exit_code == 0, ok.output
    assert stored(database_url, "pw").sector == "127.0.0.1"
    sector_server.serve(["https://other.gov.example/cb"])
    bad = run(
        "--name",
        "Pairwise 2",
        "--redirect-uri",
        "https://a.gov.example/cb",
        "--subject-type",
        "pairwise",
        "--sector-identifier-uri",
        sector_server.url(),
    )
    assert bad.exit_code != 0 and "does not list the redirect URI" in bad.stderr


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--id-token-alg", "none"], "Invalid value for '--id-token-alg'"),
        (["--id-token-alg", "PS256"], "YITONG_SIGNING_ALGORITHMS"),
        (["--subject-type", "secret"], "Invalid value for '--subject-type'"),
        (["--access-token-format", "paseto"], "Invalid value for '--access-token-format'"),
        (["--grant-type", "password"], "Invalid value for '--grant-type'"),
        (["--auth-method", "magic"], "Invalid value for '--auth-method'"),
        (["--auth-method", "private_key_jwt"], "private_key_jwt needs --jwks-file or --jwks-uri"),
        (
            ["--auth-method", "private_key_jwt", "--jwks-file", "/nonexistent/jwks.json"],
            "cannot read",
        ),
        (["--jwks-file", "x.json", "--jwks-uri", "https://a.gov.example/jwks"], "not both"),
        (["--jwks-uri", "http://a.gov.example/jwks"], "jwks_uri must use https"),
        (["--post-logout-redirect-uri", "javascript:alert(1)"], "forbidden scheme"),
        (["--post-logout-redirect-uri", "https://a.gov.example/bye#x"], "fragment"),
        (["--backchannel-logout-uri", "http://a.gov.example/bcl"], "must use https"),
        (["--frontchannel-logout-uri", "https://user@a.gov.example/fcl"], "userinfo"),
        (["--web-origin", "https://a.gov.example/app"], "scheme://host"),
        (["--resource", "not a uri"], "absolute URI"),
        (
            ["--subject-type", "pairwise", "--sector-identifier-uri", "https://10.1.2.3/s.json"],
            "cannot be fetched",
        ),
        (["--sector-identifier-uri", "https://a.gov.example/s.json"], "pairwise"),
        (["--require-par", "--grant-type", "client_credentials"], "redirect URIs are only used"),
    ],
)
def test_cli_refuses_bad_options_clearly(run, database_url, args, fragment):
    result = run("--name", "Bad", "--redirect-uri", "https://a.gov.example/cb", "--json", *args)
    assert result.exit_code != 0
    assert result.stdout == ""
    assert fragment in result.stderr, result.stderr
    engine = create_engine(database_url)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Client)).scalar_one() == 0
    engine.dispose()


def test_cli_bad_jwks_file_content(run, tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    result = run(
        "--name",
        "Bad",
        "--redirect-uri",
        "https://a.gov.example/cb",
        "--auth-method",
        "private_key_jwt",
        "--jwks-file",
        str(path),
    )
    assert result.exit_code == 2 and "is not JSON" in result.stderr
    path.write_text(json.dumps({"keys": [RSAKey.generate_key(2048).as_dict(private=True)]}))
    result = run(
        "--name",
        "Bad",
        "--redirect-uri",
        "https://a.gov.example/cb",
        "--auth-method",
        "private_key_jwt",
        "--jwks-file",
        str(path),
    )
    assert result.exit_code == 2 and "private key material" in result.stderr


def test_cli_as_a_subprocess(cli_env):
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("YITONG_")}, **cli_env}
    env["PYTHONPATH"] = str(REPO)
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "idp.cli",
            "clients",
            "add",
            "--name",
            "X",
            "--redirect-uri",
            "https://a.gov.example/cb",
            "--backchannel-logout-uri",
            "ftp://a/bcl",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=REPO,
    )
    assert bad.returncode == 2
    assert bad.stderr.startswith("error: back-channel logout URI has a forbidden scheme")
    good = subprocess.run(
        [
            sys.executable,
            "-m",
            "idp.cli",
            "clients",
            "add",
            "--name",
            "Y",
            "--json",
            "--redirect-uri",
            "https://a.gov.example/cb",
            "--post-logout-redirect-uri",
            "https://a.gov.example/bye",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=REPO,
    )
    assert good.returncode == 0, good.stderr
    assert set(json.loads(good.stdout)) == {"client_id", "client_secret"}

"""What an upstream ID token (and logout token) must satisfy (issue 13 item 3): each check
of idp.oauth.upstream against a fake provider on loopback that signs whatever it is told
(bad signature, wrong issuer, wrong audience, nonce mismatch, expired, alg none...)."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from idp.config import ConfigError
from idp.oauth.outbound import OutboundPolicy
from idp.oauth.upstream import (
    UpstreamConfig,
    UpstreamOIDC,
    UpstreamRejected,
    UpstreamUnavailable,
    claim_at,
)
from tests.helpers import make_settings

CLIENT = "provincial-yitong"
NONCE = "n-0123456789"


class FakeProvider:
    def __init__(self) -> None:
        self.key = RSAKey.generate_key(2048, parameters={"kid": "k1"}, private=True)
        self.served: dict[str, Any] = {}
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = json.dumps(provider.served.get(self.path, {})).encode()
                self.send_response(200 if self.path in provider.served else 404)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.url = f"http://{self.host}"
        self.served["/.well-known/openid-configuration"] = {
            "issuer": self.url,
            "authorization_endpoint": self.url + "/authorize",
            "token_endpoint": self.url + "/token",
            "jwks_uri": self.url + "/jwks",
        }
        self.served["/jwks"] = {"keys": [self.key.as_dict(private=False)]}
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def sign(self, claims: dict[str, Any], key: Any = None, **header: Any) -> str:
        return jwt.encode({"alg": "RS256", "kid": "k1", **header}, claims, key or self.key)

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        base = {
            "iss": self.url,
            "aud": CLIENT,
            "sub": "upstream-subject",
            "iat": now,
            "exp": now + 300,
            "nonce": NONCE,
            "acr": "urn:yitong:acr:mfa",
            "verified_claims": {
                "verification": {"trust_framework": "cn_gov_rnv", "assurance_level": "L3"},
                "claims": {"resident_id_number": "210202197806263286", "name": "张三"},
            },
        }
        base.update(overrides)
        return {k: v for k, v in base.items() if v is not None}

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def provider() -> Iterator[FakeProvider]:
    fake = FakeProvider()
    yield fake
    fake.stop()


def _client(provider: FakeProvider, **overrides: Any) -> UpstreamOIDC:
    values: dict[str, Any] = {
        "issuer": provider.url,
        "client_id": CLIENT,
        "client_secret": "s",
        "scopes": ("openid",),
        "claims": {
            "id_number": "verified_claims.claims.resident_id_number",
            "name": "verified_claims.claims.name",
            "identity_level": "verified_claims.verification.assurance_level",
        },
        "acrs": {
            "urn:yitong:acr:pwd": "urn:yitong:acr:pwd",
            "urn:yitong:acr:mfa": "urn:yitong:acr:mfa",
        },
        "min_identity_level": "L3",
        "policy": OutboundPolicy(allowlist=(provider.host,)),
    }
    values.update(overrides)
    return UpstreamOIDC(UpstreamConfig(**values))


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def test_a_good_id_token_maps_claims_and_level(provider: FakeProvider) -> None:
    upstream = _client(provider)
    claims = upstream.verify_id_token(provider.sign(provider.claims()), NONCE, _now())
    identity = upstream.identity(claims)
    assert identity.subject == "upstream-subject" and identity.name == "张三"
    assert identity.id_number == "210202197806263286" and identity.acr == "urn:yitong:acr:mfa"


@pytest.mark.parametrize(
    ("what", "overrides", "header"),
    [
        ("wrong issuer", {"iss": "https://evil.example"}, {}),
        ("wrong audience", {"aud": "someone-else"}, {}),
        ("audience list without our azp", {"aud": [CLIENT, "other"], "azp": "other"}, {}),
        ("nonce mismatch", {"nonce": "another-nonce"}, {}),
        ("no nonce", {"nonce": None}, {}),
        ("expired", {"exp": int(time.time()) - 3600, "iat": int(time.time()) - 4000}, {}),
        ("no sub", {"sub": None}, {}),
    ],
)
def test_id_token_claims_are_checked(
    provider: FakeProvider, what: str, overrides: dict[str, Any], header: dict[str, Any]
) -> None:
    token = provider.sign(provider.claims(**overrides), **header)
    with pytest.raises(UpstreamRejected):
        _client(provider).verify_id_token(token, NONCE, _now())


def test_bad_signatures_are_refused(provider: FakeProvider) -> None:
    upstream = _client(provider)
    other = RSAKey.generate_key(2048, parameters={"kid": "k1"}, private=True)
    with pytest.raises(UpstreamRejected, match="signature"):
        upstream.verify_id_token(provider.sign(provider.claims(), key=other), NONCE, _now())
    good = provider.sign(provider.claims())
    head, body, sig = good.split(".")
    tampered = ".".join([head, body[:-4] + ("AAAA" if body[-4:] != "AAAA" else "BBBB"), sig])
    with pytest.raises(UpstreamRejected):
        upstream.verify_id_token(tampered, NONCE, _now())
    ec = ECKey.generate_key("P-256", parameters={"kid": "k1"}, private=True)
    es = jwt.encode({"alg": "ES256", "kid": "k1"}, provider.claims(), ec)
    with pytest.raises(UpstreamRejected):
        upstream.verify_id_token(es, NONCE, _now())
    unsigned = "eyJhbGciOiJub25lIn0." + body + "."  # alg none
    with pytest.raises(UpstreamRejected):
        upstream.verify_id_token(unsigned, NONCE, _now())


def test_level_is_never_raised_and_the_number_needs_verification(provider: FakeProvider) -> None:
    upstream = _client(provider)
    unknown_acr = upstream.identity(provider.claims(acr="urn:other:very-high"))
    assert unknown_acr.acr == "urn:yitong:acr:pwd"  # unmapped: the lowest, never more
    no_acr = upstream.identity(provider.claims(acr=None))
    assert no_acr.acr == "urn:yitong:acr:pwd"
    low = provider.claims()
    low["verified_claims"]["verification"]["assurance_level"] = "L2"
    assert upstream.identity(low).id_number is None  # self-declared upstream: not linkable
    plain = provider.claims(verified_claims=None, resident_id_number="210202197806263286")
    assert upstream.identity(plain).id_number is None
    outside = _client(provider, claims={"id_number": "resident_id_number"})
    assert outside.identity(plain).id_number is None  # only inside verified_claims
    as_array = provider.claims()
    as_array["verified_claims"] = [as_array["verified_claims"]]
    assert claim_at(as_array, "verified_claims.claims.name") == "张三"


def test_logout_tokens_are_checked(provider: FakeProvider) -> None:
    upstream = _client(provider)
    now = int(time.time())
    good = {
        "iss": provider.url,
        "aud": CLIENT,
        "iat": now,
        "exp": now + 120,
        "jti": "j1",
        "sid": "up-sid",
        "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
    }
    assert upstream.verify_logout_token(provider.sign(good, typ="logout+jwt"), _now())["sid"]
    for bad, header in (
        (good, {}),  # no typ: an ID token could pose as a logout token
        ({**good, "nonce": "x"}, {"typ": "logout+jwt"}),
        ({**good, "events": {}}, {"typ": "logout+jwt"}),
        ({k: v for k, v in good.items() if k != "sid"}, {"typ": "logout+jwt"}),
        ({**good, "aud": "other"}, {"typ": "logout+jwt"}),
        ({k: v for k, v in good.items() if k != "jti"}, {"typ": "logout+jwt"}),
    ):
        with pytest.raises(UpstreamRejected):
            upstream.verify_logout_token(provider.sign(bad, **header), _now())


def test_discovery_problems_are_an_outage(provider: FakeProvider) -> None:
    # An issuer that does not match its own discovery document, and one that is not there.
    wrong = _client(provider, issuer=provider.url + "/other")
    with pytest.raises(UpstreamUnavailable):
        wrong.metadata()
    # Checklist 59: the upstream is reached through the SSRF guard (loopback over http: no).
    blocked = _client(provider, policy=OutboundPolicy())
    with pytest.raises(UpstreamUnavailable):
        blocked.metadata()


def test_settings_are_checked(tmp_path: Any) -> None:
    base = {"upstream_issuer": "http://127.0.0.1:9", "upstream_client_id": "c"}
    with pytest.raises(ConfigError, match="UPSTREAM_CLIENT_SECRET"):
        make_settings("sqlite://", tmp_path, **base)
    with pytest.raises(ConfigError, match="id_number"):
        make_settings(
            "sqlite://", tmp_path, **base, upstream_client_secret="s",
            upstream_claim_mapping=("name=name",),
        )  # fmt: skip
    settings = make_settings(
        "sqlite://", tmp_path, **base, upstream_client_secret="s",
        upstream_acr_mapping=("x=urn:yitong:acr:god",),
    )  # fmt: skip
    with pytest.raises(ConfigError, match="unknown level"):
        UpstreamConfig.from_settings(settings)

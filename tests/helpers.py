"""Flow helpers for tests: a citizen, a registered client, and a full code flow with PKCE."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from flask import Flask
from flask.testing import FlaskClient

from idp.config import Settings, load_settings

TEST_KEK = base64.urlsafe_b64encode(b"k" * 32).rstrip(b"=").decode()
ISSUER = "http://localhost"
IDS = json.loads((Path(__file__).parent / "data" / "synthetic-ids.json").read_text())
PASSWORD = "correct horse battery staple"


def make_settings(database_url: str, instance_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "env": "testing",
        "issuer": ISSUER,
        "database_url": database_url,
        "instance_dir": str(instance_dir),
        "secret_key": "test-secret-key-" + "x" * 32,
        "key_encryption_key": TEST_KEK,
        # argon2id at its cheapest (1 MiB, one pass): the suite hashes thousands of passwords.
        # Tests of the production parameters (checklist 83) pass them explicitly.
        "argon2_memory_kib": 1024,
        "argon2_time_cost": 1,
    }
    values.update(overrides)
    return load_settings(environ={}, **values)


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )
    return verifier, challenge


def csrf_token(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, "no CSRF token in page"
    return m.group(1)


def login_answer(resp: Any, login: str) -> tuple[Any, ...]:
    """What a login answer tells the person: status, Retry-After, the error and the form.

    Every CSRF token (the form's field and the passkey button's ``data-csrf``) is left out:
    they carry a time stamp, so two pages rendered a second apart always differ there.  So is
    the QR-login request id: every page shows a fresh QR code (issue 13).
    """
    body = resp.get_data(as_text=True).replace(login, "LOGIN")
    error = re.findall(r'id="login-error">([^<]*)<', body)
    fields = []
    for tag in re.findall(r"<(?:input|select|button|textarea)\b[^>]*>", body):
        attrs = dict(re.findall(r'([\w-]+)="([^"]*)"', tag))
        attrs.pop("data-csrf", None)
        if attrs.get("name") in ("csrf_token", "qr_id"):
            attrs.pop("value", None)
        fields.append(tuple(sorted(attrs.items())))
    return resp.status_code, resp.headers.get("Retry-After"), error, fields


def hidden(html: str, name: str) -> str:
    m = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert m, f"no hidden field {name}"
    return m.group(1).replace("&amp;", "&")


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query, keep_blank_values=True).items()}


_counter = iter(range(10_000))


@dataclass
class Citizen:
    id: str
    id_number: str
    phone: str
    email: str
    password: str = PASSWORD
    name: str = "张三"

    @classmethod
    def create(
        cls,
        app: Flask,
        index: int | None = None,
        password: str = PASSWORD,
        name: str = "张三",
        *,
        email_confirmed: bool = True,
    ) -> Citizen:
        """A registered citizen whose e-mail link was followed (``email_confirmed``); the
        phone stays unconfirmed, so it is neither a login name nor an SMS second factor."""
        from idp.accounts.people import NewCitizen, register_citizen

        n = next(_counter) if index is None else index
        services = app.extensions["yitong"]
        id_number = IDS["resident_ids"][n % len(IDS["resident_ids"])]
        phone = f"1380000{n:04d}"
        email = f"citizen{n}@example.cn"
        with services.db.transaction() as session:
            user = register_citizen(
                session,
                NewCitizen(
                    name=name, id_number=id_number, phone=phone, email=email, password=password
                ),
                vault=services.vault,
                passwords=services.passwords,
            )
            user.email_verified = email_confirmed
        return cls(
            id=user.id,
            id_number=id_number,
            phone="+86" + phone,
            email=email,
            password=password,
            name=name,
        )


@dataclass
class RegisteredClient:
    client_id: str
    secret: str | None
    redirect_uris: list[str]
    scopes: list[str] = field(default_factory=list)

    @property
    def redirect_uri(self) -> str:
        return self.redirect_uris[0]

    @classmethod
    def create(
        cls,
        app: Flask,
        *,
        name: str = "Social security service",
        redirect_uris: list[str] | None = None,
        scopes: list[str] | None = None,
        public: bool = False,
        **extra: Any,
    ) -> RegisteredClient:
        from idp.oauth.clients import ClientSpec, create_client

        redirect_uris = redirect_uris or ["https://c1.gov.example/cb"]
        scopes = scopes or ["openid", "profile", "email", "phone", "offline_access"]
        services = app.extensions["yitong"]
        with services.db.transaction() as session:
            row, secret = create_client(
                session,
                ClientSpec(
                    name=name, redirect_uris=redirect_uris, scopes=scopes, public=public, **extra
                ),
                actor="test",
            )
        return cls(row.client_id, secret, redirect_uris, scopes)

    def basic(self) -> dict[str, str]:
        token = base64.b64encode(f"{self.client_id}:{self.secret}".encode()).decode()
        return {"Authorization": f"Basic {token}"}


@dataclass
class Flow:
    """One authorization-code flow driven through the test client."""

    http: FlaskClient
    rp: RegisteredClient
    scope: str = "openid profile email"
    state: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    nonce: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    verifier: str = ""
    challenge: str = ""
    #: What to answer at the company picker (issue 10): "self", an entity id, or
    #: "<entity id>:<mandate id>".
    acting_for: str = "self"

    def __post_init__(self) -> None:
        self.verifier, self.challenge = pkce_pair()

    def params(self, **overrides: Any) -> dict[str, Any]:
        p: dict[str, Any] = {
            "response_type": "code",
            "client_id": self.rp.client_id,
            "redirect_uri": self.rp.redirect_uri,
            "scope": self.scope,
            "state": self.state,
            "nonce": self.nonce,
            "code_challenge": self.challenge,
            "code_challenge_method": "S256",
        }
        p.update(overrides)
        return {k: v for k, v in p.items() if v is not None}

    def authorize(self, **overrides: Any) -> Any:
        return self.http.get("/authorize?" + urlencode(self.params(**overrides), doseq=True))

    def login(self, resp: Any, login: str, password: str, **form: Any) -> Any:
        """Follow a redirect to the login page and submit credentials."""
        assert resp.status_code in (302, 303), resp.status_code
        page = self.http.get(resp.headers["Location"])
        assert page.status_code == 200, page.get_data(as_text=True)[:500]
        html = page.get_data(as_text=True)
        data = {
            "csrf_token": csrf_token(html),
            "ix": hidden(html, "ix"),
            "login": login,
            "password": password,
        }
        data.update(form)
        return self.http.post("/login", data=data)

    def consent(self, resp: Any, action: str = "approve") -> Any:
        assert resp.status_code in (302, 303)
        page = self.http.get(resp.headers["Location"])
        assert page.status_code == 200, page.get_data(as_text=True)[:500]
        html = page.get_data(as_text=True)
        return self.http.post(
            "/consent",
            data={"csrf_token": csrf_token(html), "ix": hidden(html, "ix"), "action": action},
        )

    def choose(self, resp: Any, acting_for: str) -> Any:
        """Follow a redirect to the company picker and choose whom to act for."""
        assert resp.status_code in (302, 303)
        page = self.http.get(resp.headers["Location"])
        assert page.status_code == 200, page.get_data(as_text=True)[:500]
        html = page.get_data(as_text=True)
        return self.http.post(
            "/entities/choose",
            data={
                "csrf_token": csrf_token(html),
                "ix": hidden(html, "ix"),
                "acting_for": acting_for,
                "action": "choose",
            },
        )

    def follow_to_code(self, resp: Any) -> dict[str, str]:
        """Follow our own redirects until one leaves for the client; return its parameters."""
        for _ in range(8):
            assert resp.status_code in (302, 303), (
                resp.status_code,
                resp.get_data(as_text=True)[:300],
            )
            location = resp.headers["Location"]
            if location.startswith(self.rp.redirect_uri.split("?")[0]):
                return query_of(location)
            if "/consent" in location:
                resp = self.consent(resp)
                continue
            if "/entities/choose" in location:
                resp = self.choose(resp, self.acting_for)
                continue
            resp = self.http.get(location)
        raise AssertionError("no redirect to the client")

    def run(self, citizen: Any, **overrides: Any) -> dict[str, str]:
        """Authorize, log in (if asked), consent (if asked); return the client's parameters."""
        resp = self.authorize(**overrides)
        if resp.status_code in (302, 303) and "/login" in resp.headers["Location"]:
            resp = self.login(resp, citizen.email, citizen.password)
        return self.follow_to_code(resp)

    def token(self, code: str, **overrides: Any) -> Any:
        data = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.rp.redirect_uri,
            "code_verifier": self.verifier,
        }
        data.update(overrides)
        data = {k: v for k, v in data.items() if v is not None}
        headers = {}
        if self.rp.secret:
            headers = self.rp.basic()
        else:
            data.setdefault("client_id", self.rp.client_id)
        return self.http.post("/token", data=data, headers=headers)


def admin_token(
    app: Flask,
    roles: list[str],
    *,
    acr: str | None = "urn:yitong:acr:mfa",
    minutes_ago: int = 1,
    scope: str = "openid admin",
    user_id: str | None = None,
) -> tuple[str, str]:
    """An access token for a new account holding ``roles``, minted straight into the database.

    How an admin logs in is the login tests' business; here only what the token carries
    (roles of the account, scope, acr, auth_time) matters.  Returns (token, audit actor).
    """
    import datetime as dt

    from idp.storage.models import Grant, Token, User, utcnow
    from idp.storage.repo import digest, new_id, new_secret

    account = user_id or Citizen.create(app).id  # a given account, or a new citizen
    rp = RegisteredClient.create(app, name="Admin console")
    services = app.extensions["yitong"]
    now = utcnow()
    raw = new_secret()
    with services.db.transaction() as session:
        user = session.get(User, account)
        assert user is not None
        user.roles = roles
        grant = Grant(
            id=new_id(),
            user_id=user.id,
            client_id=rp.client_id,
            scope=scope,
            auth_time=now - dt.timedelta(minutes=minutes_ago),
            acr=acr,
            amr=["pwd", "otp"],
            created_at=now,
            expires_at=now + dt.timedelta(hours=1),
        )
        session.add(grant)
        session.flush()
        session.add(
            Token(
                id=new_id(),
                digest=digest(raw),
                kind="access",
                grant_id=grant.id,
                client_id=rp.client_id,
                user_id=user.id,
                scope=scope,
                created_at=now,
                expires_at=now + dt.timedelta(minutes=10),
            )
        )
    return raw, f"user:{account}"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}

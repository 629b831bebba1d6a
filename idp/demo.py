"""``yitong demo``: set up the IdP and its two demo relying parties, idempotently.

Set-up (all that ``yitong demo --no-serve`` does) migrates the schema, makes sure signing
keys exist, registers the two demo clients and creates the demo citizen.  Every step reuses
what a previous run made: the clients' secrets and the citizen's password live in
``<instance_dir>/demo.json`` (mode 0600); when that file is lost, the secrets and password
are replaced rather than duplicated.

Serving the three processes (the IdP, ``examples.portal.app`` and ``examples.service.app``)
is the job of ``examples/launcher.py``, next to the relying parties it starts: ``yitong
demo`` hands over to it (it needs a source checkout, as the examples are not installed).

The portal is registered first-party (no consent page); the service is an ordinary client,
so the citizen is asked once to let it use their identity, and the consent is remembered.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from idp import audit
from idp.accounts.people import NewCitizen, RegistrationError, find_citizen, register_citizen
from idp.app import build_services
from idp.config import ConfigError, Settings, load_settings
from idp.context import Services
from idp.instance import initialize
from idp.oauth.clients import ClientSpec, create_client
from idp.storage.models import Client
from idp.storage.repo import digest, new_secret

REPO_ROOT = Path(__file__).resolve().parent.parent
LAUNCHER = REPO_ROOT / "examples" / "launcher.py"
STATE_FILE = "demo.json"
BACKCHANNEL_PATH = "/backchannel-logout"
POST_LOGOUT_PATH = "/logged-out"

DEMO_CITIZEN = {
    "name": "王小明",
    "id_number": "210202197806263286",  # synthetic, checksum-valid (tests/data/synthetic-ids.json)
    "phone": "13800138000",
    "email": "wang.xiaoming@example.cn",
}


class DemoError(Exception):
    """The demo cannot start; the message says why."""


@dataclass(frozen=True)
class DemoLayout:
    """Where the three processes listen (``make demo``: 5000, 5001, 5002)."""

    #: The address the three processes listen on.
    host: str = "127.0.0.1"
    #: The host name in every URL: ``localhost`` is a secure context for browsers, so
    #: passkeys (WebAuthn) work in the demo without TLS; it resolves to ``host``.
    public_host: str = "localhost"
    idp_port: int = 5000
    portal_port: int = 5001
    service_port: int = 5002

    def url(self, port: int) -> str:
        return f"http://{self.public_host}:{port}"

    @property
    def idp_url(self) -> str:
        return self.url(self.idp_port)

    @property
    def portal_url(self) -> str:
        return self.url(self.portal_port)

    @property
    def service_url(self) -> str:
        return self.url(self.service_port)


@dataclass(frozen=True)
class DemoClient:
    key: str  # "portal" | "service"
    client_id: str
    client_secret: str
    url: str


@dataclass(frozen=True)
class DemoState:
    """What set-up made (and what the demo prints)."""

    issuer: str
    portal: DemoClient
    service: DemoClient
    citizen_id: str
    citizen_login: dict[str, str]
    password: str
    state_file: Path
    outbox: str | None = None
    created: list[str] = field(default_factory=list)


# ------------------------------------------------------------------ settings
def demo_settings(layout: DemoLayout, **overrides: Any) -> Settings:
    """The configured settings (TOML file, ``YITONG_*``) with the issuer the demo serves on."""
    try:
        settings = load_settings(issuer=layout.idp_url, **overrides)
    except ConfigError as exc:
        raise DemoError(f"configuration: {exc}") from None
    if settings.is_production:
        raise DemoError("the demo is for development only; unset YITONG_ENV=production")
    return settings


def settings_environment(settings: Settings) -> dict[str, str]:
    """``YITONG_*`` variables that make a child process load exactly ``settings``.

    Only values that differ from the defaults are passed; a TOML file named by
    ``YITONG_CONFIG`` reaches the child through the inherited environment.
    """
    env: dict[str, str] = {}
    for f in dataclasses.fields(Settings):
        value = getattr(settings, f.name)
        default = f.default if f.default is not dataclasses.MISSING else None
        if value == default or isinstance(value, Mapping):
            continue
        if f.name == "instance_dir":
            value = str(Path(value).resolve())
        if isinstance(value, tuple):
            value = ",".join(value)
        env["YITONG_" + f.name.upper()] = str(value)
    return env


# ------------------------------------------------------------------ the state file
def _read_state(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise DemoError(f"{path} is unreadable ({exc}); delete it to start over") from None
    return data if isinstance(data, dict) else {}


def _write_state(path: Path, data: dict[str, Any]) -> None:
    """Write atomically with mode 0600 (it holds client secrets and a password)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh, ensure_ascii=False, indent=2)
        fh.write("\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


# ------------------------------------------------------------------ set-up
def _client_specs(layout: DemoLayout) -> list[tuple[str, ClientSpec]]:
    def spec(key: str, name: str, url: str, scopes: list[str], first_party: bool) -> ClientSpec:
        return ClientSpec(
            name=name,
            client_id=f"demo-{key}",
            redirect_uris=[url + "/callback"],
            post_logout_redirect_uris=[url + POST_LOGOUT_PATH],
            backchannel_logout_uri=url + BACKCHANNEL_PATH,
            scopes=scopes,
            first_party=first_party,
        )

    return [
        (
            "portal",
            spec(
                "portal",
                "省政务服务门户",
                layout.portal_url,
                ["openid", "profile", "email", "phone"],
                True,
            ),
        ),
        (
            "service",
            spec(
                "service",
                "社会保障服务",
                layout.service_url,
                ["openid", "profile"],
                False,
            ),
        ),
    ]


def _ensure_client(
    session: Session, spec: ClientSpec, stored: Mapping[str, Any], created: list[str]
) -> str:
    """Register the client, or bring an existing one in line with ``spec``; return its secret."""
    row = session.get(Client, spec.client_id)
    if row is None:
        _row, secret = create_client(session, spec, actor="demo")
        created.append(f"client {spec.client_id}")
        assert secret is not None
        return str(secret)
    changes: dict[str, Any] = {}
    wanted = {
        "redirect_uris": list(spec.redirect_uris),
        "post_logout_redirect_uris": list(spec.post_logout_redirect_uris),
        "backchannel_logout_uri": spec.backchannel_logout_uri,
        "scopes": list(spec.scopes),
        "first_party": spec.first_party,
        "status": "approved",
    }
    for attr, value in wanted.items():
        if getattr(row, attr) != value:
            setattr(row, attr, value)
            changes[attr] = value
    secret = stored.get("client_secret")
    if not isinstance(secret, str) or row.secret_digest != digest(secret):
        # The secret was shown once and its copy is gone: issue a new one (demo only).
        secret = new_secret(32)
        row.secret_digest = digest(secret)
        changes["client_secret"] = "(replaced)"
    if changes:
        audit.record(
            session,
            "client.update",
            actor="demo",
            target=row.client_id,
            details={"changed": sorted(changes)},
        )
    return secret


def _ensure_citizen(
    session: Session, services: Services, stored: Mapping[str, Any], created: list[str]
) -> tuple[str, str]:
    """Create the demo citizen, or make sure the remembered password still opens the account."""
    password = stored.get("password")
    user = find_citizen(session, DEMO_CITIZEN["id_number"], vault=services.vault)
    if user is None:
        password = password if isinstance(password, str) else _new_password()
        for _attempt in range(5):
            try:
                user = register_citizen(
                    session,
                    NewCitizen(password=password, **DEMO_CITIZEN),
                    vault=services.vault,
                    passwords=services.passwords,
                    actor="demo",
                )
                break
            except RegistrationError as exc:
                if exc.field != "password":
                    raise DemoError(
                        f"cannot create the demo citizen: {exc.field}: {exc.message}"
                    ) from None
                password = _new_password()  # the policy refused it (a context word by chance)
        else:
            raise DemoError("cannot choose a password the password policy accepts")
        # The demo citizen's e-mail counts as confirmed (its link was "followed" at setup); the
        # phone is confirmed by SMS code on the security page, from the outbox below.
        user.email_verified = True
        created.append(f"citizen {user.id}")
        return user.id, password
    if not isinstance(password, str) or not services.passwords.verify(user.password_hash, password):
        password = _new_password()
        user.password_hash = services.passwords.hash(password)
        audit.record(session, "user.password_reset", actor="demo", target=user.id)
    if user.status != "active":
        user.status = "active"
    user.email_verified = True
    return user.id, password


def _new_password() -> str:
    # 16 characters from a 64-symbol alphabet: 96 bits; never on the blocklist.
    return "Yt-" + secrets.token_urlsafe(12)


def _outbox_location(settings: Settings) -> str | None:
    """Where the development SMS/e-mail outbox is, when no SMS gateway is configured."""
    if getattr(settings, "sms_gateway_url", ""):
        return None
    where = make_url(settings.resolved_database_url).render_as_string(hide_password=True)
    return f"table outbox_messages in {where} (`yitong demo` prints new messages as [outbox] lines)"


def setup(settings: Settings, layout: DemoLayout) -> DemoState:
    """Migrate, make keys, register the demo clients and the citizen (idempotent)."""
    services = build_services(settings)
    created: list[str] = []
    state_path = Path(settings.instance_dir).resolve() / STATE_FILE
    try:
        made = initialize(settings.resolved_database_url, services.keys)
        created += [f"signing key {kid}" for kid in made]
        stored = _read_state(state_path)
        clients: dict[str, DemoClient] = {}
        with services.db.transaction() as session:
            for key, spec in _client_specs(layout):
                secret = _ensure_client(session, spec, stored.get(key) or {}, created)
                url = spec.redirect_uris[0].rsplit("/callback", 1)[0]
                clients[key] = DemoClient(key, f"demo-{key}", secret, url)
            citizen_id, password = _ensure_citizen(
                session, services, stored.get("citizen") or {}, created
            )
        outbox = _outbox_location(settings)
    finally:
        services.db.dispose()
    login = {
        "id_number": DEMO_CITIZEN["id_number"],
        "phone": DEMO_CITIZEN["phone"],
        "email": DEMO_CITIZEN["email"],
    }
    _write_state(
        state_path,
        {
            "issuer": settings.issuer,
            **{
                k: {"client_id": c.client_id, "client_secret": c.client_secret, "url": c.url}
                for k, c in clients.items()
            },
            "citizen": {
                "id": citizen_id,
                "name": DEMO_CITIZEN["name"],
                **login,
                "password": password,
            },
        },
    )
    return DemoState(
        issuer=settings.issuer,
        portal=clients["portal"],
        service=clients["service"],
        citizen_id=citizen_id,
        citizen_login=login,
        password=password,
        state_file=state_path,
        outbox=outbox,
        created=created,
    )


def describe(state: DemoState) -> list[str]:
    """The banner's lines: URLs and the demo citizen's login."""
    lines = [
        "",
        "Yitong (一通) demo",
        f"  IdP       {state.issuer}",
        f"  portal    {state.portal.url}      (first-party: no consent page)",
        f"  service   {state.service.url}      (asks consent once, then remembers)",
        "",
        f"  demo citizen {DEMO_CITIZEN['name']} (synthetic data); log in with any one of",
        f"    ID number  {state.citizen_login['id_number']}",
        f"    e-mail     {state.citizen_login['email']}",
        f"    phone      {state.citizen_login['phone']}  (once confirmed by SMS code)",
        f"    password   {state.password}",
        "",
        f"  client ids and secrets: {state.state_file} (mode 0600)",
    ]
    if state.outbox:
        lines.append(f"  development SMS/e-mail outbox: {state.outbox}")
    lines += [
        "",
        f"  Open {state.portal.url}, sign in, then follow 'Open' to the service: no second password.",
        "",
    ]
    return lines

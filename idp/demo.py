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

The service also lets people act for companies (scope ``entity``, issue 10): set-up registers
a demo company of the synthetic enterprise registry for its legal representative (a second
demo citizen) and gives a third one, the agent (经办人), an accepted mandate covering the
service.  Either signs in at the service with 法人登录 (the company's credit code and their
own login) and arrives acting for the company (the ``authority`` claim).

The ticket bridge (issue 13) gets one demo legacy system, whose id and secret are printed, so
an integrator can try the protocol (``clients/yitong_bridge.py``) against the demo at once.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from adapters.enterprise import DEMO_PRESENTATION
from idp import audit
from idp.accounts.entities import (
    EntityError,
    MandateOffer,
    accept_mandate,
    find_entity,
    grant_mandate,
    register_entity,
    standing_mandate,
    verify_entity_licence,
)
from idp.accounts.mandates import mandate_is_live
from idp.accounts.people import NewCitizen, RegistrationError, find_citizen, register_citizen
from idp.app import build_services
from idp.bridge.registry import BridgeSystemSpec, create_system, is_system, list_systems
from idp.config import ConfigError, Settings, load_settings
from idp.context import Services
from idp.demo_admins import DemoAdmin, describe_admins, ensure_admins
from idp.instance import initialize
from idp.oauth.clients import ClientSpec, create_client
from idp.storage.models import Client, User, utcnow
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
#: The demo company (idp/data/synthetic-enterprises.json names DEMO_REPRESENTATIVE's ID number
#: as its legal representative) and the people acting for it.
DEMO_COMPANY_CODE = "91210603A5Y2EXPB06"
DEMO_REPRESENTATIVE = {
    "name": "张三",
    "id_number": "210302196312038696",
    "phone": "13800138011",
    "email": "zhang.san@example.cn",
}
DEMO_AGENT = {
    "name": "李四",
    "id_number": "210102200405088148",
    "phone": "13800138012",
    "email": "li.si@example.cn",
}
DEMO_MANDATE_ROLE = "finance"
DEMO_MANDATE_DAYS = 365


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
    #: Where the demo legacy system of the ticket bridge would listen (nothing is started
    #: there: run your own system, or the reference client, against the printed credentials).
    legacy_port: int = 5003

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

    @property
    def legacy_url(self) -> str:
        return self.url(self.legacy_port)


@dataclass(frozen=True)
class DemoClient:
    key: str  # "portal" | "service"
    client_id: str
    client_secret: str
    url: str


@dataclass(frozen=True)
class DemoPerson:
    """A demo account: who, how to sign in."""

    id: str
    name: str
    login: dict[str, str]
    password: str


@dataclass(frozen=True)
class DemoCompany:
    """The demo company, its representative and its agent."""

    id: str
    name: str
    credit_code: str
    representative: DemoPerson
    agent: DemoPerson
    role: str


@dataclass(frozen=True)
class DemoSystem:
    """The demo legacy system registered with the ticket bridge (issue 13), and its secret."""

    system_id: str
    secret: str
    callback: str


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
    admins: list[DemoAdmin] = field(default_factory=list)
    company: DemoCompany | None = None
    bridge: DemoSystem | None = None


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
                ["openid", "profile", "email", "phone", "qr_login"],
                True,
            ),
        ),
        (
            "service",
            spec(
                "service",
                "社会保障服务",
                layout.service_url,
                ["openid", "profile", "entity"],
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
    session: Session,
    services: Services,
    stored: Mapping[str, Any],
    created: list[str],
    person: Mapping[str, str] = DEMO_CITIZEN,
) -> tuple[str, str]:
    """Create a demo citizen, or make sure the remembered password still opens the account."""
    password = stored.get("password")
    user = find_citizen(session, person["id_number"], vault=services.vault)
    if user is None:
        password = password if isinstance(password, str) else _new_password()
        for _attempt in range(5):
            try:
                user = register_citizen(
                    session,
                    NewCitizen(password=password, **person),
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


def _ensure_company(
    session: Session, services: Services, rep_id: str, agent_id: str, created: list[str]
) -> tuple[str, str]:
    """Register the demo company for its representative and give the agent an accepted
    mandate covering the service; keep both when they are still there.  Returns the company's
    id and name."""
    entity = find_entity(session, services.vault, DEMO_COMPANY_CODE)
    representative = session.get(User, rep_id)
    agent = session.get(User, agent_id)
    assert representative is not None and agent is not None
    if entity is None:
        try:
            entity = register_entity(
                session,
                vault=services.vault,
                registry=services.enterprises,
                credit_code=DEMO_COMPANY_CODE,
                representative=representative,
                actor="demo",
                valid_days=services.settings.entity_verification_valid_days,
            )
            if services.licences is not None:  # the demo licence service raises it to L5
                verify_entity_licence(
                    session, services, entity, DEMO_PRESENTATION + DEMO_COMPANY_CODE, actor="demo"
                )
        except EntityError as exc:
            raise DemoError(f"cannot register the demo company: {exc.message}") from None
        created.append(f"company {entity.name}")
    if entity.status != "active":
        raise DemoError(f"the demo company is {entity.status}; delete the database to start over")
    now = utcnow()
    standing = standing_mandate(session, entity, agent)
    if standing is None or not mandate_is_live(standing, now):
        offer = MandateOffer(
            DEMO_MANDATE_ROLE,
            now + dt.timedelta(days=DEMO_MANDATE_DAYS),
            client_ids=("demo-service",),
        )
        try:
            row = grant_mandate(
                session,
                entity,
                agent,
                offer,
                roles=services.settings.mandate_roles,
                granter=representative,
                actor=representative.id,
                known_client=lambda cid: session.get(Client, cid) is not None,
            )
            accept_mandate(session, row, agent)
        except EntityError as exc:
            raise DemoError(f"cannot give the demo mandate: {exc.message}") from None
        created.append(f"mandate {DEMO_MANDATE_ROLE} for {agent.name}")
    return entity.id, entity.name


DEMO_SYSTEM_NAME = "演示旧系统 (demo legacy system)"


def _ensure_bridge_system(
    session: Session,
    services: Services,
    layout: DemoLayout,
    stored: Mapping[str, Any],
    created: list[str],
) -> DemoSystem:
    """Register the demo legacy system with the ticket bridge, or keep the one a previous run
    registered (same id and secret); when the state file is lost, its secret is replaced."""
    callback = layout.legacy_url + "/callback"
    system_id, secret = stored.get("system_id"), stored.get("secret")
    row = session.get(Client, system_id) if isinstance(system_id, str) else None
    if row is None or not is_system(row):
        row = next((r for r in list_systems(session) if r.name == DEMO_SYSTEM_NAME), None)
    if row is None:
        spec = BridgeSystemSpec(
            name=DEMO_SYSTEM_NAME,
            callback=callback,
            attributes=["name", "phone_number"],
            backchannel_logout_uri=layout.legacy_url + "/logout",
        )
        row, secret = create_system(session, spec, actor="demo", kek=services.kek)
        created.append(f"bridge system {row.client_id}")
        return DemoSystem(row.client_id, secret, callback)
    if not isinstance(secret, str) or row.secret_digest != digest(secret):
        # The secret was shown once and its copy is gone: issue a new one (demo only).
        secret = new_secret(32)
        row.secret_digest = digest(secret)
        row.secret_ciphertext = services.kek.encrypt(secret.encode(), aad=row.client_id.encode())
        audit.record(
            session,
            "bridge.system.update",
            actor="demo",
            target=row.client_id,
            details={"changed": ["secret"]},
        )
    row.redirect_uris = [callback]
    return DemoSystem(row.client_id, secret, callback)


def _new_password() -> str:
    # 16 characters from a 64-symbol alphabet: 96 bits; never on the blocklist.
    return "Yt-" + secrets.token_urlsafe(12)


def _login(person: Mapping[str, str]) -> dict[str, str]:
    return {k: person[k] for k in ("id_number", "phone", "email")}


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
            people: dict[str, DemoPerson] = {}
            for key, person in (
                ("representative", DEMO_REPRESENTATIVE),
                ("agent", DEMO_AGENT),
            ):
                pid, secret = _ensure_citizen(
                    session, services, stored.get(key) or {}, created, person
                )
                people[key] = DemoPerson(pid, person["name"], _login(person), secret)
            entity_id, entity_name = _ensure_company(
                session, services, people["representative"].id, people["agent"].id, created
            )
            bridge = _ensure_bridge_system(
                session, services, layout, stored.get("bridge") or {}, created
            )
        # The admin service layer commits its own changes: a plain session, not a transaction.
        with services.db.session() as session:
            admins = ensure_admins(session, services, stored, created, _new_password)
            session.commit()
        outbox = _outbox_location(settings)
    finally:
        services.db.dispose()
    login = _login(DEMO_CITIZEN)
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
            **{a.key: a.as_state() for a in admins},
            **{
                key: {"id": p.id, "name": p.name, **p.login, "password": p.password}
                for key, p in people.items()
            },
            "company": {"id": entity_id, "name": entity_name, "credit_code": DEMO_COMPANY_CODE},
            "bridge": dataclasses.asdict(bridge),
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
        admins=admins,
        company=DemoCompany(
            entity_id,
            entity_name,
            DEMO_COMPANY_CODE,
            people["representative"],
            people["agent"],
            DEMO_MANDATE_ROLE,
        ),
        bridge=bridge,
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
        *describe_admins(state.admins, state.issuer),
        "",
        f"  client ids and secrets: {state.state_file} (mode 0600)",
    ]
    if state.company is not None:
        c = state.company
        lines += [
            "",
            f"  demo company {c.name}, unified social credit code {c.credit_code}",
            "  at the service choose 法人登录 (legal-person login), give the code, then sign in as",
            f"    legal representative {c.representative.name}: e-mail "
            f"{c.representative.login['email']}  password {c.representative.password}",
            f"    agent (经办人, role {c.role}) {c.agent.name}: e-mail "
            f"{c.agent.login['email']}  password {c.agent.password}",
        ]
    if state.bridge is not None:
        b = state.bridge
        lines += [
            "",
            "  ticket bridge (legacy systems, protocol yitong-bridge/1, docs/integrating.md):",
            f"    system id  {b.system_id}",
            f"    secret     {b.secret}",
            f"    callback   {b.callback}  (run your system there; clients/yitong_bridge.py)",
        ]
    if state.outbox:
        lines.append(f"  development SMS/e-mail outbox: {state.outbox}")
    lines += [
        "",
        f"  Open {state.portal.url}, sign in, then follow 'Open' to the service: no second password.",
        f"  QR login: {state.portal.url}/app is the simulated government app (signed in at the",
        "  portal); open the service in a private window and paste the QR code's link there.",
        "",
    ]
    return lines

"""``yitong demo``: the IdP and two demo relying parties, set up idempotently and served together.

Set-up (``yitong demo --no-serve`` stops after it) migrates the schema, makes sure signing
keys exist, registers the two demo clients and creates the demo citizen.  Every step reuses
what a previous run made: the clients' secrets and the citizen's password live in
``<instance_dir>/demo.json`` (mode 0600); when that file is lost, the secrets and password
are replaced rather than duplicated.

Serving starts three processes (the IdP with ``yitong run``, ``examples.portal.app`` and
``examples.service.app``), waits until each answers, prints the demo login and forwards their
output with a prefix; Ctrl-C (or SIGTERM, or any of them dying) stops all three.

The portal is registered first-party (no consent page); the service is an ordinary client,
so the citizen is asked once to let it use their identity, and the consent is remembered.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import click

from idp.config import ConfigError, Settings, load_settings

REPO_ROOT = Path(__file__).resolve().parent.parent
STATE_FILE = "demo.json"
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
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

    host: str = "127.0.0.1"
    idp_port: int = 5000
    portal_port: int = 5001
    service_port: int = 5002

    def url(self, port: int) -> str:
        return f"http://{self.host}:{port}"

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
def _client_specs(layout: DemoLayout) -> list[tuple[str, Any]]:
    from idp.oauth.clients import ClientSpec

    def spec(key: str, name: str, url: str, scopes: list[str], first_party: bool) -> Any:
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
                "省政务服务门户 Provincial portal",
                layout.portal_url,
                ["openid", "profile", "email", "phone"],
                True,
            ),
        ),
        (
            "service",
            spec(
                "service",
                "社会保障服务 Social security service",
                layout.service_url,
                ["openid", "profile"],
                False,
            ),
        ),
    ]


def _ensure_client(session: Any, spec: Any, stored: Mapping[str, Any], created: list[str]) -> str:
    """Register the client, or bring an existing one in line with ``spec``; return its secret."""
    from idp import audit
    from idp.oauth.clients import create_client
    from idp.storage.models import Client
    from idp.storage.repo import digest, new_secret

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
    session: Any, services: Any, stored: Mapping[str, Any], created: list[str]
) -> tuple[str, str]:
    """Create the demo citizen, or make sure the remembered password still opens the account."""
    from idp import audit
    from idp.accounts.people import NewCitizen, RegistrationError, find_citizen, register_citizen

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
        created.append(f"citizen {user.id}")
        return user.id, password
    if not isinstance(password, str) or not services.passwords.verify(user.password_hash, password):
        password = _new_password()
        user.password_hash = services.passwords.hash(password)
        audit.record(session, "user.password_reset", actor="demo", target=user.id)
    if user.status != "active":
        user.status = "active"
    return user.id, password


def _new_password() -> str:
    # 16 characters from a 64-symbol alphabet: 96 bits; never on the blocklist.
    return "Yt-" + secrets.token_urlsafe(12)


def _outbox_location(settings: Settings) -> str | None:
    """Where the development SMS/e-mail outbox is, if this build keeps one and no gateway is set."""
    try:
        import idp.interaction.outbox  # noqa: F401 - present once the MFA work provides it
    except ImportError:
        return None
    if getattr(settings, "sms_gateway_url", ""):
        return None
    from sqlalchemy.engine import make_url

    where = make_url(settings.resolved_database_url).render_as_string(hide_password=True)
    return f"table outbox_messages in {where} (`yitong demo` prints new messages as [outbox] lines)"


class OutboxPrinter:
    """Prints messages that reach the development outbox while the demo runs."""

    def __init__(self, settings: Settings) -> None:
        from idp.storage.db import Database

        self.db = Database(settings.resolved_database_url)
        self.last_id = max((m.id for m in self._read(0, 10_000)), default=0)

    def _read(self, after_id: int, limit: int = 50) -> list[Any]:
        try:
            from idp.interaction.outbox import read_outbox
        except ImportError:
            return []
        return list(read_outbox(self.db, after_id=after_id, limit=limit))

    def poll(self) -> None:
        for m in self._read(self.last_id):
            self.last_id = max(self.last_id, m.id)
            click.echo(f"[outbox] {m.channel} to {m.destination}: {m.body}")

    def close(self) -> None:
        self.db.dispose()


def setup(settings: Settings, layout: DemoLayout) -> DemoState:
    """Migrate, make keys, register the demo clients and the citizen (idempotent)."""
    from idp.app import build_services
    from idp.cli import initialize

    services = build_services(settings)
    created: list[str] = []
    state_path = Path(settings.instance_dir).resolve() / STATE_FILE
    try:
        created += [f"signing key {kid}" for kid in initialize(services)]
        stored = _read_state(state_path)
        clients: dict[str, DemoClient] = {}
        with services.db.transaction() as session:
            for key, spec in _client_specs(layout):
                secret = _ensure_client(session, spec, stored.get(key) or {}, created)
                url = spec.redirect_uris[0].rsplit("/callback", 1)[0]
                clients[key] = DemoClient(key, spec.client_id, secret, url)
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


def describe(state: DemoState) -> str:
    """The banner: URLs and the demo citizen's login."""
    lines = [
        "",
        "Yitong (一通) demo",
        f"  IdP       {state.issuer}",
        f"  portal    {state.portal.url}      (first-party: no consent page)",
        f"  service   {state.service.url}      (asks consent once, then remembers)",
        "",
        f"  demo citizen {DEMO_CITIZEN['name']} (synthetic data); log in with any one of",
        f"    ID number  {state.citizen_login['id_number']}",
        f"    phone      {state.citizen_login['phone']}",
        f"    e-mail     {state.citizen_login['email']}",
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
    return "\n".join(lines)


# ------------------------------------------------------------------ processes
def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Linux: the child gets SIGTERM if the demo process dies without cleaning up."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_DEATHSIG


class DemoProcess:
    """One child process whose output is kept (last lines) and optionally echoed with a prefix."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        env: Mapping[str, str],
        health_url: str,
        *,
        echo: TextIO | None,
    ) -> None:
        self.name = name
        self.health_url = health_url
        self.lines: collections.deque[str] = collections.deque(maxlen=200)
        self._echo = echo
        self.proc = subprocess.Popen(  # noqa: S603 - fixed argv of our own modules
            argv,
            env=dict(env),
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        self._reader = threading.Thread(target=self._pump, name=f"demo-{name}", daemon=True)
        self._reader.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            line = ANSI_ESCAPE.sub("", line.rstrip("\n"))
            self.lines.append(line)
            if self._echo is not None:
                with contextlib.suppress(ValueError, OSError):
                    print(f"[{self.name}] {line}", file=self._echo, flush=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise DemoError(
                    f"{self.name} exited with status {self.proc.returncode}:\n{self.tail()}"
                )
            try:
                with urllib.request.urlopen(self.health_url, timeout=2) as resp:  # noqa: S310 - our URL
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise DemoError(
            f"{self.name} did not answer at {self.health_url} within {timeout:.0f} s:\n{self.tail()}"
        )

    def tail(self, n: int = 30) -> str:
        return "\n".join(list(self.lines)[-n:])

    def stop(self, timeout: float = 5.0) -> None:
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        self._reader.join(timeout)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@dataclass
class DemoProcesses:
    idp: DemoProcess
    portal: DemoProcess
    service: DemoProcess

    def all(self) -> list[DemoProcess]:
        return [self.idp, self.portal, self.service]

    def stop(self) -> None:
        # Relying parties first: the IdP may still be delivering back-channel logouts to them.
        for p in (self.portal, self.service, self.idp):
            p.stop()


def _rp_env(
    base: Mapping[str, str], client: DemoClient, peer: DemoClient, issuer: str, peer_name: str
) -> dict[str, str]:
    env = dict(base)
    port = client.url.rsplit(":", 1)[1]
    env.update(
        RP_ISSUER=issuer,
        RP_CLIENT_ID=client.client_id,
        RP_CLIENT_SECRET=client.client_secret,
        RP_BASE_URL=client.url,
        RP_HOST=client.url.split("//", 1)[1].rsplit(":", 1)[0],
        RP_PORT=port,
        RP_PEER_URL=peer.url,
        RP_PEER_NAME=peer_name,
        RP_SECRET_KEY=secrets.token_urlsafe(32),
    )
    return env


def start(
    settings: Settings,
    layout: DemoLayout,
    state: DemoState,
    *,
    echo: TextIO | None = None,
    timeout: float = 30.0,
) -> DemoProcesses:
    """Start the IdP, the portal and the service; return once all three answer."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("YITONG_", "RP_"))}
    if "YITONG_CONFIG" in os.environ:
        base["YITONG_CONFIG"] = os.environ["YITONG_CONFIG"]
    base["PYTHONUNBUFFERED"] = "1"
    base["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), base.get("PYTHONPATH")) if p)
    idp_env = {**base, **settings_environment(settings)}
    started: list[DemoProcess] = []
    try:
        idp = DemoProcess(
            "idp",
            [
                sys.executable,
                "-m",
                "idp.cli",
                "run",
                "--host",
                layout.host,
                "--port",
                str(layout.idp_port),
            ],
            idp_env,
            layout.idp_url + "/.well-known/openid-configuration",
            echo=echo,
        )
        started.append(idp)
        portal = DemoProcess(
            "portal",
            [sys.executable, "-m", "examples.portal.app"],
            _rp_env(base, state.portal, state.service, state.issuer, "the social security service"),
            state.portal.url + "/healthz",
            echo=echo,
        )
        started.append(portal)
        service = DemoProcess(
            "service",
            [sys.executable, "-m", "examples.service.app"],
            _rp_env(base, state.service, state.portal, state.issuer, "the portal"),
            state.service.url + "/healthz",
            echo=echo,
        )
        started.append(service)
        for p in started:
            p.wait_ready(timeout)
    except BaseException:
        for p in reversed(started):
            p.stop()
        raise
    return DemoProcesses(idp, portal, service)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    def handler(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def serve_all(settings: Settings, layout: DemoLayout, state: DemoState) -> int:
    """Run until Ctrl-C or until a process dies; stop all three either way."""
    with _sigterm_as_interrupt():
        try:
            procs = start(settings, layout, state, echo=sys.stdout)
        except KeyboardInterrupt:
            return 130
        click.echo(describe(state))
        click.echo("Press Ctrl-C to stop all three.\n")
        outbox = OutboxPrinter(settings) if state.outbox else None
        try:
            while True:
                if outbox is not None:
                    outbox.poll()
                for p in procs.all():
                    if not p.alive():
                        click.echo(
                            f"{p.name} exited with status {p.proc.returncode}; stopping the demo",
                            err=True,
                        )
                        procs.stop()
                        return 1
                time.sleep(0.5)
        except KeyboardInterrupt:
            click.echo("\nstopping the demo…")
            procs.stop()
            return 0
        finally:
            if outbox is not None:
                outbox.close()


def run_demo(serve: bool = True, layout: DemoLayout | None = None) -> None:
    """Entry point of ``yitong demo``."""
    from idp.cli import CliError

    layout = layout or DemoLayout()
    try:
        settings = demo_settings(layout)
        state = setup(settings, layout)
    except DemoError as exc:
        raise CliError(str(exc)) from None
    for item in state.created:
        click.echo(f"created {item}")
    if not serve:
        click.echo(describe(state))
        return
    try:
        status = serve_all(settings, layout, state)
    except DemoError as exc:
        raise CliError(str(exc)) from None
    if status:
        sys.exit(status)

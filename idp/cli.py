"""The ``yitong`` command: init, run, demo, users, clients, audit (keys and ldap join in).

Every command reports bad input in one clear line on stderr and exits non-zero; ``--json``
output is for scripts and prints nothing else on stdout.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
from flask import Flask

from idp.config import ConfigError


class CliError(click.ClickException):
    """A user-facing error: printed as ``error: …`` with exit status 2."""

    exit_code = 2

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.message}", err=True)


def make_app() -> Flask:
    from idp.app import create_app

    try:
        return create_app()
    except ConfigError as exc:
        raise CliError(f"configuration: {exc}") from None


@contextmanager
def app_services() -> Iterator[Any]:
    app = make_app()
    with app.app_context():
        yield app.extensions["yitong"]


def emit(data: Any, as_json: bool, text: str | None = None) -> None:
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False))
    else:
        click.echo(text if text is not None else json.dumps(data, ensure_ascii=False, indent=2))


@click.group()
def main() -> None:
    """Yitong (一通): unified identity and single sign-on."""


# ------------------------------------------------------------------ init / run
def initialize(services: Any) -> list[str]:
    """Create or upgrade the schema and make sure a signing key exists for every algorithm."""
    from idp.storage.migrate import upgrade

    upgrade(services.settings.resolved_database_url)
    made: list[str] = services.keys.ensure_keys()
    return made


@main.command()
def init() -> None:
    """Create or upgrade the database schema and generate signing keys when none exist."""
    with app_services() as services:
        try:
            made = initialize(services)
        except Exception as exc:
            raise CliError(f"initialization failed: {exc}") from None
        click.echo(f"schema up to date at {services.settings.resolved_database_url.split('@')[-1]}")
        for kid in made:
            click.echo(f"generated signing key {kid}")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
def run(host: str, port: int) -> None:
    """Serve the IdP with the development server (use gunicorn in production: see README)."""
    app = make_app()
    app.run(host=host, port=port, debug=False, use_reloader=False)


# ------------------------------------------------------------------ users
@main.group()
def users() -> None:
    """Manage citizen accounts."""


@users.command("add")
@click.option("--name", required=True)
@click.option("--id-number", required=True, help="18-character resident ID number")
@click.option("--phone", default=None)
@click.option("--email", default=None)
@click.option("--password", default=None, help="prompted for when omitted")
@click.option("--json", "as_json", is_flag=True)
def users_add(
    name: str,
    id_number: str,
    phone: str | None,
    email: str | None,
    password: str | None,
    as_json: bool,
) -> None:
    """Register a citizen; prints the new account's id."""
    from idp.accounts.people import NewCitizen, RegistrationError, register_citizen

    if password is None:
        password = click.prompt("password", hide_input=True, confirmation_prompt=True)
    with app_services() as services, services.db.transaction() as session:
        try:
            user = register_citizen(
                session,
                NewCitizen(
                    name=name, id_number=id_number, phone=phone, email=email, password=password
                ),
                vault=services.vault,
                passwords=services.passwords,
                actor="cli",
            )
        except RegistrationError as exc:
            raise CliError(f"{exc.field}: {exc.message}") from None
        emit({"id": user.id}, as_json, f"created citizen {user.id} ({user.id_number_masked})")


@users.command("disable")
@click.argument("user_id")
def users_disable(user_id: str) -> None:
    """Disable an account: its sessions end (clients are told) and its tokens are revoked."""
    from idp.accounts.lifecycle import disable_account
    from idp.storage.models import User

    with app_services() as services:
        with services.db.transaction() as session:
            user = session.get(User, user_id)
            if user is None:
                raise CliError(f"no account {user_id}")
            ended = disable_account(session, services, user, actor="cli")
        # A command has no request thread to outlive: deliver now (failures stay queued
        # for `yitong logout deliver`).
        services.logout.background = False
        ended.kick()
        n = len(ended.deliveries)
        click.echo(f"disabled {user_id}; {n} back-channel logout(s) sent or queued")


# ------------------------------------------------------------------ clients
@main.group()
def clients() -> None:
    """Manage OAuth 2.0 / OpenID Connect clients."""


def _read_jwks_file(path: str | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except OSError as exc:
        raise CliError(f"--jwks-file: cannot read {path}: {exc.strerror}") from None
    except ValueError:
        raise CliError(f"--jwks-file: {path} is not JSON") from None
    if not isinstance(data, dict):
        raise CliError(f'--jwks-file: {path} must hold a JWK set {{"keys": [...]}}')
    return data


@clients.command("add")
@click.option("--name", required=True)
@click.option("--redirect-uri", "redirect_uris", multiple=True, help="repeatable")
@click.option("--scope", "scopes", multiple=True, help="repeatable, or space-separated")
@click.option("--public", "kind", flag_value="public", help="a native or browser app (no secret)")
@click.option("--confidential", "kind", flag_value="confidential", default=True)
@click.option(
    "--first-party", is_flag=True, help="skip the consent page (the province's own portal)"
)
@click.option("--client-id", default=None, help="choose the client_id (default: random)")
@click.option(
    "--grant-type",
    "grant_types",
    multiple=True,
    type=click.Choice(["authorization_code", "refresh_token", "client_credentials"]),
    help="repeatable (default: authorization_code + refresh_token with redirect URIs, "
    "else client_credentials)",
)
@click.option(
    "--auth-method",
    type=click.Choice(
        [
            "client_secret_basic",
            "client_secret_post",
            "client_secret_jwt",
            "private_key_jwt",
            "none",
        ]
    ),
    default=None,
    help="token endpoint authentication (default: client_secret_basic; none for --public)",
)
@click.option("--jwks-uri", default=None, help="where the client publishes its public keys")
@click.option("--jwks-file", default=None, help="file holding the client's public JWK set")
@click.option(
    "--id-token-alg",
    type=click.Choice(["RS256", "PS256", "ES256", "EdDSA"]),
    default="RS256",
    show_default=True,
)
@click.option(
    "--subject-type", type=click.Choice(["public", "pairwise"]), default="public", show_default=True
)
@click.option("--sector-identifier-uri", default=None, help="https URL listing the redirect URIs")
@click.option(
    "--access-token-format",
    type=click.Choice(["opaque", "jwt"]),
    default="opaque",
    show_default=True,
)
@click.option("--require-par", is_flag=True, help="accept only pushed authorization requests")
@click.option("--post-logout-redirect-uri", "post_logout_uris", multiple=True, help="repeatable")
@click.option("--backchannel-logout-uri", default=None, help="receives logout tokens (POST)")
@click.option("--frontchannel-logout-uri", default=None, help="loaded in an iframe at logout")
@click.option(
    "--web-origin", "web_origins", multiple=True, help="repeatable; CORS for browser apps"
)
@click.option("--resource", "resources", multiple=True, help="repeatable; RFC 8707 audience")
@click.option("--json", "as_json", is_flag=True)
def clients_add(
    name: str,
    redirect_uris: tuple[str, ...],
    scopes: tuple[str, ...],
    kind: str,
    first_party: bool,
    client_id: str | None,
    grant_types: tuple[str, ...],
    auth_method: str | None,
    jwks_uri: str | None,
    jwks_file: str | None,
    id_token_alg: str,
    subject_type: str,
    sector_identifier_uri: str | None,
    access_token_format: str,
    require_par: bool,
    post_logout_uris: tuple[str, ...],
    backchannel_logout_uri: str | None,
    frontchannel_logout_uri: str | None,
    web_origins: tuple[str, ...],
    resources: tuple[str, ...],
    as_json: bool,
) -> None:
    """Register a client; prints client_id and (once) the secret.

    Every option is checked before anything is stored; a refusal names the option and why.
    """
    from idp.oauth.clients import ClientRegistrationError, ClientSpec, create_client
    from idp.oauth.outbound import OutboundPolicy, fetch_json

    if jwks_file and jwks_uri:
        raise CliError("give either --jwks-file or --jwks-uri, not both")
    scope_list = [s for item in scopes for s in item.split()] or ["openid", "profile"]
    spec = ClientSpec(
        name=name,
        redirect_uris=list(redirect_uris),
        scopes=scope_list,
        public=kind == "public",
        first_party=first_party,
        client_id=client_id,
        grant_types=list(grant_types) or None,
        auth_method=auth_method,
        jwks=_read_jwks_file(jwks_file),
        jwks_uri=jwks_uri,
        id_token_alg=id_token_alg,
        subject_type=subject_type,
        sector_identifier_uri=sector_identifier_uri,
        access_token_format=access_token_format,
        require_par=require_par,
        post_logout_redirect_uris=list(post_logout_uris),
        backchannel_logout_uri=backchannel_logout_uri,
        frontchannel_logout_uri=frontchannel_logout_uri,
        web_origins=list(web_origins),
        resources=list(resources),
    )
    with app_services() as services, services.db.transaction() as session:
        policy = OutboundPolicy.from_settings(services.settings)
        try:
            client, secret = create_client(
                session,
                spec,
                actor="cli",
                kek=services.kek,
                signing_algorithms=services.settings.signing_algorithms,
                sector_fetcher=lambda uri: fetch_json(uri, policy),
            )
        except ClientRegistrationError as exc:
            raise CliError(exc.message) from None
        data = {"client_id": client.client_id, "client_secret": secret}
        emit(
            data,
            as_json,
            f"client_id: {client.client_id}\nclient_secret: {secret or '(public client)'}",
        )


@clients.command("list")
@click.option("--json", "as_json", is_flag=True)
def clients_list(as_json: bool) -> None:
    from sqlalchemy import select

    from idp.oauth.clients import client_summary
    from idp.storage.models import Client

    with app_services() as services, services.db.session() as session:
        rows = [
            client_summary(c) for c in session.scalars(select(Client).order_by(Client.created_at))
        ]
    emit(
        rows,
        as_json,
        "\n".join(f"{r['client_id']}  {r['client_name']}  {r['status']}" for r in rows),
    )


# ------------------------------------------------------------------ logout deliveries
@main.group()
def logout() -> None:
    """Back-channel logout: the outbox of logout tokens for relying parties."""


@logout.command("deliver")
@click.option("--loop", is_flag=True, help="keep delivering (a worker process) until stopped")
@click.option("--interval", default=10.0, show_default=True, type=click.FloatRange(0.5, 3600))
def logout_deliver(loop: bool, interval: float) -> None:
    """Deliver (and retry, with back-off) the logout tokens that are due."""
    import time

    from idp.oauth.logout import DELIVERY_TIMEOUT, deliver_due

    with app_services() as services:
        poster = services.logout.poster
        while True:
            report = deliver_due(services.db, poster, timeout=DELIVERY_TIMEOUT)
            click.echo(
                f"delivered {report.delivered}, failed {report.failed} (will retry), "
                f"abandoned {report.abandoned}"
            )
            if not loop:
                return
            time.sleep(interval)


# ------------------------------------------------------------------ audit
@main.group()
def audit() -> None:
    """Inspect the tamper-evident audit trail."""


@audit.command("verify")
def audit_verify() -> None:
    """Check the hash chain; exits 1 and names the first bad entry when it is broken."""
    from idp import audit as audit_mod

    with app_services() as services, services.db.session() as session:
        result = audit_mod.verify(session)
    if result.ok:
        click.echo(f"audit trail intact: {result.count} entries")
        return
    click.echo(f"audit trail BROKEN: {result.problem}", err=True)
    sys.exit(1)


@audit.command("tail")
@click.option("-n", "count", default=20, show_default=True)
def audit_tail(count: int) -> None:
    from sqlalchemy import select

    from idp.storage.models import AuditEvent

    with app_services() as services, services.db.session() as session:
        rows = list(
            session.scalars(select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(count))
        )
    for e in reversed(rows):
        click.echo(
            f"{e.seq:>6} {e.at.isoformat(timespec='seconds')} {e.action:<20} {e.actor} {e.target or ''} {e.outcome}"
        )


# ------------------------------------------------------------------ config
@main.group()
def config() -> None:
    """Configuration helpers."""


@config.command("docs")
def config_docs() -> None:
    """Print the settings reference (docs/configuration.md is generated from it)."""
    from idp.config import settings_reference

    click.echo(settings_reference(), nl=False)


# ------------------------------------------------------------------ demo
@main.command()
@click.option("--no-serve", is_flag=True, help="only set up (used by tests)")
def demo(no_serve: bool) -> None:
    """Set up the demo (IdP, portal, service, a citizen) and serve all three."""
    from idp.demo import run_demo

    run_demo(serve=not no_serve)


# -- subcommand groups --------------------------------------------------------------------
from idp.cli_keys import keys  # noqa: E402 - registered after main exists
from idp.cli_ldap import ldap  # noqa: E402 - registered after main exists
from idp.cli_mfa import policy, totp_enroll, unlock  # noqa: E402 - registered after main exists

main.add_command(keys)
main.add_command(ldap)
main.add_command(policy)
users.add_command(totp_enroll)
users.add_command(unlock)


if __name__ == "__main__":
    main()

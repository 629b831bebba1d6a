"""``yitong clients``: register and list OAuth 2.0 / OpenID Connect clients; set release policy.

Registration checks every option before anything is stored; a refusal names the option and
why.  Names and URIs are the registrant's text: they are printed through the escaping output
helper (:func:`idp.cli.common.emit`).
"""

from __future__ import annotations

import json
from typing import Any

import click
from sqlalchemy import select

from admin.operations import (
    DEFAULT_GRACE,
    MAX_GRACE,
    rotate_secret,
    set_release_policy,
    update_client_metadata,
)
from admin.services import OPERATOR, AdminInputError, delete_client, set_client_status, show_client
from idp.cli.common import CliError, emit, open_services, out
from idp.interaction.policies import LEGAL_ENTITY_SCOPES
from idp.oauth.admin_scopes import ADMIN_SCOPE
from idp.oauth.claims import SCOPE_CLAIMS
from idp.oauth.clients import (
    GRANT_TYPES,
    ClientRegistrationError,
    ClientSpec,
    client_summary,
    create_client,
)
from idp.oauth.outbound import OutboundPolicy, fetch_json
from idp.storage.models import Client

#: The scopes a client may ask for by name: the OpenID Connect ones this provider serves,
#: refresh tokens, acting for a company and the admin API.
KNOWN_SCOPES = frozenset(
    {*SCOPE_CLAIMS, "openid", "offline_access", ADMIN_SCOPE, *LEGAL_ENTITY_SCOPES}
)


@click.group("clients")
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


def _refuse_unknown_scopes(scope_list: list[str]) -> None:
    """OpenID Connect scopes must be ones this provider serves; an API's own scopes are
    written ``api:action`` (RFC 6749 §3.3 leaves their names to the resource server)."""
    unknown = [s for s in scope_list if ":" not in s and s not in KNOWN_SCOPES]
    if unknown:
        raise CliError(
            f"unknown scope(s): {', '.join(unknown)} (known: {', '.join(sorted(KNOWN_SCOPES))}; "
            "an API's own scopes are written api:action)"
        )


@clients.command("add")
@click.option("--name", required=True)
@click.option("--redirect-uri", "redirect_uris", multiple=True, help="repeatable")
@click.option("--scope", "scopes", multiple=True, help="repeatable, or space-separated")
@click.option("--public", is_flag=True, help="a native or browser app (no secret)")
@click.option("--confidential", is_flag=True, help="a server-side app with a secret (default)")
@click.option(
    "--first-party", is_flag=True, help="skip the consent page (the province's own portal)"
)
@click.option("--client-id", default=None, help="choose the client_id (default: random)")
@click.option(
    "--grant-type",
    "grant_types",
    multiple=True,
    type=click.Choice(list(GRANT_TYPES)),
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
@click.option("--dpop", "dpop_bound", is_flag=True, help="require DPoP proofs (RFC 9449)")
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
    public: bool,
    confidential: bool,
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
    dpop_bound: bool,
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
    if jwks_file and jwks_uri:
        raise CliError("give either --jwks-file or --jwks-uri, not both")
    if public and confidential:
        raise CliError("give either --public or --confidential, not both")
    if not redirect_uris and not grant_types:
        raise CliError(
            "give --redirect-uri, or --grant-type client_credentials for a client that logs "
            "nobody in"
        )
    scope_list = [s for item in scopes for s in item.split()] or ["openid", "profile"]
    _refuse_unknown_scopes(scope_list)
    spec = ClientSpec(
        name=name,
        redirect_uris=list(redirect_uris),
        scopes=scope_list,
        public=public,
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
        dpop_bound_access_tokens=dpop_bound,
        post_logout_redirect_uris=list(post_logout_uris),
        backchannel_logout_uri=backchannel_logout_uri,
        frontchannel_logout_uri=frontchannel_logout_uri,
        web_origins=list(web_origins),
        resources=list(resources),
    )
    with open_services() as services, services.db.transaction() as session:
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
            [f"client_id: {client.client_id}", f"client_secret: {secret or '(public client)'}"],
        )


@clients.command("list")
@click.option("--json", "as_json", is_flag=True)
def clients_list(as_json: bool) -> None:
    """Every client: id, name and status (names are shown escaped, as given)."""
    with open_services() as services, services.db.session() as session:
        rows = [
            client_summary(c) for c in session.scalars(select(Client).order_by(Client.created_at))
        ]
    emit(rows, as_json, [f"{r['client_id']}  {r['client_name']}  {r['status']}" for r in rows])


def _names(raw: str | None) -> list[str] | None:
    """``a,b c`` -> ``["a", "b", "c"]``; None when the option was not given."""
    if raw is None:
        return None
    return [n for part in raw.split(",") for n in part.split() if n]


@clients.command("release")
@click.argument("client_id")
@click.option("--claims", default=None, help="plain claims allowed (comma-separated)")
@click.option("--verified-claims", default=None, help="verified claims allowed (comma-separated)")
@click.option("--min-assurance", default=None, help="minimum identity assurance: L2..L5")
@click.option("--account-types", default=None, help="served: citizen,company,staff")
@click.option("--json", "as_json", is_flag=True)
def clients_release(
    client_id: str,
    claims: str | None,
    verified_claims: str | None,
    min_assurance: str | None,
    account_types: str | None,
    as_json: bool,
) -> None:
    """Set CLIENT_ID's release policy; options not given keep their value."""
    changes = {
        "claims": _names(claims),
        "verified_claims": _names(verified_claims),
        "min_assurance": min_assurance,
        "account_types": _names(account_types),
    }
    with open_services() as services, services.db.session() as session:
        try:
            policy = set_release_policy(
                session, client_id, {k: v for k, v in changes.items() if v is not None}, OPERATOR
            )
        except AdminInputError as exc:
            raise CliError(exc.message) from None
    emit(policy, as_json, [f"{k}: {v}" for k, v in policy.items()])


def _status(client_id: str, status: str, as_json: bool) -> None:
    with open_services() as services, services.db.session() as session:
        try:
            result = set_client_status(session, client_id, status, OPERATOR)
        except AdminInputError as exc:
            raise CliError(exc.message) from None
    emit(result, as_json, [f"{result['client_id']}  {result['client_name']}  {result['status']}"])


@clients.command("show")
@click.argument("client_id")
@click.option("--json", "as_json", is_flag=True)
def clients_show(client_id: str, as_json: bool) -> None:
    """A client's registered metadata (never its secret)."""
    with open_services() as services, services.db.session() as session:
        try:
            result = show_client(session, client_id, OPERATOR)
        except AdminInputError as exc:
            raise CliError(exc.message) from None
    emit(result, as_json)


@clients.command("approve")
@click.argument("client_id")
@click.option("--json", "as_json", is_flag=True)
def clients_approve(client_id: str, as_json: bool) -> None:
    """Approve a pending (or re-enable a disabled) client: it may log people in."""
    _status(client_id, "approved", as_json)


@clients.command("disable")
@click.argument("client_id")
@click.option("--json", "as_json", is_flag=True)
def clients_disable(client_id: str, as_json: bool) -> None:
    """Disable a client: no more logins, and every token it holds is revoked."""
    _status(client_id, "disabled", as_json)


@clients.command("update")
@click.argument("client_id")
@click.option("--name", default=None)
@click.option("--redirect-uri", "redirect_uris", multiple=True, help="repeatable; replaces all")
@click.option("--post-logout-redirect-uri", "post_logout_uris", multiple=True, help="repeatable")
@click.option("--backchannel-logout-uri", default=None)
@click.option("--scope", "scopes", multiple=True, help="repeatable, or space-separated")
@click.option(
    "--exchange-target",
    "exchange_targets",
    multiple=True,
    help="repeatable; replaces all: a resource URI the client may exchange tokens for (RFC 8693)",
)
@click.option("--no-exchange-targets", is_flag=True, help="the client may exchange for nothing")
@click.option("--json", "as_json", is_flag=True)
def clients_update(
    client_id: str,
    name: str | None,
    redirect_uris: tuple[str, ...],
    post_logout_uris: tuple[str, ...],
    backchannel_logout_uri: str | None,
    scopes: tuple[str, ...],
    exchange_targets: tuple[str, ...],
    no_exchange_targets: bool,
    as_json: bool,
) -> None:
    """Change a client's name, URIs, scopes or token-exchange targets (options not given keep
    their value).

    Checked as an RFC 7592 update: a change that lets the client do more (a new exchange
    target too) sends it back to pending until a security admin approves it again.
    """
    changes: dict[str, Any] = {}
    if name is not None:
        changes["client_name"] = name
    if redirect_uris:
        changes["redirect_uris"] = list(redirect_uris)
    if post_logout_uris:
        changes["post_logout_redirect_uris"] = list(post_logout_uris)
    if backchannel_logout_uri is not None:
        changes["backchannel_logout_uri"] = backchannel_logout_uri
    if scopes:
        scope_list = [s for item in scopes for s in item.split()]
        _refuse_unknown_scopes(scope_list)
        changes["scope"] = " ".join(scope_list)
    if exchange_targets and no_exchange_targets:
        raise CliError("give --exchange-target or --no-exchange-targets, not both")
    if exchange_targets or no_exchange_targets:
        changes["exchange_targets"] = list(exchange_targets)
    if not changes:
        raise CliError("nothing to change: give at least one option")
    with open_services() as services, services.db.session() as session:
        try:
            result = update_client_metadata(session, services, client_id, changes, OPERATOR)
        except AdminInputError as exc:
            raise CliError(exc.message) from None
    emit(result, as_json, [f"{result['client_id']}  {result['client_name']}  {result['status']}"])


@clients.command("delete")
@click.argument("client_id")
@click.option("--yes", is_flag=True, help="do not ask for confirmation")
def clients_delete(client_id: str, yes: bool) -> None:
    """Delete a client; every token it holds is revoked."""
    if not yes:
        click.confirm(f"delete client {client_id} and revoke its tokens?", abort=True)
    with open_services() as services, services.db.session() as session:
        try:
            delete_client(session, client_id, OPERATOR)
        except AdminInputError as exc:
            raise CliError(exc.message) from None
    out(f"deleted {client_id}")


@clients.command("rotate-secret")
@click.argument("client_id")
@click.option(
    "--grace",
    type=click.IntRange(0, MAX_GRACE),
    default=DEFAULT_GRACE,
    show_default=True,
    help="seconds the old secret keeps working",
)
@click.option("--json", "as_json", is_flag=True)
def clients_rotate_secret(client_id: str, grace: int, as_json: bool) -> None:
    """A new secret for CLIENT_ID, printed once; the old one works for --grace seconds."""
    with open_services() as services, services.db.session() as session:
        try:
            result = rotate_secret(session, services, client_id, grace, OPERATOR)
        except AdminInputError as exc:
            raise CliError(exc.message) from None
    data = {
        "client_id": result["client_id"],
        "client_secret": result["client_secret"],
        "previous_secret_expires_at": result["previous_secret_expires_at"],
    }
    emit(data, as_json, [f"{k}: {v}" for k, v in data.items()])

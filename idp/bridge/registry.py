"""Bridge systems: registration, credentials and the attributes each may receive.

Each system gets its own id and a 256-bit secret, shown once.  The secret both signs the
system's browser requests (HMAC, so it is kept encrypted under the key-encryption key with
the system id as associated data, like a ``client_secret_jwt`` secret) and authenticates it
server to server (compared by digest in constant time).  The callback and the logout URIs
follow the redirect-URI rules (https, or http on loopback; no fragment, no userinfo).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from idp import audit
from idp.accounts.mandates import ENTITY_SCOPE
from idp.oauth.claims import SCOPE_CLAIMS
from idp.oauth.clients import ClientRegistrationError, validate_redirect_uri
from idp.storage.models import Client
from idp.storage.repo import digest, new_secret
from keys.crypto import Kek

#: The only "grant type" of a bridge system: no OAuth endpoint accepts it, so a system's
#: credentials work at ``/bridge/v1`` only (and an OIDC client's never work there).
BRIDGE_GRANT_TYPE = "urn:yitong:params:bridge:v1"
ID_PREFIX = "bridge-"
#: Claims a system may be allowed (the OpenID Connect claim names).
RELEASABLE = frozenset(c for claims in SCOPE_CLAIMS.values() for c in claims) - {"sub", "authority"}


class BridgeSystemError(ValueError):
    """Registration refused; the message says which value and why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class BridgeSystemSpec:
    """What an administrator registers (``yitong bridge systems add`` or the admin API)."""

    name: str
    callback: str
    attributes: list[str] = field(default_factory=list)
    backchannel_logout_uri: str | None = None
    frontchannel_logout_uri: str | None = None
    department_id: str | None = None


def _uri(value: str, what: str) -> str:
    try:
        return validate_redirect_uri(value, public=False, what=what)
    except ClientRegistrationError as exc:
        raise BridgeSystemError(exc.message) from None


def check_spec(spec: BridgeSystemSpec) -> BridgeSystemSpec:
    name = " ".join(spec.name.split())
    if not name or len(name) > 200 or not name.isprintable():
        raise BridgeSystemError("name must be 1 to 200 printable characters")
    unknown = sorted(set(spec.attributes) - RELEASABLE)
    if unknown:
        raise BridgeSystemError(
            f"unknown attribute(s) {', '.join(unknown)}; "
            f"releasable: {', '.join(sorted(RELEASABLE))}"
        )
    return BridgeSystemSpec(
        name=name,
        callback=_uri(spec.callback, "callback"),
        attributes=list(dict.fromkeys(spec.attributes)),
        backchannel_logout_uri=(
            _uri(spec.backchannel_logout_uri, "back-channel logout URI")
            if spec.backchannel_logout_uri
            else None
        ),
        frontchannel_logout_uri=(
            _uri(spec.frontchannel_logout_uri, "front-channel logout URI")
            if spec.frontchannel_logout_uri
            else None
        ),
        department_id=spec.department_id,
    )


def scopes_for(attributes: list[str]) -> list[str]:
    """The scopes whose claims cover ``attributes``, plus ``openid`` and ``entity`` (the
    company switch); the allow-list still filters within them."""
    wanted = {s for s, claims in SCOPE_CLAIMS.items() if set(claims) & set(attributes)}
    return ["openid", *sorted(wanted - {"openid", ENTITY_SCOPE}), ENTITY_SCOPE]


def create_system(
    session: Session, spec: BridgeSystemSpec, *, actor: str, kek: Kek, ip: str | None = None
) -> tuple[Client, str]:
    """Register a system; return it and its secret (shown once).  The caller commits."""
    spec = check_spec(spec)
    system_id = ID_PREFIX + secrets.token_hex(8)
    secret = new_secret(32)
    row = Client(
        client_id=system_id,
        name=spec.name,
        secret_digest=digest(secret),
        secret_ciphertext=kek.encrypt(secret.encode(), aad=system_id.encode()),
        public=False,
        redirect_uris=[spec.callback],
        post_logout_redirect_uris=[],
        scopes=scopes_for(spec.attributes),
        grant_types=[BRIDGE_GRANT_TYPE],
        response_types=[],
        token_endpoint_auth_method="client_secret_basic",
        backchannel_logout_uri=spec.backchannel_logout_uri,
        frontchannel_logout_uri=spec.frontchannel_logout_uri,
        allowed_claims=list(spec.attributes),
        department_id=spec.department_id,
        status="approved",
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        "bridge.system.create",
        actor=actor,
        target=system_id,
        ip=ip,
        details={"name": spec.name, "callback": spec.callback, "attributes": spec.attributes},
    )
    return row, secret


def is_system(row: Client | None) -> bool:
    return row is not None and list(row.grant_types) == [BRIDGE_GRANT_TYPE]


def list_systems(session: Session) -> list[Client]:
    rows = session.scalars(
        select(Client).where(Client.client_id.startswith(ID_PREFIX)).order_by(Client.created_at)
    )
    return [r for r in rows if is_system(r)]


def system_summary(row: Client) -> dict[str, Any]:
    """What admins see of a system (never the secret or its digest)."""
    return {
        "system_id": row.client_id,
        "name": row.name,
        "callback": row.redirect_uris[0] if row.redirect_uris else None,
        "attributes": list(row.allowed_claims or []),
        "backchannel_logout_uri": row.backchannel_logout_uri,
        "frontchannel_logout_uri": row.frontchannel_logout_uri,
        "status": row.status,
        "protocol": "yitong-bridge/1",
    }


def system_secret(row: Client, kek: Kek) -> bytes:
    """The shared secret that keys the system's request signatures."""
    assert row.secret_ciphertext is not None
    return kek.decrypt(row.secret_ciphertext, aad=row.client_id.encode())

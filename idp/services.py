"""The typed services of one instance: what the app, the CLI and the benchmarks use.

:func:`idp.app.build_services` (the one composition root) fills a frozen :class:`Services`
from one :class:`~idp.config.Settings`; nothing is looked up by string and nothing is
installed later by a blueprint (issue 9).  This module only declares the type, so that
:mod:`idp.context` and the services themselves can name it without importing the app.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from adapters.base import BusinessLicenceVerifier, EnterpriseRegistry, IdentityVerifier
from idp.accounts.directories import DirectoryRegistry
from idp.accounts.privacy import IdentityVault
from idp.config import Settings
from idp.interaction.devices import KnownDevices
from idp.interaction.flow import InteractionSealer
from idp.interaction.password_rules import PolicyPasswords
from idp.interaction.policies import PolicyStore
from idp.interaction.ratelimit import RateLimiter
from idp.interaction.throttle import LoginGate
from idp.oauth.client_cache import ClientSnapshot
from idp.oauth.logout import LogoutDispatcher
from idp.oauth.tokens import TokenIssuer
from idp.oauth.upstream import UpstreamOIDC
from idp.storage.db import Database
from idp.storage.hot import RedisStore
from keys.crypto import KekRing
from keys.store import ManagedKeyStore


@dataclass(frozen=True, eq=False)
class Services:
    """Everything a request handler, a CLI command or a background job may use."""

    settings: Settings
    db: Database
    kek: KekRing
    keys: ManagedKeyStore
    passwords: PolicyPasswords  # hashing with the rules of the current password policy
    vault: IdentityVault  # encrypted identity numbers, found by keyed hash
    tokens: TokenIssuer
    secret_key: str  # signs cookies and interaction tokens; never leaves the process
    pairwise_secret: bytes  # pairwise subject identifiers (OIDC Core §8.1)
    code_secret: bytes  # keys the digests of recovery and SMS codes
    sealer: InteractionSealer  # the ``ix`` token carrying an authorization request
    policies: PolicyStore
    login_gate: LoginGate  # lockout and per-address throttling of password checks
    devices: KnownDevices
    rate_limiter: RateLimiter  # per-address request limits (Redis, or per worker)
    sms_sender: Any | None  # an adapters.sms sender; None in production without a gateway
    directories: DirectoryRegistry  # department directories by id
    clients: ClientSnapshot  # the client table, cached per worker
    logout: LogoutDispatcher  # back-channel logout delivery
    # The population registry (issue 10); None in production without a configured service.
    identity_verifier: IdentityVerifier | None = None
    enterprises: EnterpriseRegistry | None = None  # the enterprise registry (issue 10)
    # The electronic business licence service (L5 for companies); None without one.
    licences: BusinessLicenceVerifier | None = None
    mail_sender: Any | None = None  # an adapters.mail sender; None in production without SMTP
    # Redis for replay markers, pushed requests and attempt counters (issue 12); None: the
    # database keeps them (the embedded default).
    hot: RedisStore | None = None
    # The upstream OpenID Connect provider (issue 13 item 3); None when not configured.
    upstream: UpstreamOIDC | None = None

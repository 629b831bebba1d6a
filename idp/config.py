"""Settings: one typed, frozen object, and the only code that reads the environment.

Precedence (lowest first): the defaults declared below <- an optional TOML file named by
``YITONG_CONFIG`` <- ``YITONG_<FIELD>`` environment variables.  Every field carries its
documentation in ``metadata["doc"]``; ``docs/configuration.md`` is generated from it
(``yitong config docs``) and a test checks that the two agree.

Secure by default, loud when a default must change (cf. node-oidc-provider ``mustChange``):
in production the settings refuse to load without a secret key, with an ``http://`` issuer,
or without a key-encryption key, and say exactly why.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal


class ConfigError(Exception):
    """The configuration cannot be used; the message says what to change."""


def _doc(text: str) -> dict[str, str]:
    return {"doc": text}


@dataclass(frozen=True)
class Settings:
    """Every setting Yitong reads, with its default.  Construct with :func:`load_settings`."""

    env: Literal["development", "production", "testing"] = field(
        default="development",
        metadata=_doc(
            "`development`, `production` or `testing`. Production refuses unsafe values."
        ),
    )
    issuer: str = field(
        default="http://127.0.0.1:5000",
        metadata=_doc("The issuer URL; every endpoint URL is derived from it (never from Host)."),
    )
    instance_dir: str = field(
        default="./instance", metadata=_doc("Directory for the SQLite file and generated secrets.")
    )
    database_url: str = field(
        default="",
        metadata=_doc(
            "SQLAlchemy URL (`postgresql+psycopg://…` or `sqlite:///…`); "
            "default: `sqlite:///<instance_dir>/yitong.db`."
        ),
    )
    secret_key: str = field(
        default="",
        metadata=_doc(
            "Secret for CSRF tokens and identity-number lookup hashes. Generated into the instance "
            "directory in development; required in production."
        ),
    )
    key_encryption_key: str = field(
        default="",
        metadata=_doc(
            "Base64url 256-bit key that encrypts private signing keys, TOTP secrets and identity "
            "numbers at rest (or `key_encryption_key_file`). Generated in development."
        ),
    )
    key_encryption_key_file: str = field(
        default="",
        metadata=_doc("File holding the key-encryption key (alternative to the variable)."),
    )
    previous_key_encryption_key_files: tuple[str, ...] = field(
        default=(),
        metadata=_doc(
            "Comma-separated files of earlier key-encryption keys: data sealed with them stays "
            "readable until `yitong keys rewrap` moves it to the current key."
        ),
    )
    key_store: Literal["sql", "pkcs11"] = field(
        default="sql",
        metadata=_doc(
            "Where signing keys live: `sql` (encrypted in the database) or `pkcs11` (HSM)."
        ),
    )
    pkcs11_module: str = field(
        default="", metadata=_doc("PKCS#11 library path (for example SoftHSM2's libsofthsm2.so).")
    )
    pkcs11_token_label: str = field(
        default="", metadata=_doc("Label of the HSM token holding the keys.")
    )
    pkcs11_pin_file: str = field(default="", metadata=_doc("File holding the HSM user PIN."))
    redis_url: str = field(
        default="",
        metadata=_doc(
            "Redis URL (`redis://host:6379/0`) for rate limits, lockout counters, replay caches "
            "and pushed requests, shared by every node; empty: the database keeps them. "
            "Redis down: those checks fail closed (503), see docs/deployment.md."
        ),
    )
    metrics_token: str = field(
        default="",
        metadata=_doc(
            "Bearer token the Prometheus scraper must send to `/metrics`; empty: open (keep "
            "`/metrics` off the public proxy then, see docs/deployment.md)."
        ),
    )
    log_format: Literal["text", "json"] = field(
        default="text",
        metadata=_doc(
            "`json`: one JSON object per log line on stderr (time, level, logger, message, "
            "request id), for log shippers; `text`: Python's default."
        ),
    )
    default_locale: str = field(default="zh_CN", metadata=_doc("Page language: `zh_CN` or `en`."))
    session_idle_timeout: int = field(
        default=1800, metadata=_doc("Seconds of inactivity after which the SSO session ends.")
    )
    session_absolute_timeout: int = field(
        default=43200, metadata=_doc("Seconds after login after which the SSO session ends.")
    )
    authorization_code_lifetime: int = field(
        default=60, metadata=_doc("Seconds an authorization code stays redeemable (max 60).")
    )
    cas_ticket_lifetime: int = field(
        default=10,
        metadata=_doc(
            "Seconds a CAS service ticket (`ST-…`) stays valid; the service validates it at "
            "once (CAS 3.0 §3.1.1 recommends at most 5 minutes; 10 s is plenty server to server)."
        ),
    )
    bridge_ticket_lifetime: int = field(
        default=30,
        metadata=_doc(
            "Seconds a ticket-bridge ticket (`BT-…`) stays exchangeable; the legacy system "
            "exchanges it server to server at once (docs/integrating.md, ticket bridge)."
        ),
    )
    bridge_request_max_skew: int = field(
        default=300,
        metadata=_doc(
            "Seconds a signed ticket-bridge request's timestamp may differ from our clock; "
            "its nonce is remembered this long (twice) so a replay inside the window fails."
        ),
    )
    access_token_lifetime: int = field(default=600, metadata=_doc("Access-token lifetime (s)."))
    id_token_lifetime: int = field(default=600, metadata=_doc("ID-token lifetime (s)."))
    refresh_token_idle_lifetime: int = field(
        default=1209600, metadata=_doc("A refresh token unused this long (s) expires.")
    )
    refresh_token_absolute_lifetime: int = field(
        default=2592000, metadata=_doc("No refresh token lives longer than this after login (s).")
    )
    consent_lifetime: int = field(
        default=15552000, metadata=_doc("Remembered consent lasts this long (s).")
    )
    argon2_memory_kib: int = field(default=19456, metadata=_doc("argon2id memory cost (KiB)."))
    argon2_time_cost: int = field(default=2, metadata=_doc("argon2id iterations."))
    argon2_parallelism: int = field(default=1, metadata=_doc("argon2id lanes."))
    rate_limit_login_per_minute: int = field(
        default=30, metadata=_doc("Login and registration POSTs per client IP per minute.")
    )
    rate_limit_token_per_minute: int = field(
        default=600, metadata=_doc("Token-endpoint (and PAR) requests per client IP per minute.")
    )
    rate_limit_authorize_per_minute: int = field(
        default=300, metadata=_doc("Authorization-endpoint requests per client IP per minute.")
    )
    rate_limit_qr_per_minute: int = field(
        default=30,
        metadata=_doc(
            "QR-login codes shown, and device authorizations started, per client IP per minute."
        ),
    )
    qr_login_lifetime: int = field(
        default=120,
        metadata=_doc("Seconds a QR-login code waits for the app's decision."),
    )
    device_code_lifetime: int = field(
        default=600,
        metadata=_doc(
            "Seconds an RFC 8628 device code and its user code wait for the person's decision "
            "at `/device` (`expires_in`; typing a code on a phone takes longer than a scan)."
        ),
    )
    device_code_attempts_per_minute: int = field(
        default=10,
        metadata=_doc(
            "User codes a person (and, ten times as many, a client IP) may submit at `/device` "
            "per minute: the guard against guessing a code shown on someone else's screen."
        ),
    )
    qr_login_scope: str = field(
        default="qr_login",
        metadata=_doc(
            "The scope an access token must carry to approve a QR login: register it only "
            "for the government app."
        ),
    )
    qr_login_networks: tuple[str, ...] = field(
        default=(),
        metadata=_doc(
            "`CIDR=name` entries naming networks on the QR-login approval screen "
            "(e.g. `10.0.0.0/8=省政务外网`); other addresses show their /24 (IPv6: /48)."
        ),
    )
    dpop_proof_max_age: int = field(
        default=120,
        metadata=_doc("How old (by `iat`, s) a DPoP proof may be; 60 s ahead are tolerated."),
    )
    dpop_nonce_required: bool = field(
        default=True,
        metadata=_doc(
            "Require a server `nonce` in DPoP proofs (RFC 9449 §8, §9); sent as `DPoP-Nonce`."
        ),
    )
    rate_limit_registration_per_minute: int = field(
        default=20,
        metadata=_doc("Dynamic client registrations (RFC 7591 POSTs) per client IP per minute."),
    )
    trusted_proxies: int = field(
        default=0, metadata=_doc("Number of reverse proxies whose X-Forwarded-For is trusted.")
    )
    signing_algorithms: tuple[str, ...] = field(
        default=("RS256", "ES256"),
        metadata=_doc("Algorithms for which an active signing key is kept."),
    )
    key_rotation_days: int = field(
        default=90, metadata=_doc("Days between automatic rotations of each signing key.")
    )
    jwks_cache_seconds: int = field(
        default=3600, metadata=_doc("`Cache-Control: max-age` of the JWKS and discovery documents.")
    )
    outbound_test_allowlist: tuple[str, ...] = field(
        default=(),
        metadata=_doc(
            "Testing only: `host:port` pairs that outbound fetches (`jwks_uri`) may reach over "
            "plain http and on private or loopback addresses. Refused unless env is `testing`."
        ),
    )
    jwt_access_token_resources: tuple[str, ...] = field(
        default=(),
        metadata=_doc(
            "Resource indicators (RFC 8707, comma-separated) whose access tokens are RFC 9068 "
            "JWTs whatever the client's format: APIs that validate tokens themselves."
        ),
    )
    outbound_private_hosts: tuple[str, ...] = field(
        default=(),
        metadata=_doc(
            "Intranet hosts (`host` or `host:port`, comma-separated) that back-channel logout "
            "and client-metadata fetches may reach on private addresses; https is still required."
        ),
    )
    sms_gateway_url: str = field(
        default="",
        metadata=_doc(
            "HTTP(S) URL of the SMS gateway that delivers one-time codes (JSON POST). Empty: "
            "development and testing keep messages in the outbox table; production offers no SMS."
        ),
    )
    sms_gateway_username: str = field(
        default="", metadata=_doc("HTTP Basic user name for the SMS gateway.")
    )
    sms_gateway_password: str = field(
        default="", metadata=_doc("HTTP Basic password for the SMS gateway.")
    )
    sms_gateway_api_key: str = field(
        default="", metadata=_doc("Bearer API key for the SMS gateway (instead of Basic).")
    )
    sms_sender: str = field(default="", metadata=_doc("Sender name or number sent to the gateway."))
    sms_connect_timeout_ms: int = field(
        default=3000, metadata=_doc("Milliseconds to wait for a connection to the SMS gateway.")
    )
    sms_read_timeout_ms: int = field(
        default=5000, metadata=_doc("Milliseconds to wait for the SMS gateway's answer.")
    )
    mail_smtp_host: str = field(
        default="",
        metadata=_doc(
            "SMTP submission server for e-mail (password-reset links). Empty: development and "
            "testing keep messages in the outbox table; production offers no e-mail."
        ),
    )
    mail_smtp_port: int = field(
        default=587,
        metadata=_doc("SMTP port: 465 for implicit TLS, otherwise STARTTLS (always required)."),
    )
    mail_smtp_username: str = field(default="", metadata=_doc("SMTP user name (if any)."))
    mail_smtp_password: str = field(default="", metadata=_doc("SMTP password."))
    mail_from: str = field(
        default="", metadata=_doc("Sender address of Yitong's e-mail, e.g. `noreply@gov.example`.")
    )
    enterprise_registry_file: str = field(
        default="",
        metadata=_doc(
            "JSON records of the enterprise registry (credit code, name, representative's ID "
            "number, status) that company registration is checked against, when no "
            "`enterprise_registry_url` is set. Empty: development and testing use the bundled "
            "synthetic records; production registers no company."
        ),
    )
    enterprise_registry_url: str = field(
        default="",
        metadata=_doc(
            "HTTPS URL of the enterprise-registry service that company registration and "
            "re-verification ask (docs/identity-assurance.md); set, it replaces "
            "`enterprise_registry_file`. Empty: the local records."
        ),
    )
    enterprise_registry_client_cert: str = field(
        default="",
        metadata=_doc("PEM file: the client certificate presented to the enterprise registry."),
    )
    enterprise_registry_client_key: str = field(
        default="", metadata=_doc("PEM file: the private key of that certificate (if separate).")
    )
    enterprise_registry_ca_file: str = field(
        default="",
        metadata=_doc("PEM file: the enterprise registry's CA (default: the system trust store)."),
    )
    enterprise_registry_connect_timeout_ms: int = field(
        default=3000,
        metadata=_doc("Milliseconds to wait for a connection to the enterprise registry."),
    )
    enterprise_registry_read_timeout_ms: int = field(
        default=5000, metadata=_doc("Milliseconds to wait for the enterprise registry's answer.")
    )
    entity_verification_valid_days: int = field(
        default=365,
        metadata=_doc(
            "Days a company's verification (L3 enterprise-registry match, L5 electronic "
            "business licence) counts; after that the company has no level until it is "
            "verified again (docs/identity-assurance.md)."
        ),
    )
    mandate_roles: tuple[str, ...] = field(
        default=("agent", "finance", "social-security", "company-admin"),
        metadata=_doc(
            "Roles a company may give its agents (comma-separated); `company-admin` may also "
            "grant and end mandates."
        ),
    )
    identity_registry_url: str = field(
        default="",
        metadata=_doc(
            "HTTPS URL of the population-registry service that `yitong verify --method "
            "registry` and `face` ask (docs/identity-assurance.md). Empty: the local dataset."
        ),
    )
    identity_registry_client_cert: str = field(
        default="", metadata=_doc("PEM file: the client certificate presented to the registry.")
    )
    identity_registry_client_key: str = field(
        default="", metadata=_doc("PEM file: the private key of that certificate (if separate).")
    )
    identity_registry_ca_file: str = field(
        default="", metadata=_doc("PEM file: the registry's CA (default: the system trust store).")
    )
    identity_registry_connect_timeout_ms: int = field(
        default=3000, metadata=_doc("Milliseconds to wait for a connection to the registry.")
    )
    identity_registry_read_timeout_ms: int = field(
        default=5000, metadata=_doc("Milliseconds to wait for the registry's answer.")
    )
    identity_registry_dataset: str = field(
        default="",
        metadata=_doc(
            "JSON file of synthetic registry records for development and tests; empty outside "
            "production: the bundled synthetic dataset. Never real personal data."
        ),
    )
    upstream_issuer: str = field(
        default="",
        metadata=_doc(
            "Issuer URL of the upstream OpenID Connect provider (the national government "
            "service platform); empty: no upstream login. Its discovery document is fetched "
            "through the SSRF guard (https; `outbound_private_hosts` for intranet hosts)."
        ),
    )
    upstream_client_id: str = field(
        default="", metadata=_doc("Our client id at the upstream provider.")
    )
    upstream_client_secret: str = field(
        default="",
        metadata=_doc("Our client secret at the upstream provider (`client_secret_basic`)."),
    )
    upstream_scopes: tuple[str, ...] = field(
        default=("openid", "profile"),
        metadata=_doc("Scopes asked of the upstream provider (comma-separated; `openid` first)."),
    )
    upstream_claim_mapping: tuple[str, ...] = field(
        default=(
            "id_number=verified_claims.claims.resident_id_number",
            "name=verified_claims.claims.name",
            "identity_level=verified_claims.verification.assurance_level",
        ),
        metadata=_doc(
            "`ours=path` pairs (comma-separated): where in the upstream ID token each value is "
            "found (dotted path). `id_number` is required: accounts are linked by it, and "
            "only when it is inside `verified_claims`; `name` and `identity_level` are optional."
        ),
    )
    upstream_acr_mapping: tuple[str, ...] = field(
        default=(
            "urn:yitong:acr:pwd=urn:yitong:acr:pwd",
            "urn:yitong:acr:mfa=urn:yitong:acr:mfa",
            "urn:yitong:acr:phr=urn:yitong:acr:phr",
        ),
        metadata=_doc(
            "`upstream acr=our acr` pairs (comma-separated). An upstream login gets the level "
            "its asserted `acr` maps to, never more; an unmapped or absent `acr` gets the "
            "lowest level (password)."
        ),
    )
    upstream_min_identity_level: str = field(
        default="L3",
        metadata=_doc(
            "The identity assurance level (`verified_claims` `assurance_level`, L3..L5) the "
            "upstream must assert for its identity number to link an account."
        ),
    )
    directories: Mapping[str, Mapping[str, Any]] = field(
        default_factory=dict,
        metadata=_doc(
            "Department LDAP directories, `[directories.<id>]` tables; see docs/directories.md."
        ),
    )

    # ---- derived values ---------------------------------------------------------------
    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{Path(self.instance_dir).resolve() / 'yitong.db'}"

    def endpoint(self, path: str) -> str:
        """An absolute URL on the issuer (the issuer is fixed, so Host headers cannot poison it)."""
        return self.issuer.rstrip("/") + path


ENV_PREFIX = "YITONG_"


def _coerce(name: str, raw: Any, annotation: Any) -> Any:
    """Convert a TOML or environment value to the field's declared type, or say why not."""
    origin = typing.get_origin(annotation)
    if annotation is int:
        if isinstance(raw, bool):
            raise ConfigError(f"{name}: expected a whole number, got {raw!r}")
        try:
            return int(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"{name}: expected a whole number, got {raw!r}") from None
    if annotation is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in {"1", "true", "yes", "on"}:
            return True
        if text in {"0", "false", "no", "off"}:
            return False
        raise ConfigError(f"{name}: expected true or false, got {raw!r}")
    if annotation is str:
        if not isinstance(raw, str):
            raise ConfigError(f"{name}: expected text, got {raw!r}")
        return raw
    if origin is Literal:
        allowed = typing.get_args(annotation)
        if raw not in allowed:
            raise ConfigError(f"{name}: must be one of {', '.join(allowed)}; got {raw!r}")
        return raw
    if origin is tuple:
        items = raw.split(",") if isinstance(raw, str) else list(raw)
        return tuple(str(i).strip() for i in items if str(i).strip())
    if origin in (Mapping, dict) or annotation is Mapping:
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{name}: expected a table")
        return types.MappingProxyType({k: dict(v) for k, v in raw.items()})
    return raw


def _field_types() -> dict[str, Any]:
    hints = typing.get_type_hints(Settings)
    return {f.name: hints[f.name] for f in dataclasses.fields(Settings)}


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Build :class:`Settings` from defaults, the TOML file and the environment, then check it.

    ``overrides`` (used by tests and the CLI) win over everything else.
    """
    environ = os.environ if environ is None else environ
    types_ = _field_types()
    values: dict[str, Any] = {}

    config_path = overrides.pop("config_file", None) or environ.get(ENV_PREFIX + "CONFIG")
    if config_path:
        try:
            with open(config_path, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"YITONG_CONFIG: no such file: {config_path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"YITONG_CONFIG: {config_path} is not valid TOML: {exc}") from None
        for key, raw in data.items():
            if key not in types_:
                raise ConfigError(f"{config_path}: unknown setting {key!r}")
            values[key] = _coerce(key, raw, types_[key])

    for name, annotation in types_.items():
        env_name = ENV_PREFIX + name.upper()
        if env_name in environ and name != "directories":
            values[name] = _coerce(env_name, environ[env_name], annotation)

    for key, raw in overrides.items():
        if key not in types_:
            raise ConfigError(f"unknown setting {key!r}")
        values[key] = _coerce(key, raw, types_[key])

    settings = Settings(**values)
    check_settings(settings)
    return settings


def check_settings(settings: Settings) -> None:
    """Refuse settings that are unsafe or nonsensical, naming the setting and the fix."""
    problems: list[str] = []
    if not settings.issuer.startswith(("http://", "https://")):
        problems.append("YITONG_ISSUER must be an absolute http(s) URL")
    if settings.issuer.endswith("/") or "?" in settings.issuer or "#" in settings.issuer:
        problems.append("YITONG_ISSUER must not end with '/' or carry a query or fragment")
    if settings.authorization_code_lifetime > 60 or settings.authorization_code_lifetime < 1:
        problems.append("YITONG_AUTHORIZATION_CODE_LIFETIME must be between 1 and 60 seconds")
    if not 60 <= settings.device_code_lifetime <= 1800:
        # RFC 8628 §5.2: a short life limits remote phishing with a relayed user code.
        problems.append("YITONG_DEVICE_CODE_LIFETIME must be between 60 and 1800 seconds")
    if settings.device_code_attempts_per_minute < 1:
        problems.append("YITONG_DEVICE_CODE_ATTEMPTS_PER_MINUTE must be at least 1")
    if not 1 <= settings.bridge_ticket_lifetime <= 300:
        problems.append("YITONG_BRIDGE_TICKET_LIFETIME must be between 1 and 300 seconds")
    if not 30 <= settings.bridge_request_max_skew <= 900:
        problems.append("YITONG_BRIDGE_REQUEST_MAX_SKEW must be between 30 and 900 seconds")
    if settings.upstream_issuer:
        if not (settings.upstream_client_id and settings.upstream_client_secret):
            problems.append(
                "YITONG_UPSTREAM_ISSUER needs YITONG_UPSTREAM_CLIENT_ID and "
                "YITONG_UPSTREAM_CLIENT_SECRET"
            )
        if settings.is_production and not settings.upstream_issuer.startswith("https://"):
            problems.append("YITONG_UPSTREAM_ISSUER must be an https:// URL in production")
        if settings.upstream_min_identity_level not in ("L3", "L4", "L5"):
            problems.append("YITONG_UPSTREAM_MIN_IDENTITY_LEVEL must be L3, L4 or L5")
        if not any(p.startswith("id_number=") for p in settings.upstream_claim_mapping):
            problems.append("YITONG_UPSTREAM_CLAIM_MAPPING must map id_number")
    if settings.default_locale not in {"zh_CN", "en"}:
        problems.append("YITONG_DEFAULT_LOCALE must be zh_CN or en")
    if settings.outbound_test_allowlist and settings.env != "testing":
        problems.append("YITONG_OUTBOUND_TEST_ALLOWLIST is for tests only (env must be testing)")
    if settings.is_production:
        if not settings.secret_key:
            problems.append("production needs YITONG_SECRET_KEY (at least 32 random characters)")
        elif len(settings.secret_key) < 32:
            problems.append("YITONG_SECRET_KEY must be at least 32 characters")
        if settings.issuer.startswith("http://"):
            problems.append("production needs an https:// YITONG_ISSUER")
        if not (settings.key_encryption_key or settings.key_encryption_key_file):
            problems.append(
                "production needs YITONG_KEY_ENCRYPTION_KEY or YITONG_KEY_ENCRYPTION_KEY_FILE "
                "(generated development keys are refused)"
            )
    if problems:
        raise ConfigError("; ".join(problems))


def settings_reference() -> str:
    """Markdown table of every setting, its variable, default and meaning."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for f in dataclasses.fields(Settings):
        default: Any = f.default if f.default is not dataclasses.MISSING else "{}"
        if isinstance(default, tuple):
            default = ",".join(default)
        lines.append(
            f"| `{ENV_PREFIX}{f.name.upper()}` | `{default}` | {f.metadata.get('doc', '')} |"
        )
    return "\n".join(lines) + "\n"

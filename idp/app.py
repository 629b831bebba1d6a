"""The one composition root: :func:`build_services` and :func:`create_app`.

Everything the protocol layer needs from outside (key store, directories, message senders,
secrets) is chosen here and handed over as the typed fields of :class:`idp.services.Services`;
no module keeps a global server or reads the environment (ARCHITECTURE.md, examples 1 and 7).
Blueprints are registered here and nowhere else; so are the app-wide guards.
"""

from __future__ import annotations

import hashlib
import hmac
import inspect as pyinspect
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask, Request, Response, g, request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface, SessionMixin
from flask_babel import Babel, get_locale
from flask_babel import gettext as _
from flask_wtf.csrf import CSRFError, CSRFProtect
from sqlalchemy import inspect
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.middleware.proxy_fix import ProxyFix

from adapters.base import AdapterConfigError, BusinessLicenceVerifier, EnterpriseRegistry
from adapters.enterprise import (
    FakeLicenceVerifier,
    HttpEnterpriseRegistry,
    LocalEnterpriseRegistry,
)
from admin.api import register as register_admin_api
from admin.api_identity import register as register_admin_identity
from admin.api_ops import register as register_admin_ops
from admin.console import register as register_console
from idp import context, metrics, observability
from idp.accounts.assurance import build_identity_verifier
from idp.accounts.directories import DirectoryRegistry
from idp.accounts.privacy import IdentityVault
from idp.blueprints import (
    account,
    bridge,
    cas,
    device,
    entities,
    federation,
    guards,
    login,
    logout,
    oidc,
    qr,
    recovery,
    registration,
    rights,
    second_factor,
    security,
    sms_login,
)
from idp.blueprints.responses import error_page, json_error
from idp.config import ConfigError, Settings, load_settings
from idp.errors import (
    InvalidRequestError,
    ServerError,
    StateStoreUnavailable,
    TemporarilyUnavailableError,
)
from idp.instance import hsm_pin, key_encryption_key, previous_keks, secret_key
from idp.interaction.devices import KnownDevices
from idp.interaction.flow import InteractionExpired, InteractionSealer
from idp.interaction.outbox import build_mail_sender, build_sms_sender
from idp.interaction.password_rules import PolicyPasswords
from idp.interaction.policies import PolicyStore
from idp.interaction.ratelimit import RateLimiter
from idp.interaction.redis_counters import RedisCounters
from idp.interaction.throttle import AttemptCounters, Counters, LoginGate
from idp.interaction.web import open_interaction
from idp.logging_setup import configure_logging, install_redaction
from idp.oauth.client_cache import ClientSnapshot
from idp.oauth.discovery import discovery_document
from idp.oauth.logout import LogoutDispatcher
from idp.oauth.server import build_authorization_server
from idp.oauth.tokens import TokenIssuer
from idp.oauth.upstream import UpstreamConfig, UpstreamOIDC
from idp.published import PublishedDocuments
from idp.request_guards import install_request_guards
from idp.services import Services
from idp.storage.db import Database, is_outage
from idp.storage.hot import RedisStore
from keys.crypto import Kek, KekRing
from keys.sql import SqlKeyStore
from keys.store import KeyStoreError, ManagedKeyStore

log = logging.getLogger(__name__)

API_PREFIXES = (
    "/token",
    "/userinfo",
    "/jwks",
    "/.well-known",
    "/introspect",
    "/revoke",
    "/par",
    "/admin/api",
    "/connect/register",
    "/bridge/v1/token",
    "/bridge/v1/userinfo",
)


def derive(secret: str, purpose: bytes) -> bytes:
    """A purpose-bound key derived from the instance secret (HMAC-SHA-256)."""
    return hmac.new(secret.encode(), purpose, hashlib.sha256).digest()


def build_services(settings: Settings) -> Services:
    """Build every service from ``settings`` (no Flask app needed)."""
    db = Database(settings.resolved_database_url)
    current_kek = key_encryption_key(settings)
    kek = KekRing.of(current_kek, previous_keks(settings))
    secret = secret_key(settings)
    keystore = _build_key_store(settings, db, current_kek, previous_keks(settings))
    pairwise_secret = derive(secret, b"pairwise-subject")
    policies = PolicyStore(db)
    devices = KnownDevices(secret, secure=settings.issuer.startswith("https://"))
    namespace = hashlib.sha256(secret.encode() + settings.issuer.encode()).hexdigest()[:12]
    try:
        directories = DirectoryRegistry(settings.directories, db, kek)
    except AdapterConfigError as exc:
        raise ConfigError(str(exc)) from None
    vault = IdentityVault(kek, derive(secret, b"identity-lookup"))
    hot = RedisStore(settings.redis_url, namespace=f"yt{namespace}") if settings.redis_url else None
    counters: AttemptCounters = RedisCounters(hot) if hot is not None else Counters(db)
    try:
        identity_verifier = build_identity_verifier(settings)
    except AdapterConfigError as exc:
        raise ConfigError(str(exc)) from None
    enterprises = _build_enterprise_registry(settings)
    return Services(
        settings=settings,
        db=db,
        kek=kek,
        keys=keystore,
        passwords=PolicyPasswords(
            policies,
            memory_kib=settings.argon2_memory_kib,
            time_cost=settings.argon2_time_cost,
            parallelism=settings.argon2_parallelism,
        ),
        vault=vault,
        tokens=TokenIssuer(settings, keystore, pairwise_secret, vault),
        secret_key=secret,
        pairwise_secret=pairwise_secret,
        code_secret=derive(secret, b"yitong-mfa-codes"),
        sealer=InteractionSealer(secret),
        policies=policies,
        login_gate=LoginGate(counters, policies, devices.device_for),
        devices=devices,
        rate_limiter=RateLimiter(hot, namespace=f"yt{namespace}"),
        sms_sender=build_sms_sender(settings, db),
        directories=directories,
        clients=ClientSnapshot(db),
        logout=LogoutDispatcher.from_settings(settings, db),
        identity_verifier=identity_verifier,
        enterprises=enterprises,
        licences=_build_licence_verifier(settings, enterprises),
        mail_sender=build_mail_sender(settings, db),
        hot=hot,
        upstream=_build_upstream(settings),
    )


def _build_upstream(settings: Settings) -> UpstreamOIDC | None:
    """The national platform as an upstream provider, when ``upstream_issuer`` is set."""
    config = UpstreamConfig.from_settings(settings)
    return UpstreamOIDC(config) if config is not None else None


#: Synthetic enterprise records for development and tests (issue 10).
SYNTHETIC_ENTERPRISES = Path(__file__).parent / "data" / "synthetic-enterprises.json"


def _build_enterprise_registry(settings: Settings) -> EnterpriseRegistry | None:
    """The registry service at ``enterprise_registry_url``, else the configured records
    file, else the synthetic one outside production, else none."""
    if settings.enterprise_registry_url:
        try:
            return HttpEnterpriseRegistry(
                url=settings.enterprise_registry_url.rstrip("/"),
                client_cert=settings.enterprise_registry_client_cert or None,
                client_key=settings.enterprise_registry_client_key or None,
                ca_file=settings.enterprise_registry_ca_file or None,
                connect_timeout=settings.enterprise_registry_connect_timeout_ms / 1000,
                read_timeout=settings.enterprise_registry_read_timeout_ms / 1000,
            )
        except AdapterConfigError as exc:
            raise ConfigError(str(exc)) from None
    path = settings.enterprise_registry_file
    if not path and settings.env in ("development", "testing"):
        path = str(SYNTHETIC_ENTERPRISES)
    if not path:
        return None
    try:
        return LocalEnterpriseRegistry.from_file(path)
    except AdapterConfigError as exc:
        raise ConfigError(str(exc)) from None


def _build_licence_verifier(
    settings: Settings, registry: EnterpriseRegistry | None
) -> BusinessLicenceVerifier | None:
    """The electronic business licence service: the fake one over the local registry in
    development and testing; none in production (L5 for companies is then refused) until a
    real service adapter is configured."""
    if settings.env in ("development", "testing") and isinstance(registry, LocalEnterpriseRegistry):
        return FakeLicenceVerifier(registry)
    return None


def _build_key_store(
    settings: Settings, db: Database, kek: Kek, older: tuple[Kek, ...]
) -> ManagedKeyStore:
    """The configured key store (issue 4): database (encrypted) or a PKCS#11 hardware module."""
    if settings.key_store == "pkcs11":
        from keys.pkcs11 import Pkcs11KeyStore  # optional dependency: the ``hsm`` extra

        if not (settings.pkcs11_module and settings.pkcs11_token_label):
            raise ConfigError(
                "key_store = pkcs11 needs YITONG_PKCS11_MODULE and YITONG_PKCS11_TOKEN_LABEL"
            )
        store: ManagedKeyStore = Pkcs11KeyStore.from_settings(
            settings,
            db,
            module=settings.pkcs11_module,
            token_label=settings.pkcs11_token_label,
            pin=hsm_pin(settings),
        )
        return store
    sql = SqlKeyStore.from_settings(settings, db, kek)
    sql.previous_keks = older
    return sql


def _check_keys(services: Services) -> None:
    """A wrong or missing KEK stops start-up here, not at the first token (issue 4 item 2).

    Before ``yitong init`` there is no schema and nothing to check.
    """
    if not inspect(services.db.engine).has_table("signing_keys"):
        return
    try:
        services.keys.check()
    except KeyStoreError as exc:
        raise ConfigError(f"signing keys: {exc}") from None


def _ui_locales() -> str:
    """``ui_locales`` of the request, or of the authorization request it continues (``ix``)."""
    if "ui_locales" in request.args:
        return request.args["ui_locales"]
    try:
        ix = request.values.get("ix")
    except RequestEntityTooLarge:
        return ""  # the 413 handler renders a page too; it must not fail on the same body
    if ix:
        try:
            opened = open_interaction(ix)
        except InteractionExpired:
            return ""
        return str((opened.multi.get("ui_locales") or [""])[0])
    return ""


def _select_locale() -> str:
    wanted = _ui_locales().replace("-", "_").split()
    for lang in wanted:
        if lang in ("zh_CN", "en"):
            return lang
        if lang.startswith("en"):
            return "en"
        if lang.startswith("zh"):
            return "zh_CN"
    cookie = request.cookies.get("yitong_lang")
    if cookie in ("zh_CN", "en"):
        return cookie
    return context.settings().default_locale


class _CookieSessions(SecureCookieSessionInterface):
    """Flask's cookie sessions, without the work for a request that sends no session cookie.

    API clients (token, introspection, userinfo) never send one: Flask would parse every
    ``Cookie`` header of the request and build an ``itsdangerous`` serializer to find none,
    and at the end read seven cookie settings to store nothing.
    """

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if "HTTP_COOKIE" not in request.environ or not request.cookies.get(
            self.get_cookie_name(app)
        ):
            return self.session_class()
        return super().open_session(app, request)

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        # Empty, unchanged and unread: Flask would store nothing, delete nothing and add no
        # ``Vary: Cookie``, after reading the seven cookie settings.
        if session or session.modified or session.accessed:
            super().save_session(app, session, response)


class _Request(Request):
    """Flask's request with the body limits (checklist 110) as constants of the class.

    Flask reads each limit from ``current_app.config`` through the context-local proxy
    whenever it is asked, four times for every form parsed; they never change here.
    """

    _max_content_length = 256 * 1024
    _max_form_memory_size = 256 * 1024
    _max_form_parts = 200


#: Python 3.12+ lets a plain function be marked a coroutine function (``inspect``).
_COROUTINE_MARK = "_is_coroutine_marker" if sys.version_info >= (3, 12) else None


class _Flask(Flask):
    """Flask with :class:`_Request` and a cheaper ``ensure_sync``.

    Flask asks ``inspect.iscoroutinefunction`` about every hook and view of every request
    (a dozen per request, nine Python calls each); a plain function's code flags answer the
    same question in one look.  Anything else (a ``functools.partial``, a coroutine function,
    one marked as such) still goes through Flask.
    """

    request_class = _Request

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        try:
            flags = func.__code__.co_flags  # a method's too (it reads its function's)
        except AttributeError:
            return super().ensure_sync(func)
        if flags & pyinspect.CO_COROUTINE or (_COROUTINE_MARK and hasattr(func, _COROUTINE_MARK)):
            return super().ensure_sync(func)
        return func


def create_app(settings: Settings | None = None, **overrides: Any) -> Flask:
    settings = settings or load_settings(**overrides)
    install_redaction()
    app = _Flask(__name__, instance_path=None)
    app.session_interface = _CookieSessions()
    # --- request guards (NUL parameters, untrusted JSON bodies): idp/request_guards.py ---
    install_request_guards(app)
    configure_logging(settings.log_format)
    services = build_services(settings)
    _check_keys(services)
    app.extensions["yitong"] = services
    observability.install(app, services)  # first hooks: the request id is set before any log
    secure = settings.issuer.startswith("https://")
    app.config.update(
        SECRET_KEY=services.secret_key,
        TESTING=settings.env == "testing",
        SESSION_COOKIE_NAME="__Host-yitong" if secure else "yitong",
        SESSION_COOKIE_SECURE=secure,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        WTF_CSRF_TIME_LIMIT=3600,
        WTF_CSRF_SSL_STRICT=secure,
        BABEL_DEFAULT_LOCALE=settings.default_locale,
        BABEL_TRANSLATION_DIRECTORIES="translations",
        PREFERRED_URL_SCHEME="https" if secure else "http",
    )
    if settings.trusted_proxies:
        # Only the last ``trusted_proxies`` hops of X-Forwarded-For are believed; everything
        # that reads the client's address reads ``remote_addr`` through context.client_ip().
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=settings.trusted_proxies, x_proto=0, x_host=0, x_port=0
        )
    csrf = CSRFProtect(app)
    Babel(app, locale_selector=_select_locale)
    app.jinja_env.globals["get_locale"] = get_locale
    # No flask-login: nothing read ``current_user`` or used ``login_required`` (the SSO
    # session is read by idp.interaction.web), and its hooks cost every request: an
    # after_request for a remember-me cookie never set, and a template context processor
    # that loaded the SSO session for every page drawn, the 503 page of a database outage
    # included, which then failed on the same outage and became a bare 500 (issue 12).
    for blueprint in (
        oidc.bp,
        login.bp,
        second_factor.bp,
        security.bp,
        account.bp,
        logout.bp,
        entities.bp,
        cas.bp,
        bridge.bp,
        federation.bp,
        recovery.bp,
        registration.bp,
        rights.bp,
        sms_login.bp,
        qr.bp,
        device.bp,
    ):
        app.register_blueprint(blueprint)
    csrf.exempt(oidc.bp)
    csrf.exempt(registration.bp)  # Bearer-authenticated JSON (RFC 7591/7592)
    csrf.exempt(bridge.bp)  # server-to-server POSTs authenticated by the system's secret
    csrf.exempt(federation.backchannel_logout)  # the upstream's logout token is its proof
    csrf.exempt(qr.app_decision)  # the app's token authenticates it, not a browser cookie
    csrf.exempt(logout.logout_post)  # checks our own token itself (RP-initiated logout)
    register_admin_api(app, csrf)
    register_admin_ops(app, csrf)
    register_admin_identity(app, csrf)
    register_console(app)
    guards.install(app)
    app.extensions["yitong.oauth"] = build_authorization_server(app)
    app.teardown_appcontext(context.close_db_session)
    _install_limits(app)
    _install_key_rotation(app, services)
    _install_headers(app, settings)
    _install_error_handlers(app)
    # Discovery and the JWKS as cached bytes, served in front of Flask (idp/published.py).
    published = PublishedDocuments(services, discovery_document(services))
    app.extensions["yitong.published"] = published
    app.wsgi_app = published.wrap(  # type: ignore[method-assign,assignment]
        app.wsgi_app, static_security_headers(settings)
    )
    return app


MAX_QUERY_BYTES = 16384


def _install_key_rotation(app: Flask, services: Services) -> None:
    """Rotate signing keys when due, before the request opens its database session.

    ``maybe_rotate`` costs well under a microsecond when nothing is due; when something is, one
    worker does it under a database lock and the others pick it up within the refresh bound.
    It runs before the request's own write transaction, which on SQLite it would otherwise
    wait for.
    """

    @app.before_request
    def rotate_when_due() -> None:
        try:
            services.keys.maybe_rotate()
        except Exception as exc:
            if not is_outage(exc):
                log.exception("scheduled key rotation failed; will retry")
                return
            log.warning("scheduled key rotation: database unavailable (%s)", type(exc).__name__)


def _install_limits(app: Flask) -> None:
    """Refuse oversized URLs before any work (checklist 110)."""

    @app.before_request
    def refuse_oversized_query() -> Any:
        if len(request.query_string) > MAX_QUERY_BYTES:
            if _wants_json():
                return json_error(InvalidRequestError("request URI too long"), status=414)
            return error_page(None, 414, None, detail="request URI too long")
        return None


def static_security_headers(settings: Settings) -> list[tuple[str, str]]:
    """The headers every answer carries (unless a view set its own)."""
    headers = [
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),
        ("Referrer-Policy", "no-referrer"),
        (
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            "frame-ancestors 'none'; base-uri 'none'; form-action 'self' http: https:",
        ),
    ]
    if settings.issuer.startswith("https://"):
        headers.append(("Strict-Transport-Security", "max-age=31536000; includeSubDomains"))
    return headers


#: Pages drawn for a person, who may be signed in: never stored (issue 14 item 10).
PERSONAL_PATHS = (
    "/login",
    "/consent",
    "/register",
    "/account",
    "/logout",
    "/authorize",
    "/entities",
)


def _install_headers(app: Flask, settings: Settings) -> None:
    static = static_security_headers(settings)

    # The two kinds of answer, each header list built once: any answer, and a page for a
    # person (``Cache-Control: no-store`` too).  One look at the names the response has
    # decides which to add; a header a view set itself (the form_post page's own CSP, a
    # view's own Cache-Control) is kept.
    def kind(headers: list[tuple[str, str]]) -> tuple[list[tuple[str, str]], frozenset[str]]:
        return headers, frozenset(name.lower() for name, _ in headers)

    kinds = {False: kind(static), True: kind([*static, ("Cache-Control", "no-store")])}

    @app.after_request
    def security_headers(resp: Response) -> Response:
        h = resp.headers
        headers, names = kinds[request.path.startswith(PERSONAL_PATHS) or g.get("sso") is not None]
        present = names.intersection([name.lower() for name, _ in h])
        for name, value in headers:
            if not present or name.lower() not in present:
                h.add(name, value)  # ``add``: Werkzeug's ``extend`` costs more per header
        return resp


def _wants_json() -> bool:
    return request.path.startswith(API_PREFIXES)


def _install_error_handlers(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def csrf_error(exc: CSRFError) -> Any:
        return error_page(None, 400, "csrf", detail=exc.description)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        code = exc.code or 500
        if _wants_json():
            headers = {}
            if code == 405 and exc.get_response().headers.get("Allow"):
                headers["Allow"] = exc.get_response().headers["Allow"]
            error = ServerError(exc.name) if code >= 500 else InvalidRequestError(exc.name)
            return json_error(error, status=code, headers=headers)
        return error_page(None, code, None, detail=exc.name)

    # Database outages reach this through ``unexpected`` (``is_outage`` knows every form).
    @app.errorhandler(StateStoreUnavailable)
    def dependency_down(exc: Exception) -> Any:
        # Redis or the database did not answer (checklist 114, 117; issue 12): a clean 503,
        # never a 500 and never a request let through unchecked.
        log.warning("refused %s %s: %s", request.method, request.path, type(exc).__name__)
        metrics.DEPENDENCY_ERRORS.inc()
        context.close_db_session()
        headers = {"Retry-After": "5"}
        if _wants_json():
            error = TemporarilyUnavailableError("the service is temporarily unavailable")
            return json_error(error, status=503, headers=headers)
        page = error_page(
            _("The service is temporarily unavailable. Try again in a moment."),
            503,
            "temporarily_unavailable",
        )
        page.headers.update(headers)
        return page

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Any:
        if is_outage(exc):
            return dependency_down(exc)
        log.exception(
            "unhandled error on %s %s [request %s]",
            request.method,
            request.path,
            context.request_id(),
        )
        context.close_db_session()
        if _wants_json():
            return json_error(ServerError("an unexpected error occurred"), status=500)
        return error_page(None, 500, "server_error")

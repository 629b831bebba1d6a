"""A small OpenID Connect relying party (Authlib's Flask client), shared by the demo apps.

Specs: OpenID Connect Core 1.0 (https://openid.net/specs/openid-connect-core-1_0.html),
RFC 7636 (PKCE), RFC 9207 (``iss`` in the authorization response), OpenID Connect
RP-Initiated Logout 1.0 and Back-Channel Logout 1.0
(https://openid.net/specs/openid-connect-backchannel-1_0.html).

What it does, the way a relying party of the province should:

* code flow with PKCE S256, ``state`` and ``nonce`` (Authlib generates and checks them);
* the ID token is verified against the IdP's published JWKS (signature, ``iss``, ``aud``,
  ``exp``, ``nonce``) before anyone counts as signed in;
* ``iss`` in the authorization response must be the IdP's issuer (RFC 9207 §2.4);
* sessions are kept server-side (the browser holds a random key only), so that a
  back-channel logout can end them: ``POST /backchannel-logout`` verifies the logout token
  and drops every local session of its ``sid``;
* "log out" goes to the IdP's ``end_session_endpoint`` with ``id_token_hint``.

Configuration comes from the environment (the demo sets it): ``RP_ISSUER``,
``RP_CLIENT_ID``, ``RP_CLIENT_SECRET``, ``RP_BASE_URL``, ``RP_HOST``, ``RP_PORT``,
``RP_SCOPE``, ``RP_PEER_URL``/``RP_PEER_NAME`` (a link to the other demo app) and
``RP_SECRET_KEY`` (random when unset: sessions then end when the process does).
"""

from __future__ import annotations

import html
import json
import os
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from authlib.integrations.base_client import OAuthError
from authlib.integrations.flask_client import OAuth
from flask import Flask, Response, jsonify, redirect, request, session
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry

BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"
LOGOUT_TOKEN_TYPES = ("logout+jwt", "application/logout+jwt")
CLOCK_SKEW = 120  # seconds of leeway for iat/exp, as for ID tokens
LOGOUT_TOKEN_MAX_AGE = 600  # an older logout token is refused (and its jti forgotten)


@dataclass(frozen=True)
class RpConfig:
    name: str  # short, used in cookie names: "portal", "service"
    title: str
    issuer: str
    client_id: str
    client_secret: str
    base_url: str
    scope: str = "openid profile"
    peer_url: str | None = None
    peer_name: str | None = None
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    qr_app: bool = False  # also serve the simulated government app (/app, QR login)

    @classmethod
    def from_env(
        cls,
        name: str,
        title: str,
        *,
        default_port: int,
        default_scope: str,
        environ: Mapping[str, str] | None = None,
    ) -> RpConfig:
        env = os.environ if environ is None else environ
        missing = [v for v in ("RP_CLIENT_ID", "RP_CLIENT_SECRET") if not env.get(v)]
        if missing:
            raise SystemExit(f"{name}: set {', '.join(missing)} (the demo does: `yitong demo`)")
        host = env.get("RP_HOST", "127.0.0.1")
        port = int(env.get("RP_PORT", default_port))
        return cls(
            name=name,
            title=title,
            issuer=env.get("RP_ISSUER", "http://127.0.0.1:5000").rstrip("/"),
            client_id=env["RP_CLIENT_ID"],
            client_secret=env["RP_CLIENT_SECRET"],
            base_url=env.get("RP_BASE_URL", f"http://{host}:{port}").rstrip("/"),
            scope=env.get("RP_SCOPE", default_scope),
            peer_url=env.get("RP_PEER_URL") or None,
            peer_name=env.get("RP_PEER_NAME") or None,
            secret_key=env.get("RP_SECRET_KEY") or secrets.token_urlsafe(32),
            qr_app=env.get("RP_QR_APP") == "1",
        )


# ------------------------------------------------------------------ server-side sessions
@dataclass
class LocalSession:
    sub: str
    sid: str | None
    id_token: str
    id_claims: dict[str, Any]
    userinfo: dict[str, Any]
    created: float = field(default_factory=time.time)
    access_token: str = ""  # kept by the simulated government app (QR login, demo only)


class SessionStore:
    """Sessions by random key, indexed by the IdP's ``sid`` (in memory: one demo process)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: dict[str, LocalSession] = {}
        self._seen_jti: dict[str, float] = {}

    def create(self, local: LocalSession) -> str:
        key = secrets.token_urlsafe(32)
        with self._lock:
            self._sessions[key] = local
        return key

    def get(self, key: str | None) -> LocalSession | None:
        if not key:
            return None
        with self._lock:
            return self._sessions.get(key)

    def drop(self, key: str | None) -> None:
        with self._lock:
            self._sessions.pop(key or "", None)

    def end(self, *, sid: str | None, sub: str | None) -> int:
        """End the sessions of ``sid`` (of that ``sub`` when both are given), or all of ``sub``."""
        with self._lock:
            doomed = [
                k
                for k, s in self._sessions.items()
                if (sid is None or s.sid == sid) and (sub is None or s.sub == sub)
            ]
            for k in doomed:
                del self._sessions[k]
        return len(doomed)

    def first_use_of_jti(self, jti: str, now: float) -> bool:
        """Remember logout-token ids long enough to refuse replays (Back-Channel Logout §2.6)."""
        with self._lock:
            for old, at in list(self._seen_jti.items()):
                if at < now - 2 * LOGOUT_TOKEN_MAX_AGE:
                    del self._seen_jti[old]
            if jti in self._seen_jti:
                return False
            self._seen_jti[jti] = now
            return True


# ------------------------------------------------------------------ logout tokens
class LogoutTokenError(ValueError):
    """The logout token is not acceptable; the message says why (logged, sent as description)."""


def verify_logout_token(
    raw: str,
    *,
    issuer: str,
    client_id: str,
    key_set: KeySet,
    algorithms: list[str],
    now: float | None = None,
) -> dict[str, Any]:
    """Validate a logout token as Back-Channel Logout 1.0 §2.6 prescribes; return its claims.

    Raises :class:`InvalidKeyIdError` when the ``kid`` is unknown, so the caller can refetch
    the JWKS once (the IdP may have rotated its keys).
    """
    now = time.time() if now is None else now
    if not raw or len(raw) > 16384:
        raise LogoutTokenError("missing or oversized logout_token")
    try:
        token = jwt.decode(
            raw, key_set, registry=JWSRegistry(algorithms=algorithms, strict_check_header=False)
        )
    except InvalidKeyIdError:
        raise
    except (JoseError, ValueError, TypeError) as exc:
        raise LogoutTokenError(f"logout token signature or format invalid: {exc}") from None
    # §2.4: explicitly typed, so an ID token can never be replayed as a logout token.
    if token.header.get("typ") not in LOGOUT_TOKEN_TYPES:
        raise LogoutTokenError("logout token must have typ logout+jwt")
    claims = dict(token.claims)
    if claims.get("iss") != issuer:
        raise LogoutTokenError("logout token iss is not the IdP")
    aud = claims.get("aud")
    audiences = aud if isinstance(aud, list) else [aud]
    if client_id not in audiences:
        raise LogoutTokenError("logout token aud does not name this client")
    iat = claims.get("iat")
    if (
        not isinstance(iat, int | float)
        or iat > now + CLOCK_SKEW
        or iat < now - LOGOUT_TOKEN_MAX_AGE
    ):
        raise LogoutTokenError("logout token iat missing or out of range")
    exp = claims.get("exp")
    if exp is not None and (not isinstance(exp, int | float) or exp < now - CLOCK_SKEW):
        raise LogoutTokenError("logout token expired")
    if not isinstance(claims.get("jti"), str) or not claims["jti"]:
        raise LogoutTokenError("logout token needs a jti")
    events = claims.get("events")
    if not isinstance(events, dict) or not isinstance(events.get(BACKCHANNEL_EVENT), dict):
        raise LogoutTokenError("logout token events lack the back-channel logout event")
    if "nonce" in claims:
        raise LogoutTokenError("a logout token must not contain a nonce")
    if not claims.get("sid") and not claims.get("sub"):
        raise LogoutTokenError("logout token needs sid or sub")
    return claims


# ------------------------------------------------------------------ pages
# In Chinese, one column, readable from 360 px wide (a phone) without sideways scrolling.
PAGE = """<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title>
<style>
body{{font-family:system-ui,"PingFang SC","Microsoft YaHei","Noto Sans CJK SC",sans-serif;margin:0 auto;
padding:1rem;max-width:46rem;color:#222;font-size:1rem;line-height:1.6;overflow-wrap:anywhere}}
header{{border-bottom:3px solid {color};margin-bottom:1rem}} h1{{color:{color};font-size:1.4rem}}
table{{border-collapse:collapse;display:block;overflow-x:auto;max-width:100%}}
td,th{{border:1px solid #ccc;padding:.25rem .5rem;text-align:left}}
a.button{{display:inline-block;padding:.6rem 1.2rem;background:{color};color:#fff;text-decoration:none;border-radius:4px}}
.error{{color:#a00}}
</style></head>
<body><header><h1>{title}</h1></header>
{body}
</body></html>"""


def _claims_table(claims: Mapping[str, Any], table_id: str) -> str:
    rows = "".join(
        f'<tr><th>{html.escape(k)}</th><td data-claim="{html.escape(k)}">'
        f"{html.escape(v if isinstance(v, str) else json.dumps(v, ensure_ascii=False))}</td></tr>"
        for k, v in sorted(claims.items())
    )
    return f'<table id="{table_id}">{rows}</table>'


# ------------------------------------------------------------------ the app
def create_rp_app(config: RpConfig, *, color: str = "#1f5fa8") -> Flask:
    """A relying party: ``/``, ``/login``, ``/callback``, ``/logout``, ``/backchannel-logout``."""
    app = Flask(f"rp_{config.name}")
    app.config.update(
        SECRET_KEY=config.secret_key,
        # The IdP and both demo apps share the host 127.0.0.1; cookies ignore ports, so each
        # app needs a cookie name of its own.
        SESSION_COOKIE_NAME=f"rp_{config.name}_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=config.base_url.startswith("https://"),
    )
    store = SessionStore()
    app.extensions["rp_sessions"] = store
    oauth = OAuth(app)
    idp = oauth.register(
        name="yitong",
        client_id=config.client_id,
        client_secret=config.client_secret,
        server_metadata_url=config.issuer + "/.well-known/openid-configuration",
        client_kwargs={
            "scope": config.scope,
            "code_challenge_method": "S256",
            "token_endpoint_auth_method": "client_secret_basic",
            "timeout": 10,
        },
    )

    def page(body: str, status: int = 200) -> Response:
        text = PAGE.format(title=html.escape(config.title), color=color, body=body)
        resp = Response(text, status, content_type="text/html; charset=utf-8")
        resp.headers["Cache-Control"] = "no-store"
        return resp

    def current() -> LocalSession | None:
        local = store.get(session.get("key"))
        if local is None:
            session.pop("key", None)
        return local

    def peer_link() -> str:
        if not config.peer_url:
            return ""
        name = html.escape(config.peer_name or config.peer_url)
        return (
            f'<p><a id="peer-link" href="{html.escape(config.peer_url)}/login">前往{name}</a></p>'
        )

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify({"ok": True})

    @app.get("/")
    def home() -> Response:
        local = current()
        if local is None:
            body = (
                '<p id="signed-out">您尚未登录。</p>'
                '<p><a class="button" id="login-link" href="/login">使用一通账号登录</a></p>'
                + peer_link()
            )
            return page(body)
        name = local.userinfo.get("name") or local.id_claims.get("name") or local.sub
        body = (
            f'<p id="signed-in">您已登录：<strong id="user-name">{html.escape(str(name))}</strong>'
            f'（用户标识 <code id="sub">{html.escape(local.sub)}</code>）。</p>'
            "<h2>身份令牌中的信息</h2>"
            + _claims_table(local.id_claims, "id-claims")
            + "<h2>用户信息接口返回的信息</h2>"
            + _claims_table(local.userinfo, "userinfo")
            + peer_link()
            + '<p><a class="button" id="logout-link" href="/logout">退出登录</a></p>'
        )
        return page(body)

    @app.get("/login")
    def login() -> Response:
        if current() is not None:
            return redirect("/")  # type: ignore[return-value]
        return idp.authorize_redirect(config.base_url + "/callback")  # type: ignore[no-any-return]

    @app.get("/callback")
    def callback() -> Response:
        metadata = idp.load_server_metadata()
        # RFC 9207 §2.4: the response must come from the issuer we sent the user to.
        if (
            metadata.get("authorization_response_iss_parameter_supported")
            and request.args.get("iss") != metadata["issuer"]
        ):
            return page('<p class="error">登录结果不是来自预期的身份认证平台。</p>', 400)
        try:
            token = idp.authorize_access_token()
        except OAuthError as exc:
            message = html.escape(f"{exc.error}: {exc.description or ''}")
            return page(
                f'<p class="error" id="error">登录失败：{message}</p><p><a href="/">返回</a></p>',
                400,
            )
        claims = token.get("userinfo")
        if not claims or "sub" not in claims:
            return page('<p class="error">身份认证平台没有返回有效的身份令牌。</p>', 400)
        userinfo: dict[str, Any] = {}
        if metadata.get("userinfo_endpoint"):
            info = idp.userinfo(token=token)
            if info.get("sub") != claims["sub"]:  # OIDC Core §5.3.2
                return page('<p class="error">用户信息与身份令牌不一致。</p>', 400)
            userinfo = dict(info)
        local = LocalSession(
            sub=claims["sub"],
            sid=claims.get("sid"),
            id_token=token["id_token"],
            id_claims=dict(claims),
            userinfo=userinfo,
            access_token=str(token.get("access_token") or ""),
        )
        session.clear()  # a fresh browser session at sign-in (session fixation)
        session["key"] = store.create(local)
        return redirect("/")  # type: ignore[return-value]

    if config.qr_app:
        install_simulated_app(app, config, idp, page, current)

    @app.get("/logout")
    def logout() -> Response:
        local = current()
        store.drop(session.pop("key", None))
        metadata = idp.load_server_metadata()
        if metadata.get("end_session_endpoint"):
            return idp.logout_redirect(  # type: ignore[no-any-return]
                post_logout_redirect_uri=config.base_url + "/logged-out",
                id_token_hint=local.id_token if local else None,
                client_id=config.client_id,
            )
        # The IdP does not offer RP-initiated logout: its own logout page still ends the SSO session.
        return redirect(config.issuer + "/logout")  # type: ignore[return-value]

    @app.get("/logged-out")
    def logged_out() -> Response:
        if request.args.get("state"):
            try:
                idp.validate_logout_response()
            except OAuthError:
                return page('<p class="error">退出登录的结果无法识别。</p>', 400)
        return page('<p id="signed-out">您已退出登录。</p><p><a href="/">返回首页</a></p>')

    @app.post("/backchannel-logout")
    def backchannel_logout() -> Response:
        raw = request.form.get("logout_token", "")
        metadata = idp.load_server_metadata()
        algorithms = [
            a
            for a in metadata.get("id_token_signing_alg_values_supported", ["RS256"])
            if a != "none"
        ]

        def verify(force: bool) -> dict[str, Any]:
            keys = KeySet.import_key_set(idp.fetch_jwk_set(force=force))
            return verify_logout_token(
                raw,
                issuer=metadata["issuer"],
                client_id=config.client_id,
                key_set=keys,
                algorithms=algorithms,
            )

        try:
            try:
                claims = verify(False)
            except InvalidKeyIdError:
                claims = verify(True)  # the IdP may have rotated keys since we cached them
            if not store.first_use_of_jti(claims["jti"], time.time()):
                raise LogoutTokenError("logout token replayed")
        except (LogoutTokenError, InvalidKeyIdError) as exc:
            app.logger.warning("back-channel logout refused: %s", exc)
            resp = jsonify({"error": "invalid_request", "error_description": str(exc)})
            resp.status_code = 400
            resp.headers["Cache-Control"] = "no-store"
            return resp
        ended = store.end(sid=claims.get("sid"), sub=claims.get("sub"))
        app.logger.info("back-channel logout: sid=%s ended %d session(s)", claims.get("sid"), ended)
        resp = Response("", 200)
        resp.headers["Cache-Control"] = "no-store"  # §2.8
        return resp

    return app


# ------------------------------------------------------------------ the simulated government app
APP_HOME = """<h2>Simulated government app 模拟政务App</h2>
<p>This page plays the province's government app on a phone, signed in as the person above.
Copy the link under the QR code of a Yitong login page (\u201cOpen the code in the government
app\u201d) into the box: that is what scanning does.</p>
<form method="get" action="/app/scan"><label for="qr-link">QR code link</label>
<input id="qr-link" name="link" size="60" required> <button type="submit" id="scan">Scan</button></form>"""


def install_simulated_app(app: Flask, config: RpConfig, idp: Any, page: Any, current: Any) -> None:
    """``/app``: the government app's side of QR login (docs/integrating.md), for the demo.

    It calls the IdP's app API with the access token this relying party holds for the person
    (scope ``qr_login``), shows what the app would show, and sends the person's decision.
    """

    def call(method: str, code: str, what: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
        local = current()
        token = {"access_token": local.access_token, "token_type": "Bearer"}
        url = f"{config.issuer}/qr/{code}/{what}"
        resp = idp.request(method, url, token=token, withhold_token=False, **kwargs)
        try:
            return resp.status_code, dict(resp.json())
        except ValueError:
            return resp.status_code, {}

    def code_of(value: str) -> str:
        return value.strip().rstrip("/").rsplit("/", 1)[-1][:128]

    def signed_out() -> Response:
        return page(
            "<p>Sign in first (this is the app signing in once).</p>"
            '<p><a class="button" href="/login">Sign in with Yitong 一通</a></p>'
        )

    @app.get("/app")
    def simulated_app() -> Response:
        return page(APP_HOME) if current() is not None else signed_out()

    @app.get("/app/scan")
    def simulated_scan() -> Response:
        if current() is None:
            return signed_out()
        code = code_of(request.args.get("link", ""))
        status, info = call("GET", code, "request")
        if status != 200:
            text = info.get("message") or info.get("error_description") or "refused"
            return page(
                f'<p class="error" id="app-error">{html.escape(str(text))}</p>'
                '<p><a href="/app">Back</a></p>',
                status,
            )
        esc = {k: html.escape(str(v)) for k, v in info.items()}
        return page(
            f"<h2>Sign in to {esc['service']}?</h2>"
            f'<p>From: <strong id="app-location">{esc["location"]}</strong></p>'
            f'<p>Matching number: <strong id="app-number">{esc["matching_number"]}</strong></p>'
            f'<p class="error" role="alert" id="app-warning">{esc["warning"]}</p>'
            '<form method="post" action="/app/decide">'
            f'<input type="hidden" name="code" value="{html.escape(code)}">'
            f'<input type="hidden" name="matching_number" value="{esc["matching_number"]}">'
            '<button name="decision" value="approve" id="approve">Approve 确认登录</button> '
            '<button name="decision" value="deny" id="deny">Deny 拒绝</button></form>'
        )

    @app.post("/app/decide")
    def simulated_decide() -> Response:
        if current() is None:
            return signed_out()
        data = {
            "decision": request.form.get("decision", ""),
            "matching_number": request.form.get("matching_number", ""),
        }
        status, info = call("POST", code_of(request.form.get("code", "")), "decision", data=data)
        text = info.get("status") or info.get("message") or info.get("error_description")
        return page(
            f'<p id="app-result">{html.escape(str(text))}</p>'
            '<p><a href="/app">Scan another code</a></p>',
            status,
        )


def serve(app: Flask, config: RpConfig) -> None:
    """Serve with the development server on the host and port of ``RP_BASE_URL``."""
    parts = urlsplit(config.base_url)
    host = os.environ.get("RP_HOST") or parts.hostname or "127.0.0.1"
    port = int(os.environ.get("RP_PORT") or parts.port or 80)
    app.run(host=host, port=port, debug=False, use_reloader=False, threaded=True)

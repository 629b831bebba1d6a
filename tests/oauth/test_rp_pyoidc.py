"""A second, independent relying party (pyoidc, ``oic``) against a live server (checklist 46).

The provider runs under werkzeug's threaded server on an ephemeral port (readiness checked
by polling discovery).  pyoidc's ``Client`` does discovery, the code flow with PKCE and a
statically registered client (no dynamic registration), the token request with
``client_secret_basic``, its own ID-token verification (signature against the JWKS it
fetched, ``iss``, ``aud``, ``nonce``, ``exp``/``iat``) and the userinfo request.  A browser
is stood in for by a ``requests`` session that fills in our login and consent forms.
Then RP-initiated logout is followed with pyoidc's own end-session request.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest
import requests
from werkzeug.serving import make_server

from tests.helpers import Citizen, RegisteredClient

pytestmark = pytest.mark.slow


class LiveServer:
    def __init__(self, make_app: Callable[..., Any], **overrides: Any) -> None:
        holder: dict[str, Any] = {}

        def dispatch(environ: Any, start_response: Any) -> Any:
            return holder["app"](environ, start_response)

        self.server = make_server("127.0.0.1", 0, dispatch, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.port}"
        self.app = make_app(issuer=self.url, **overrides)
        holder["app"] = self.app
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()
        deadline = time.monotonic() + 10
        while True:  # readiness: discovery answers
            try:
                if requests.get(self.url + "/.well-known/openid-configuration", timeout=1).ok:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("live server did not become ready")
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def live(make_app: Any) -> Iterator[LiveServer]:
    server = LiveServer(make_app, signing_algorithms=("RS256", "ES256", "PS256"))
    yield server
    server.stop()


def _field(html: str, name: str) -> str:
    m = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert m, f"no field {name}"
    return m.group(1).replace("&amp;", "&")


def browse_to_code(browser: requests.Session, url: str, citizen: Citizen, redirect_uri: str) -> str:
    """Follow our pages as a person would; return the query string sent to the client."""
    resp = browser.get(url, allow_redirects=False)
    for _ in range(10):
        location = resp.headers.get("Location")
        assert location, (resp.status_code, resp.text[:300])
        location = urljoin(resp.url, location)
        if location.startswith(redirect_uri):
            return urlsplit(location).query
        page = browser.get(location, allow_redirects=False)
        if page.status_code in (302, 303):
            resp = page
            continue
        html = page.text
        if 'id="login-form"' in html:
            resp = browser.post(
                urlsplit(location)._replace(path="/login", query="").geturl(),
                data={
                    "csrf_token": _field(html, "csrf_token"),
                    "ix": _field(html, "ix"),
                    "login": citizen.email,
                    "password": citizen.password,
                    "action": "login",
                },
                allow_redirects=False,
            )
        elif 'id="consent-form"' in html:
            resp = browser.post(
                urlsplit(location)._replace(path="/consent", query="").geturl(),
                data={
                    "csrf_token": _field(html, "csrf_token"),
                    "ix": _field(html, "ix"),
                    "action": "approve",
                },
                allow_redirects=False,
            )
        else:
            raise AssertionError(f"unexpected page {location}: {html[:300]}")
    raise AssertionError("never reached the client")


@pytest.mark.parametrize("alg", ["RS256", "PS256", "ES256"])
def test_pyoidc_relying_party_end_to_end(live: LiveServer, alg: str) -> None:
    from oic.oic import Client
    from oic.oic.message import (
        AccessTokenResponse,
        AuthorizationResponse,
        OpenIDSchema,
        RegistrationResponse,
    )
    from oic.utils.authn.client import CLIENT_AUTHN_METHOD

    citizen = Citizen.create(live.app)
    redirect_uri = "https://rp.gov.example/cb"
    registered = RegisteredClient.create(
        live.app,
        name="pyoidc RP",
        redirect_uris=[redirect_uri],
        id_token_alg=alg,
        post_logout_redirect_uris=["https://rp.gov.example/bye"],
    )

    rp = Client(client_authn_method=CLIENT_AUTHN_METHOD)
    info = rp.provider_config(live.url)  # discovery, issuer checked by pyoidc
    assert info["issuer"] == live.url
    assert alg in info["id_token_signing_alg_values_supported"]
    rp.store_registration_info(
        RegistrationResponse(
            client_id=registered.client_id,
            client_secret=registered.secret,
            redirect_uris=[redirect_uri],
            id_token_signed_response_alg=alg,
            token_endpoint_auth_method="client_secret_basic",
        )
    )
    rp.redirect_uris = [redirect_uri]

    state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    pkce, verifier = rp.add_code_challenge()
    request = rp.construct_AuthorizationRequest(
        request_args={
            "client_id": registered.client_id,
            "response_type": "code",
            "scope": ["openid", "profile", "email"],
            "nonce": nonce,
            "redirect_uri": redirect_uri,
            "state": state,
            **pkce,
        }
    )
    url = request.request(rp.authorization_endpoint)
    browser = requests.Session()
    query = browse_to_code(browser, url, citizen, redirect_uri)
    assert "iss" in parse_qs(query)

    auth = rp.parse_response(AuthorizationResponse, info=query, sformat="urlencoded")
    assert isinstance(auth, AuthorizationResponse) and auth["state"] == state
    tokens = rp.do_access_token_request(
        state=state,
        request_args={
            "code": auth["code"],
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
        },
        authn_method="client_secret_basic",
    )
    assert isinstance(tokens, AccessTokenResponse), tokens
    id_token = tokens["id_token"]  # verified by pyoidc: signature (JWKS), iss, aud, exp, iat
    assert id_token.jws_header["alg"] == alg
    assert id_token["iss"] == live.url
    assert id_token["aud"] == [registered.client_id]
    assert id_token["nonce"] == nonce
    assert id_token["sub"] == citizen.id
    # pyoidc rejects a tampered token with the same machinery (it really verifies).
    raw = tokens["id_token_jwt"]
    head, body, sig = raw.split(".")
    forged = AccessTokenResponse(
        access_token="x", token_type="Bearer", id_token=f"{head}.{body}.{sig[::-1]}"
    )
    with pytest.raises(Exception):  # noqa: B017 - any pyoidc verification error will do
        forged.verify(keyjar=rp.keyjar, iss=live.url, client_id=registered.client_id)
    genuine = AccessTokenResponse(access_token="x", token_type="Bearer", id_token=raw)
    assert genuine.verify(keyjar=rp.keyjar, iss=live.url, client_id=registered.client_id)

    userinfo = rp.do_user_info_request(state=state, behavior="use_authorization_header")
    assert isinstance(userinfo, OpenIDSchema)
    assert userinfo["sub"] == citizen.id and userinfo["email"] == citizen.email

    # RP-initiated logout with pyoidc's end-session request.
    end = rp.construct_EndSessionRequest(
        state=state,
        request_args={
            "post_logout_redirect_uri": "https://rp.gov.example/bye",
            "state": "bye-state",
        },
    )
    resp = browser.get(end.request(rp.end_session_endpoint), allow_redirects=False)
    assert resp.status_code == 302
    assert resp.headers["Location"] == "https://rp.gov.example/bye?state=bye-state"
    assert browser.get(live.url + "/account", allow_redirects=False).status_code == 302

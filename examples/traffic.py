"""Real traffic over HTTP for the fault drills and the soak (issue 12 items 3 and 6).

A :class:`Visitor` is one browser plus the demo portal's back end: it signs in with the
authorization-code flow (PKCE), redeems the code, refreshes, introspects, opens a second
service with the SSO cookie and signs out, exactly as a person and a relying party would.
Every answer is recorded in a :class:`Ledger`, which the drills then check: no 5xx other than
a clean 503, no code redeemed twice, no access or refresh token issued twice.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import requests

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
IX = re.compile(r'name="ix" value="([^"]*)"')


class Refused(Exception):
    """A step was answered with a clean refusal (503, ``temporarily_unavailable``, a 4xx)."""

    def __init__(self, step: str, status: int) -> None:
        super().__init__(f"{step}: {status}")
        self.step, self.status = step, status


@dataclass
class Ledger:
    """What every request got, shared by the visitors of one run."""

    statuses: collections.Counter[tuple[str, int]] = field(default_factory=collections.Counter)
    server_errors: list[str] = field(default_factory=list)
    access_tokens: collections.Counter[str] = field(default_factory=collections.Counter)
    codes_redeemed: collections.Counter[str] = field(default_factory=collections.Counter)
    refresh_issued: collections.Counter[str] = field(default_factory=collections.Counter)
    completed: collections.Counter[str] = field(default_factory=collections.Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, step: str, resp: requests.Response) -> None:
        with self.lock:
            self.statuses[(step, resp.status_code)] += 1
            if resp.status_code >= 500 and resp.status_code != 503:
                # The request id names the node log lines that explain it (the drills print them).
                rid = resp.headers.get("X-Request-Id", "-")
                self.server_errors.append(
                    f"{step} {resp.status_code} request {rid}: {resp.text[:200]!r}"
                )

    def done(self, what: str) -> None:
        with self.lock:
            self.completed[what] += 1

    def duplicates(self) -> dict[str, list[str]]:
        """Anything issued or accepted twice (must be empty)."""
        return {
            "access_tokens": [t[:12] for t, n in self.access_tokens.items() if n > 1],
            "codes": [c[:12] for c, n in self.codes_redeemed.items() if n > 1],
            "refresh": [r[:12] for r, n in self.refresh_issued.items() if n > 1],
        }

    def refused(self) -> int:
        return sum(n for (_step, status), n in self.statuses.items() if status >= 400)


@dataclass
class Relying:
    """The client a visitor signs in to."""

    client_id: str
    client_secret: str
    redirect_uri: str

    def basic(self) -> tuple[str, str]:
        return (self.client_id, self.client_secret)


class Visitor:
    """One person's browser (cookies) and the relying party's back channel."""

    def __init__(
        self, base: str, rp: Relying, login: str, password: str, ledger: Ledger, timeout: float = 15
    ) -> None:
        self.base = base.rstrip("/")
        self.rp, self.login_name, self.password = rp, login, password
        self.ledger = ledger
        self.timeout = timeout
        self.browser = requests.Session()
        self.backend = requests.Session()

    def _get(self, step: str, url: str, **kw: Any) -> requests.Response:
        resp = self.browser.get(self._abs(url), allow_redirects=False, timeout=self.timeout, **kw)
        self.ledger.note(step, resp)
        return resp

    def _post(
        self, step: str, url: str, session: requests.Session | None = None, **kw: Any
    ) -> requests.Response:
        http = session or self.browser
        resp = http.post(self._abs(url), allow_redirects=False, timeout=self.timeout, **kw)
        self.ledger.note(step, resp)
        return resp

    def _abs(self, url: str) -> str:
        return url if url.startswith("http") else self.base + url

    # ------------------------------------------------------------------ the flows
    def sign_in(self, *, prompt: str | None = None) -> dict[str, Any]:
        """Authorization code with PKCE; logs in when the IdP asks.  Returns the token answer."""
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
        params = {
            "response_type": "code",
            "client_id": self.rp.client_id,
            "redirect_uri": self.rp.redirect_uri,
            "scope": "openid profile",
            "state": secrets.token_urlsafe(8),
            "nonce": secrets.token_urlsafe(8),
            "code_challenge": challenge.rstrip(b"=").decode(),
            "code_challenge_method": "S256",
        }
        if prompt:
            params["prompt"] = prompt
        resp = self._get("authorize", "/authorize?" + urlencode(params))
        for _ in range(8):
            if resp.status_code not in (302, 303):
                raise Refused("authorize", resp.status_code)
            location = resp.headers["Location"]
            if location.startswith(self.rp.redirect_uri):
                query = parse_qs(urlsplit(location).query)
                if "code" not in query:
                    raise Refused("authorize:" + query.get("error", ["?"])[0], 400)
                return self._redeem(query["code"][0], verifier)
            if "/login" in urlsplit(location).path:
                resp = self._submit_login(location)
                continue
            resp = self._get("follow", location)
        raise Refused("authorize-loop", 0)

    def _submit_login(self, location: str) -> requests.Response:
        page = self._get("login-page", location)
        if page.status_code != 200:
            raise Refused("login-page", page.status_code)
        csrf, ix = CSRF.search(page.text), IX.search(page.text)
        if csrf is None or ix is None:
            raise Refused("login-page-form", page.status_code)
        form = {
            "csrf_token": csrf.group(1),
            "ix": ix.group(1).replace("&amp;", "&"),
            "login": self.login_name,
            "password": self.password,
        }
        resp = self._post("login", "/login", data=form)
        if resp.status_code not in (302, 303):
            raise Refused("login", resp.status_code)
        return resp

    def _redeem(self, code: str, verifier: str) -> dict[str, Any]:
        data = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.rp.redirect_uri,
            "code_verifier": verifier,
        }
        resp = self._post("token:code", "/token", self.backend, data=data, auth=self.rp.basic())
        if resp.status_code != 200:
            raise Refused("token:code", resp.status_code)
        body: dict[str, Any] = resp.json()
        with self.ledger.lock:
            self.ledger.codes_redeemed[code] += 1
            self.ledger.access_tokens[body["access_token"]] += 1
            if body.get("refresh_token"):
                self.ledger.refresh_issued[body["refresh_token"]] += 1
        self.ledger.done("sign_in")
        return body

    def refresh(self, refresh_token: str) -> dict[str, Any]:
        data = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        resp = self._post("token:refresh", "/token", self.backend, data=data, auth=self.rp.basic())
        if resp.status_code != 200:
            raise Refused("token:refresh", resp.status_code)
        body: dict[str, Any] = resp.json()
        with self.ledger.lock:
            self.ledger.access_tokens[body["access_token"]] += 1
            if body.get("refresh_token") not in (None, refresh_token):  # rotated
                self.ledger.refresh_issued[body["refresh_token"]] += 1
        self.ledger.done("refresh")
        return body

    def introspect(self, token: str) -> bool:
        resp = self._post(
            "introspect", "/introspect", self.backend, data={"token": token}, auth=self.rp.basic()
        )
        if resp.status_code != 200:
            raise Refused("introspect", resp.status_code)
        self.ledger.done("introspect")
        return bool(resp.json().get("active"))

    def userinfo(self, token: str) -> int:
        resp = self.backend.get(
            self._abs("/userinfo"),
            headers={"Authorization": f"Bearer {token}"},
            timeout=self.timeout,
        )
        self.ledger.note("userinfo", resp)
        return resp.status_code

    def signed_in(self) -> bool:
        """Whether the IdP still knows this browser's session (the account page answers)."""
        resp = self._get("account", "/account")
        if resp.status_code >= 500:
            raise Refused("account", resp.status_code)
        return resp.status_code == 200

    def sign_out(self) -> None:
        page = self._get("account", "/account")
        if page.status_code != 200:
            raise Refused("account", page.status_code)
        csrf = CSRF.search(page.text)
        if csrf is None:
            raise Refused("account-form", page.status_code)
        resp = self._post("logout", "/logout", data={"csrf_token": csrf.group(1)})
        if resp.status_code >= 400:
            raise Refused("logout", resp.status_code)
        self.ledger.done("sign_out")


def mixed_round(visitor: Visitor) -> None:
    """One person's session: sign in, refresh, introspect, SSO into the portal again, sign out."""
    tokens = visitor.sign_in()
    tokens = visitor.refresh(tokens["refresh_token"])
    visitor.introspect(tokens["access_token"])
    visitor.userinfo(tokens["access_token"])
    visitor.sign_in(prompt=None)  # the SSO cookie: no password this time
    visitor.sign_out()


def run_load(
    make_visitor: Any,
    *,
    threads: int,
    seconds: float,
    ledger: Ledger,
    round_: Any = mixed_round,
    pause: float = 0.0,
    stop: threading.Event | None = None,
) -> list[str]:
    """``threads`` visitors doing rounds for ``seconds`` (or until ``stop`` is set, if that
    comes first); returns the refusals seen (step:status)."""
    deadline = time.monotonic() + seconds
    stop = stop or threading.Event()
    refusals: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        visitor = make_visitor()
        while time.monotonic() < deadline and not stop.is_set():
            try:
                round_(visitor)
            except Refused as exc:
                with lock:
                    refusals.append(str(exc))
                visitor = make_visitor()  # a fresh browser after a refusal
            except requests.RequestException as exc:
                with lock:
                    refusals.append(f"connection: {type(exc).__name__}")
                visitor = make_visitor()
            if pause:
                time.sleep(pause)

    pool = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(seconds + 60)
    return refusals

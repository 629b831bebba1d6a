"""Upstream federation fixtures: a second Yitong instance as the "national platform" (its
own SQLite database, its own live server) and ours configured to log in through it.

Both servers are bound before either app is built, because each must know the other: ours
names the upstream's issuer, the upstream may deliver back-channel logout to ours.  The
person's browser is two cookie jars (one per instance): both run on 127.0.0.1, where one jar
would mix the two instances' cookies of the same name.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from werkzeug.serving import make_server

from idp.accounts.assurance import record_verification
from idp.storage.models import Client, User
from tests.helpers import Citizen, RegisteredClient, make_settings

CALLBACK = "/federation/upstream/callback"
LOGOUT = "/federation/upstream/backchannel-logout"


class Bound:
    """A live server whose socket exists before its app (``serve`` starts it)."""

    def __init__(self) -> None:
        self._holder: dict[str, Any] = {}

        def dispatch(environ: Any, start_response: Any) -> Any:
            return self._holder["app"](environ, start_response)

        self.server = make_server("127.0.0.1", 0, dispatch, threaded=True)
        self.host = f"127.0.0.1:{self.server.port}"
        self.url = f"http://{self.host}"
        self.thread: threading.Thread | None = None

    def serve(self, app: Flask) -> None:
        """Serve ``app`` (the first call starts the thread; later ones swap the app)."""
        self._holder["app"] = app
        if self.thread is None:
            self.thread = threading.Thread(
                target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
            )
            self.thread.start()
        deadline = time.monotonic() + 10
        while True:  # readiness: the health probe answers
            try:
                if requests.get(self.url + "/healthz", timeout=2).ok:
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("live server did not become ready")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.thread is not None:
            self.server.shutdown()
            self.thread.join(5)
            self.thread = None
        self.server.server_close()


@pytest.fixture(scope="session")
def upstream_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The national platform's own database (SQLite whatever the suite's backend: the
    upstream is not what is under test there), migrated once."""
    from idp.storage.migrate import upgrade

    url = f"sqlite:///{tmp_path_factory.mktemp('national') / 'national.db'}"
    upgrade(url)
    return url


@dataclass
class National:
    """The pair: ``upstream`` (the national platform) and ``ours``."""

    upstream: Flask
    ours: Flask
    up: Bound
    here: Bound
    rp: RegisteredClient

    def person(self, index: int) -> tuple[Citizen, Citizen]:
        """The same person at both: verified (L3) upstream, a plain citizen account here."""
        upstream_citizen = Citizen.create(self.upstream, index=index)
        services = self.upstream.extensions["yitong"]
        with services.db.transaction() as session:
            user = session.get(User, upstream_citizen.id)
            assert user is not None
            record_verification(session, user, "L3", "registry", verifier="test")
        return upstream_citizen, Citizen.create(self.ours, index=index)

    def browsers(self) -> tuple[requests.Session, requests.Session]:
        return requests.Session(), requests.Session()


@dataclass(frozen=True)
class Servers:
    up: Bound
    here: Bound
    upstream: Flask
    rp: RegisteredClient


@pytest.fixture(scope="module")
def national_servers(
    upstream_db: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Servers]:
    """The national platform, and the address ours will have, for a whole module: each
    test gets a fresh app of ours on that address (people differ per test upstream)."""
    from tests.conftest import _truncate

    _truncate(upstream_db)
    up, here = Bound(), Bound()
    upstream = _upstream_app(upstream_db, tmp_path_factory.mktemp("national"), up, here)
    rp = RegisteredClient.create(
        upstream,
        name="Provincial Yitong",
        redirect_uris=[here.url + CALLBACK],
        scopes=["openid", "profile"],
        backchannel_logout_uri=here.url + LOGOUT,
    )
    with upstream.extensions["yitong"].db.transaction() as session:
        row = session.get(Client, rp.client_id)
        assert row is not None
        row.allowed_verified_claims = ["resident_id_number", "name"]
    up.serve(upstream)
    yield Servers(up, here, upstream, rp)
    here.stop()
    up.stop()
    upstream.extensions["yitong"].db.dispose()


@pytest.fixture
def national(make_app: Any, national_servers: Servers) -> National:
    s = national_servers
    ours = make_app(
        issuer=s.here.url,
        upstream_issuer=s.up.url,
        upstream_client_id=s.rp.client_id,
        upstream_client_secret=s.rp.secret,
        outbound_test_allowlist=(s.up.host,),
    )
    s.here.serve(ours)
    return National(s.upstream, ours, s.up, s.here, s.rp)


def _upstream_app(db: str, tmp_path: Path, up: Bound, here: Bound) -> Flask:
    from idp.app import create_app

    app = create_app(
        make_settings(
            db,
            tmp_path / "national",
            issuer=up.url,
            secret_key="national-platform-secret-" + "n" * 32,
            outbound_test_allowlist=(here.host,),
        )
    )
    app.extensions["yitong"].keys.ensure_keys()
    return app

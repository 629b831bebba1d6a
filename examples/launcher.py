"""The demo launcher: the IdP and the two demo relying parties as three processes.

``yitong demo`` (and so ``make demo``) runs ``python -m examples.launcher``: it sets the demo
up (:func:`idp.demo.setup`, idempotent), starts the IdP with ``yitong run``,
``examples.portal.app`` and ``examples.service.app``, waits until each answers, prints the
demo login and forwards their output with a prefix; Ctrl-C (or SIGTERM, or any of them dying)
stops all three.  The browser test (tests/browser/test_demo_sso.py) starts the same
processes through :func:`start`.

It lives next to the relying parties it starts because it needs the source checkout: the
examples are not part of the installed package.
"""

from __future__ import annotations

import collections
import contextlib
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TextIO

from idp.cli.common import safe
from idp.config import Settings
from idp.demo import (
    REPO_ROOT,
    DemoClient,
    DemoError,
    DemoLayout,
    DemoState,
    demo_settings,
    describe,
    settings_environment,
    setup,
)
from idp.interaction.outbox import OutboxEntry, read_outbox
from idp.storage.db import Database

ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


def _say(*lines: str, err: bool = False) -> None:
    """Print the launcher's own lines (escaped like every ``yitong`` output)."""
    for line in lines:
        print(safe(line), file=sys.stderr if err else sys.stdout, flush=True)


class OutboxPrinter:
    """Prints messages that reach the development outbox while the demo runs."""

    def __init__(self, settings: Settings) -> None:
        self.db = Database(settings.resolved_database_url)
        self.last_id = max((m.id for m in self._read(0, 10_000)), default=0)

    def _read(self, after_id: int, limit: int = 50) -> list[OutboxEntry]:
        return read_outbox(self.db, after_id=after_id, limit=limit)

    def poll(self) -> None:
        for m in self._read(self.last_id):
            self.last_id = max(self.last_id, m.id)
            print(safe(f"[outbox] {m.channel} to {m.destination}: {m.body}"), flush=True)

    def close(self) -> None:
        self.db.dispose()


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Linux: the child gets SIGTERM if the demo process dies without cleaning up."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_DEATHSIG


class DemoProcess:
    """One child process whose output is kept (last lines) and optionally echoed with a prefix."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        env: Mapping[str, str],
        health_url: str,
        *,
        echo: TextIO | None,
    ) -> None:
        self.name = name
        self.health_url = health_url
        self.lines: collections.deque[str] = collections.deque(maxlen=200)
        self._echo = echo
        self.proc = subprocess.Popen(
            argv,
            env=dict(env),
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        self._reader = threading.Thread(target=self._pump, name=f"demo-{name}", daemon=True)
        self._reader.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            line = safe(ANSI_ESCAPE.sub("", line.rstrip("\n")))
            self.lines.append(line)
            if self._echo is not None:
                with contextlib.suppress(ValueError, OSError):
                    print(f"[{self.name}] {line}", file=self._echo, flush=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise DemoError(
                    f"{self.name} exited with status {self.proc.returncode}:\n{self.tail()}"
                )
            try:
                with urllib.request.urlopen(self.health_url, timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise DemoError(
            f"{self.name} did not answer at {self.health_url} within {timeout:.0f} s:\n{self.tail()}"
        )

    def tail(self, n: int = 30) -> str:
        return "\n".join(list(self.lines)[-n:])

    def stop(self, timeout: float = 5.0) -> None:
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        self._reader.join(timeout)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@dataclass
class DemoProcesses:
    idp: DemoProcess
    portal: DemoProcess
    service: DemoProcess

    def all(self) -> list[DemoProcess]:
        return [self.idp, self.portal, self.service]

    def stop(self) -> None:
        # Relying parties first: the IdP may still be delivering back-channel logouts to them.
        for p in (self.portal, self.service, self.idp):
            p.stop()


def _rp_env(
    base: Mapping[str, str], client: DemoClient, peer: DemoClient, issuer: str, peer_name: str
) -> dict[str, str]:
    env = dict(base)
    port = client.url.rsplit(":", 1)[1]
    env.update(
        RP_ISSUER=issuer,
        RP_CLIENT_ID=client.client_id,
        RP_CLIENT_SECRET=client.client_secret,
        RP_BASE_URL=client.url,
        RP_HOST=client.url.split("//", 1)[1].rsplit(":", 1)[0],
        RP_PORT=port,
        RP_PEER_URL=peer.url,
        RP_PEER_NAME=peer_name,
        RP_SECRET_KEY=secrets.token_urlsafe(32),
    )
    return env


def start(
    settings: Settings,
    layout: DemoLayout,
    state: DemoState,
    *,
    echo: TextIO | None = None,
    timeout: float = 30.0,
) -> DemoProcesses:
    """Start the IdP, the portal and the service; return once all three answer."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("YITONG_", "RP_"))}
    if "YITONG_CONFIG" in os.environ:
        base["YITONG_CONFIG"] = os.environ["YITONG_CONFIG"]
    base["PYTHONUNBUFFERED"] = "1"
    base["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), base.get("PYTHONPATH")) if p)
    idp_env = {**base, **settings_environment(settings)}
    started: list[DemoProcess] = []
    try:
        idp = DemoProcess(
            "idp",
            [
                sys.executable,
                "-m",
                "idp.cli",
                "run",
                "--host",
                layout.host,
                "--port",
                str(layout.idp_port),
            ],
            idp_env,
            layout.idp_url + "/.well-known/openid-configuration",
            echo=echo,
        )
        started.append(idp)
        started += start_rps(state, echo=echo, base=base, wait=False)
        for p in started:
            p.wait_ready(timeout)
    except BaseException:
        for p in reversed(started):
            p.stop()
        raise
    return DemoProcesses(idp, started[1], started[2])


def start_rps(
    state: DemoState,
    *,
    echo: TextIO | None = None,
    base: Mapping[str, str] | None = None,
    wait: bool = True,
    timeout: float = 30.0,
) -> list[DemoProcess]:
    """Start the portal and the service (for ``make demo`` and ``make cluster``)."""
    if base is None:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("YITONG_", "RP_"))}
        base["PYTHONUNBUFFERED"] = "1"
        base["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), base.get("PYTHONPATH")) if p
        )
    started: list[DemoProcess] = []
    try:
        started.append(
            DemoProcess(
                "portal",
                [sys.executable, "-m", "examples.portal.app"],
                {
                    **_rp_env(
                        base,
                        state.portal,
                        state.service,
                        state.issuer,
                        "社会保障服务",
                    ),
                    "RP_QR_APP": "1",  # the portal also plays the government app (QR login)
                },
                state.portal.url + "/healthz",
                echo=echo,
            )
        )
        started.append(
            DemoProcess(
                "service",
                [sys.executable, "-m", "examples.service.app"],
                _rp_env(base, state.service, state.portal, state.issuer, "省政务服务门户"),
                state.service.url + "/healthz",
                echo=echo,
            )
        )
        if wait:
            for p in started:
                p.wait_ready(timeout)
    except BaseException:
        for p in reversed(started):
            p.stop()
        raise
    return started


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    def handler(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def serve_all(settings: Settings, layout: DemoLayout, state: DemoState) -> int:
    """Run until Ctrl-C or until a process dies; stop all three either way."""
    with _sigterm_as_interrupt():
        try:
            procs = start(settings, layout, state, echo=sys.stdout)
        except KeyboardInterrupt:
            return 130
        _say(*describe(state), "Press Ctrl-C to stop all three.", "")
        outbox = OutboxPrinter(settings) if state.outbox else None
        try:
            while True:
                if outbox is not None:
                    outbox.poll()
                for p in procs.all():
                    if not p.alive():
                        _say(
                            f"{p.name} exited with status {p.proc.returncode}; stopping the demo",
                            err=True,
                        )
                        procs.stop()
                        return 1
                time.sleep(0.5)
        except KeyboardInterrupt:
            _say("", "stopping the demo…")
            procs.stop()
            return 0
        finally:
            if outbox is not None:
                outbox.close()


def main(layout: DemoLayout | None = None) -> int:
    """Set the demo up and serve it; the exit status (2 when it cannot start)."""
    layout = layout or DemoLayout()
    try:
        settings = demo_settings(layout)
        state = setup(settings, layout)
        for item in state.created:
            _say(f"created {item}")
        return serve_all(settings, layout, state)
    except DemoError as exc:
        _say(f"error: {exc}", err=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""What a server worker holds (issue 12 item 5: a worker's memory).

A worker imports the libraries of optional features at their first use, not at start:
Alembic (only ``yitong init`` migrates; the server's schema check reads the revision itself),
ldap3 when no directory is configured, WebAuthn until a passkey ceremony, qrcode until a QR
code is drawn, requests until a registry service or an SMS gateway is configured, and lxml
never.  Together they were about 28 MB of every worker.  A top-level import of one of them
anywhere on the server's import path fails this test.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from idp.storage.migrate import upgrade
from tests.helpers import TEST_KEK

REPO = Path(__file__).resolve().parent.parent
ON_FIRST_USE = ("alembic", "ldap3", "webauthn", "qrcode", "requests", "lxml")


@pytest.mark.slow
def test_a_worker_starts_without_the_libraries_of_unused_features(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ready.db'}"
    upgrade(url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("YITONG_")}
    env.update(
        YITONG_ENV="testing",
        YITONG_ISSUER="http://localhost",
        YITONG_DATABASE_URL=url,
        YITONG_INSTANCE_DIR=str(tmp_path / "instance"),
        YITONG_SECRET_KEY="footprint-secret-key-" + "f" * 32,
        YITONG_KEY_ENCRYPTION_KEY=TEST_KEK,
        PYTHONPATH=str(REPO),
    )
    probe = (
        "import sys, flask, wsgi; "
        "print(isinstance(wsgi.app, flask.Flask), "
        f"*[m for m in {ON_FIRST_USE!r} if m in sys.modules])"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True"]  # the app was built, and none of them imported

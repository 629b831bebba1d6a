"""The app signs with keys held in the hardware module when ``key_store = "pkcs11"`` (issue 4 item 3).

A full code flow: the ID token is signed inside SoftHSM2 and verified by python-jose against
the published JWKS, so nothing of the key ever left the module.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from jose import jwt as jose_jwt

from idp.config import ConfigError
from idp.storage.db import Database
from idp.storage.models import SigningKey
from tests.helpers import ISSUER, Citizen, Flow, RegisteredClient
from tests.keys.conftest import SoftHsm

pytestmark = pytest.mark.hsm


def test_code_flow_with_hsm_keys(make_app, softhsm: SoftHsm, db: Database, tmp_path: Path) -> None:
    pin_file = tmp_path / "pin"
    pin_file.write_text(softhsm.pin + "\n")
    app = make_app(
        key_store="pkcs11",
        pkcs11_module=softhsm.module,
        pkcs11_token_label=softhsm.token_label,
        pkcs11_pin_file=str(pin_file),
    )
    client = app.test_client()
    citizen = Citizen.create(app)
    flow = Flow(client, RegisteredClient.create(app))
    body = flow.token(flow.run(citizen)["code"]).get_json()
    header = jose_jwt.get_unverified_header(body["id_token"])
    jwks = client.get("/jwks").get_json()
    key = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    claims = jose_jwt.decode(
        body["id_token"],
        key,
        algorithms=["RS256"],
        audience=flow.rp.client_id,
        issuer=ISSUER,
        access_token=body["access_token"],
    )
    assert claims["sub"] == citizen.id
    with db.session() as session:
        row = session.get(SigningKey, header["kid"])
        assert row is not None and row.backend == "pkcs11" and row.private_ciphertext is None


def test_pkcs11_settings_are_checked(make_app, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="PKCS11_MODULE"):
        make_app(key_store="pkcs11")
    with pytest.raises(ConfigError, match="PIN_FILE"):
        make_app(key_store="pkcs11", pkcs11_module="/nonexistent.so", pkcs11_token_label="x")

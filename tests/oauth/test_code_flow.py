"""The authorization-code flow end to end, verified by an independent RP library (python-jose)."""

from __future__ import annotations

from typing import Any

from jose import jwt as jose_jwt

from tests.helpers import ISSUER, Flow


def verify_id_token(client: Any, id_token: str, audience: str, **kwargs: Any) -> dict[str, Any]:
    jwks = client.get("/jwks").get_json()
    header = jose_jwt.get_unverified_header(id_token)
    key = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    return jose_jwt.decode(
        id_token, key, algorithms=[header["alg"]], audience=audience, issuer=ISSUER, **kwargs
    )


def test_code_flow_end_to_end(client, citizen, rp):
    flow = Flow(client, rp)
    params = flow.run(citizen)
    assert params["state"] == flow.state
    assert params["iss"] == ISSUER
    resp = flow.token(params["code"])
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert resp.headers["Cache-Control"] == "no-store"
    assert body["token_type"] == "Bearer"
    claims = verify_id_token(
        client, body["id_token"], rp.client_id, access_token=body["access_token"]
    )
    assert claims["sub"] == citizen.id
    assert claims["nonce"] == flow.nonce
    assert claims["email"] == citizen.email
    assert jose_jwt.get_unverified_header(body["id_token"])["alg"] == "RS256"
    info = client.get("/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert info.status_code == 200
    assert info.get_json()["sub"] == citizen.id
    assert info.get_json()["name"] == citizen.name

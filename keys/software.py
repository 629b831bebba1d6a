"""Software keys: generation, thumbprint ``kid`` (RFC 7638), JWS assembly and signing.

RFC 7515 (JWS): https://www.rfc-editor.org/rfc/rfc7515
RFC 7638 (JWK thumbprint): https://www.rfc-editor.org/rfc/rfc7638
RFC 8037 (EdDSA in JOSE): https://www.rfc-editor.org/rfc/rfc8037

Key objects are built once per kid and reused: importing a PEM per call costs ~36 ms
(ARCHITECTURE.md, performance habits).

About ``EdDSA``: RFC 9864 deprecates the polymorphic ``EdDSA`` identifier in favour of the
fully specified ``Ed25519``, and joserfc warns (``SecurityWarning``) whenever it looks the
algorithm up by that name.  We keep publishing ``EdDSA`` on purpose: it is the identifier
OpenID Connect relying parties and discovery documents know today, and the deprecation is
about ambiguity (Ed25519 vs Ed448), which does not arise because our ``EdDSA`` keys are always
Ed25519 (``crv`` is in every published JWK).  So instead of silencing warnings globally
(``warnings.catch_warnings`` is process-wide and not thread-safe), signing takes the algorithm
object straight from joserfc's table, and :data:`JWS_REGISTRY` is a registry whose ``EdDSA``
entry carries no warning, for verifying our own tokens.
"""

from __future__ import annotations

import base64
import calendar
import datetime as dt
import json
from collections.abc import Callable
from typing import Any

from joserfc.jwa import JWS_ALGORITHMS, EdDSAAlgorithm, JWSAlgModel
from joserfc.jwk import ECKey, Key, OKPKey, RSAKey, import_key
from joserfc.jws import JWSRegistry

from keys.store import SUPPORTED_ALGS, KeyStoreError

KTY_BY_ALG = {"RS256": "RSA", "PS256": "RSA", "ES256": "EC", "EdDSA": "OKP"}
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "k", "oth"})

#: An asymmetric private or public key (joserfc); we never sign with shared secrets.
AsymmetricKey = RSAKey | ECKey | OKPKey

#: joserfc key class for each algorithm we sign with.
KEY_CLASSES: dict[str, type[RSAKey] | type[ECKey] | type[OKPKey]] = {
    "RS256": RSAKey,
    "PS256": RSAKey,
    "ES256": ECKey,
    "EdDSA": OKPKey,
}

MIN_RSA_BITS = 2048


class _Ed25519EdDSA(EdDSAAlgorithm):
    """RFC 8037 ``EdDSA``, restricted by us to Ed25519 keys; see the module docstring."""

    security_warning = ""  # falsy: joserfc warns only when this is set


class JwsRegistry(JWSRegistry):
    """joserfc's JWS registry with a warning-free ``EdDSA`` (our keys are always Ed25519)."""

    # Built from joserfc's public list rather than copied from JWSRegistry.algorithms, which
    # is only filled once joserfc.jws has been imported.
    algorithms = {  # noqa: RUF012
        **{model.name: model for model in JWS_ALGORITHMS},
        "EdDSA": _Ed25519EdDSA(),
    }


#: Registry for verifying our own tokens (``joserfc.jwt.decode(..., registry=...)``).
JWS_REGISTRY = JwsRegistry(algorithms=list(SUPPORTED_ALGS))


def check_alg(alg: str) -> None:
    if alg not in SUPPORTED_ALGS:
        raise KeyStoreError(
            f"unsupported algorithm {alg!r}; choose one of {', '.join(SUPPORTED_ALGS)}"
        )


def check_rsa_bits(bits: int) -> None:
    if bits < MIN_RSA_BITS:
        # Checklist 49: RSA keys of at least 2048 bits.
        raise KeyStoreError(f"RSA keys must have at least {MIN_RSA_BITS} bits (got {bits})")


def generate_key(alg: str, *, rsa_bits: int = 3072) -> AsymmetricKey:
    """Generate a private key for ``alg`` with its RFC 7638 thumbprint as ``kid``."""
    check_alg(alg)
    key: AsymmetricKey
    if alg in ("RS256", "PS256"):
        check_rsa_bits(rsa_bits)
        key = RSAKey.generate_key(rsa_bits, private=True, auto_kid=True)
    elif alg == "ES256":
        key = ECKey.generate_key("P-256", private=True, auto_kid=True)
    else:
        key = OKPKey.generate_key("Ed25519", private=True, auto_kid=True)
    return key


def import_private_pem(pem: bytes, alg: str, kid: str) -> AsymmetricKey:
    """Import a stored private key through its class (joserfc warns when it must guess)."""
    check_alg(alg)
    return KEY_CLASSES[alg].import_key(pem, parameters={"kid": kid})


def import_public_jwk(data: dict[str, Any]) -> Key:
    """A verification key from a published JWK; refuses anything with private members."""
    leaked = PRIVATE_MEMBERS.intersection(data)
    if leaked:
        raise KeyStoreError(f"a published key must not carry private members {sorted(leaked)}")
    return import_key(dict(data))  # type: ignore[arg-type]


def thumbprint(public: dict[str, Any]) -> str:
    """RFC 7638 SHA-256 thumbprint of a public JWK, used as its ``kid``."""
    return import_key(dict(public)).thumbprint()  # type: ignore[arg-type]


def public_jwk(key: Key, alg: str) -> dict[str, Any]:
    """The published form: public members only, with ``kid``, ``use`` and ``alg`` set."""
    data: dict[str, Any] = {
        k: v for k, v in key.as_dict(private=False).items() if k not in PRIVATE_MEMBERS
    }
    data.update({"kid": key.kid, "use": "sig", "alg": alg})
    return data


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def signing_input(header: dict[str, Any], claims: dict[str, Any]) -> bytes:
    """``BASE64URL(header) || '.' || BASE64URL(payload)`` (RFC 7515 §7.1).

    Claims are serialized like joserfc does (compact JSON, UTF-8, datetimes in ``exp``,
    ``iat`` and ``nbf`` as NumericDate) so software and hardware keys emit identical tokens.
    The caller's dict is not modified.
    """
    payload = dict(claims)
    for name in ("exp", "iat", "nbf"):
        value = payload.get(name)
        if isinstance(value, dt.datetime):
            payload[name] = calendar.timegm(value.utctimetuple())
    head = json.dumps(header, ensure_ascii=True, separators=(",", ":")).encode("ascii")
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return f"{b64u(head)}.{b64u(body)}".encode("ascii")


def compact_jws(
    alg: str,
    kid: str,
    claims: dict[str, Any],
    header: dict[str, Any] | None,
    sign: Callable[[bytes], bytes],
) -> str:
    """Assemble a compact JWS; ``sign`` turns the signing input into the JWS signature.

    ``typ`` defaults to ``JWT`` and may be overridden (``at+jwt``, RFC 9068); ``alg`` and
    ``kid`` always come from the key, never from the caller.
    """
    hdr: dict[str, Any] = {"typ": "JWT"}
    if header:
        hdr.update(header)
    hdr["alg"] = alg
    hdr["kid"] = kid
    message = signing_input(hdr, claims)
    return f"{message.decode('ascii')}.{b64u(sign(message))}"


def _alg_model(alg: str) -> JWSAlgModel:
    check_alg(alg)
    # Taken from the table directly, not through get_alg(): see the module docstring on EdDSA.
    return JWS_REGISTRY.algorithms[alg]


class SoftwareSigningKey:
    """A private key held in process memory, signing with joserfc's algorithm objects."""

    def __init__(self, key: Key, alg: str) -> None:
        if key.kid is None:
            raise KeyStoreError("a signing key needs a kid")
        self.key = key
        self.kid: str = key.kid
        self.alg = alg
        self._model = _alg_model(alg)
        self._model.check_key(key)

    def sign_jwt(self, claims: dict[str, Any], header: dict[str, Any] | None = None) -> str:
        return compact_jws(
            self.alg, self.kid, claims, header, lambda msg: self._model.sign(msg, self.key)
        )

    def __repr__(self) -> str:
        # Never print key material, even by accident in a log line or traceback.
        return f"SoftwareSigningKey(kid={self.kid!r}, alg={self.alg!r})"

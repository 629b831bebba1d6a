"""CAS responses and the single-logout request, serialized by ElementTree.

Every value (the user, attribute values, error descriptions) goes through the serializer,
which escapes ``<``, ``&``, ``>`` and quotes; characters XML 1.0 cannot carry at all (most C0
controls, lone surrogates, U+FFFE/U+FFFF) are dropped first, so an attribute value holding
``</cas:user><cas:user>admin`` stays text and cannot forge an element (CAS 3.0 §2.5.2, §2.6).
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence

CAS_NS = "http://www.yale.edu/tp/cas"
SAMLP_NS = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML_NS = "urn:oasis:names:tc:SAML:2.0:assertion"
CONTENT_TYPE = "application/xml; charset=utf-8"

_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_text(value: object) -> str:
    """``value`` as text XML 1.0 can carry (booleans as ``true``/``false``)."""
    text = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return _NOT_XML.sub("", text)


def _serialize(root: ET.Element) -> bytes:
    data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=False)
    return data


def _response() -> ET.Element:
    return ET.Element("cas:serviceResponse", {"xmlns:cas": CAS_NS})


def success(user: str, attributes: Mapping[str, Sequence[object]] | None = None) -> bytes:
    """``<cas:authenticationSuccess>`` with the user and, for CAS 3.0, ``<cas:attributes>``
    (one element per value: a multi-valued claim repeats its element)."""
    root = _response()
    ok = ET.SubElement(root, "cas:authenticationSuccess")
    ET.SubElement(ok, "cas:user").text = xml_text(user)
    if attributes is not None:
        attrs = ET.SubElement(ok, "cas:attributes")
        for name, values in attributes.items():
            for value in values:
                ET.SubElement(attrs, f"cas:{name}").text = xml_text(value)
    return _serialize(root)


def failure(code: str, description: str) -> bytes:
    """``<cas:authenticationFailure code="…">description</cas:authenticationFailure>``."""
    root = _response()
    ET.SubElement(root, "cas:authenticationFailure", {"code": code}).text = xml_text(description)
    return _serialize(root)


def proxy_failure(code: str, description: str) -> bytes:
    """``<cas:proxyFailure>``: the answer of ``/cas/proxy`` (proxying is not offered)."""
    root = _response()
    ET.SubElement(root, "cas:proxyFailure", {"code": code}).text = xml_text(description)
    return _serialize(root)


def logout_request(session_index: str, name_id: str, now: dt.datetime) -> str:
    """The SAML 2.0 ``LogoutRequest`` of CAS single logout (CAS 3.0 Appendix C)."""
    root = ET.Element(
        "samlp:LogoutRequest",
        {
            "xmlns:samlp": SAMLP_NS,
            "xmlns:saml": SAML_NS,
            "ID": "LR-" + secrets.token_hex(16),
            "Version": "2.0",
            "IssueInstant": now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
    )
    ET.SubElement(root, "saml:NameID").text = xml_text(name_id)
    ET.SubElement(root, "samlp:SessionIndex").text = xml_text(session_index)
    return _serialize(root).decode("utf-8")

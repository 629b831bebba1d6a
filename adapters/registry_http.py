"""The one way Yitong asks a government registry service over HTTP (issue 10 item 5).

The population registry (:class:`adapters.identity.HttpRegistry`) and the enterprise registry
(:class:`adapters.enterprise.HttpEnterpriseRegistry`) are the same kind of outside system: an
operator-configured HTTPS service on the government network, reached with a client
certificate, asked one JSON question per POST.  They share this client so that both classify
failures the same way, which matters because callers act on the class:

* :class:`AdapterUnavailable` (connection error, timeout, TLS failure, 5xx, 408, 429): "try
  later"; nothing is recorded or changed;
* :class:`AdapterError` (any other status, no JSON, an answer over :data:`MAX_ANSWER_BYTES`):
  the service answered, but not usably; also nothing is recorded or changed.

A 404 is an :class:`AdapterError`, never "not found": a wrong URL must not read as "the
registry does not know this company" (a re-verification would suspend it).  Redirects are not
followed.  The URL comes from configuration, not from users, so no SSRF guard applies; it is
still limited to http(s) and the answer to a bounded size.

This module imports neither flask nor idp (docs/architecture.md).  It imports ``requests`` only
when a service is configured: a server without one need not hold it (issue 12 item 5).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Self

from adapters.base import AdapterConfigError, AdapterError, AdapterUnavailable

if TYPE_CHECKING:
    import requests

#: Registry answers are a few hundred bytes; anything this large is not one.
MAX_ANSWER_BYTES = 64 * 1024
#: The longest registry reference kept as evidence (``txn``).
MAX_REFERENCE = 64


def _session() -> requests.Session:
    import requests

    return requests.Session()


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


@dataclass
class RegistryService:
    """Connection settings of one registry service and the POST that asks it."""

    #: Named in error messages ("the identity registry answered 503").
    what: ClassVar[str] = "the registry"
    #: ``source`` when none is given: names the registry in evidence and in config errors.
    default_source: ClassVar[str] = "registry"

    url: str
    client_cert: str | None = None  # PEM file holding the certificate (and key if no key file)
    client_key: str | None = None
    ca_file: str | None = None  # the registry's CA; default: the system trust store
    connect_timeout: float = 3.0
    read_timeout: float = 5.0
    source: str = ""
    session: requests.Session = field(default_factory=_session, repr=False)

    def __post_init__(self) -> None:
        self.source = self.source or self.default_source
        if not self.url.startswith(("https://", "http://")):
            raise AdapterConfigError(self.source, "url", "must be an http(s) URL")
        if self.connect_timeout <= 0 or self.read_timeout <= 0:
            raise AdapterConfigError(self.source, "timeouts", "must be positive")
        if self.client_key and not self.client_cert:
            raise AdapterConfigError(self.source, "client_key", "needs client_cert")

    @classmethod
    def from_config(cls, config: Mapping[str, Any], source: str | None = None) -> Self:
        """Build from a plain mapping (``url``, ``client_cert``, ``client_key``, ``ca_file``,
        ``connect_timeout``, ``read_timeout`` in seconds); bad values name the setting."""
        name = source or cls.default_source
        try:
            return cls(
                url=str(config["url"]).rstrip("/"),
                client_cert=config.get("client_cert") or None,
                client_key=config.get("client_key") or None,
                ca_file=config.get("ca_file") or None,
                connect_timeout=float(config.get("connect_timeout", 3.0)),
                read_timeout=float(config.get("read_timeout", 5.0)),
                source=name,
            )
        except KeyError:
            raise AdapterConfigError(name, "url", "is required") from None
        except (TypeError, ValueError) as exc:
            if isinstance(exc, AdapterConfigError):
                raise
            raise AdapterConfigError(name, None, f"invalid value: {exc}") from None

    def post_json(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST ``body`` to ``{url}{path}`` and return the answer's JSON object."""
        import requests

        cert: str | tuple[str, str] | None = None
        if self.client_cert:
            cert = (self.client_cert, self.client_key) if self.client_key else self.client_cert
        try:
            resp = self.session.post(
                f"{self.url}{path}",
                json=dict(body),
                headers={"Accept": "application/json"},
                cert=cert,
                verify=self.ca_file or True,
                timeout=(self.connect_timeout, self.read_timeout),
                allow_redirects=False,
                stream=True,
            )
        except requests.RequestException:
            raise AdapterUnavailable(f"{self.what} is unreachable") from None
        try:
            if resp.status_code >= 500 or resp.status_code in (408, 429):
                raise AdapterUnavailable(f"{self.what} answered {resp.status_code}")
            if resp.status_code != 200:
                raise AdapterError(f"{self.what} refused the check ({resp.status_code})")
            raw = self._read_bounded(resp)
        finally:
            resp.close()
        try:
            data = json.loads(raw)
        except ValueError:
            raise AdapterError(f"{self.what} answered with no JSON") from None
        if not isinstance(data, dict):
            raise AdapterError(f"{self.what} answered with no JSON object")
        return data

    def _read_bounded(self, resp: requests.Response) -> bytes:
        import requests

        declared = resp.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > MAX_ANSWER_BYTES:
            raise AdapterError(f"{self.what} answer is too large")
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in resp.iter_content(8192):
                size += len(chunk)
                if size > MAX_ANSWER_BYTES:
                    raise AdapterError(f"{self.what} answer is too large")
                chunks.append(chunk)
        except requests.RequestException:
            raise AdapterUnavailable(f"{self.what} stopped answering") from None
        return b"".join(chunks)

    def reference_of(self, data: Mapping[str, Any]) -> str:
        """The service's own reference for this answer (kept as evidence), required."""
        reference = data.get("reference")
        if not isinstance(reference, str) or not reference or len(reference) > MAX_REFERENCE:
            raise AdapterError(f"{self.what} answer has no usable 'reference'")
        return reference


def checked_at_of(data: Mapping[str, Any]) -> str:
    """The service's time of the check when it is an ISO 8601 time, else now (it becomes
    evidence ``time`` in tokens, so free text from the service is not passed on)."""
    value = data.get("checked_at")
    if isinstance(value, str) and len(value) <= 40:
        try:
            dt.datetime.fromisoformat(value)
        except ValueError:
            return now_iso()
        return value
    return now_iso()

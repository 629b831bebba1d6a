"""What Yitong needs from outside systems, as small capability protocols.

Adapters import neither ``flask`` nor ``idp``: they take plain configuration and return plain
data, so they are testable against the real outside system alone (dex
``connector/connector.go`` is the model).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


class AdapterError(Exception):
    """The outside system answered, but not as expected (misconfiguration, bad data)."""


class AdapterUnavailable(AdapterError):
    """The outside system is down, slow or unreachable; the caller should say 'try later'."""


class AdapterConfigError(AdapterError, ValueError):
    """An adapter's configuration cannot be used; raised at start-up, never during a login.

    ``source`` and ``key`` name the offending setting (``directories.<source>.<key>``) so
    the operator can fix it without reading code.
    """

    def __init__(self, source: str, key: str | None, problem: str) -> None:
        where = f"{source}.{key}" if key else source
        super().__init__(f"{where}: {problem}")
        self.source = source
        self.key = key
        self.problem = problem


class InvalidCredentials(AdapterError):
    """The credentials were wrong, or the account is unknown or disabled at the source.

    Deliberately one class for all three, so callers cannot leak which one it was.
    """


@dataclass(frozen=True)
class Identity:
    """A person as an outside system knows them, after it proved their credentials.

    ``source`` namespaces ``key``: two sources may both have a ``jdoe``.
    """

    source: str
    key: str
    username: str
    name: str
    dn: str | None = None
    email: str | None = None
    phone: str | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)
    groups: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()


@runtime_checkable
class PasswordAuthenticator(Protocol):
    """Checks a username and password at an outside system (an LDAP directory)."""

    id: str
    display_name: str

    def authenticate(
        self,
        username: str,
        password: str,
        *,
        before_bind: Callable[[str], None] | None = None,
    ) -> Identity:
        """The identity, or raise :class:`InvalidCredentials` / :class:`AdapterUnavailable`.

        ``before_bind(key)`` runs once the name is resolved to one entry (``key`` is its stable
        id) and before the password is sent; an exception it raises ends the attempt.
        """
        ...

    def lookup(self, key: str) -> Identity | None:
        """Re-read an identity by its stable key (for sync); None when gone or disabled."""
        ...


@runtime_checkable
class MessageSender(Protocol):
    """Delivers a short text message (an SMS one-time code) to a phone number."""

    def send(self, destination: str, text: str) -> None:
        """Send, or raise :class:`AdapterUnavailable`."""
        ...


@runtime_checkable
class MailSender(Protocol):
    """Delivers an e-mail (a password-reset link) to one address."""

    def send_mail(self, destination: str, subject: str, text: str) -> None:
        """Send, or raise :class:`AdapterUnavailable` (or :class:`AdapterError` if refused)."""
        ...


@dataclass(frozen=True)
class EnterpriseRecord:
    """A company as the enterprise registry (the market regulator's register) knows it.

    ``status`` is the registry's word: ``active`` (存续), ``revoked`` (吊销) or
    ``deregistered`` (注销).
    """

    credit_code: str
    name: str
    representative_id_number: str
    status: str = "active"
    #: The registry's own reference for this answer and when it gave it (kept as evidence).
    reference: str = ""
    checked_at: str = ""
    source: str = "enterprise-registry"


@runtime_checkable
class EnterpriseRegistry(Protocol):
    """Looks up a company by unified social credit code (issue 10).

    Implementations: :class:`adapters.enterprise.LocalEnterpriseRegistry` (a synthetic
    dataset) and :class:`adapters.enterprise.HttpEnterpriseRegistry` (the real service).
    """

    def lookup(self, credit_code: str) -> EnterpriseRecord | None:
        """The registry's record, or None when the registry says it does not know the code.

        Raise :class:`AdapterUnavailable` when it cannot be asked now and
        :class:`AdapterError` when its answer cannot be used: never None for either, since
        "unknown" suspends a company at re-verification.
        """
        ...


@dataclass(frozen=True)
class LicenceCheck:
    """What the electronic business licence service (电子营业执照) said of a presentation.

    ``valid`` is its answer: the presentation is a genuine, current licence of the company
    with ``credit_code``.  ``reference`` is the service's transaction number (evidence).
    """

    valid: bool
    credit_code: str
    name: str
    source: str
    reference: str
    checked_at: str  # ISO 8601


@runtime_checkable
class BusinessLicenceVerifier(Protocol):
    """Verifies an electronic business licence presented for a company (issue 10, level L5).

    ``presentation`` is what the licence holder's app hands over (a signed licence or a
    one-time code the national licence service redeems).  An invalid licence is an answer
    (``valid=False``); an outage raises :class:`AdapterUnavailable`.
    """

    source: str

    def check_licence(self, credit_code: str, presentation: str) -> LicenceCheck:
        """Is ``presentation`` a valid electronic business licence of ``credit_code``?"""
        ...


@dataclass(frozen=True)
class RegistryCheck:
    """What an identity registry said about one person (issue 10 item 5).

    ``matched`` is the registry's answer; ``reference`` is its own record or transaction
    number (kept as evidence, never the ID number itself); ``source`` names the registry.
    """

    matched: bool
    source: str
    reference: str
    checked_at: str  # ISO 8601, the registry's time of the check
    details: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class IdentityVerifier(Protocol):
    """Checks a person against the population registry (name + resident ID, face photo).

    Implementations: :class:`adapters.identity.LocalRegistry` (a synthetic dataset for
    development and tests) and :class:`adapters.identity.HttpRegistry` (the real service).
    A "no match" is an answer (``matched=False``); an outage raises
    :class:`AdapterUnavailable`; a malformed answer raises :class:`AdapterError`.
    """

    source: str

    def check_identity(self, name: str, id_number: str) -> RegistryCheck:
        """Do this name and this resident ID number belong together in the registry?"""
        ...

    def check_face(self, id_number: str, image: bytes) -> RegistryCheck:
        """Is the person in ``image`` the one the registry photo of ``id_number`` shows?"""
        ...

"""Department LDAP directories (OpenLDAP, Active Directory) behind ``PasswordAuthenticator``.

The package is split at its seams: :mod:`.config` (the ``[directories.<id>]`` table),
:mod:`.dn` (DN comparison and filter escaping), :mod:`.pool` (connections, circuit breakers,
failover, time budget) and :mod:`.directory` (search-then-bind login, lookup, groups and the
sync listing).  This module re-exports the public names, so ``from adapters.ldap import X``
is the import to use.  Never import ``flask`` or ``idp`` anywhere in this package.
"""

from __future__ import annotations

from adapters.ldap.config import (
    DEFAULT_ATTRIBUTES,
    DirectoryConfig,
    GroupMode,
    IdentityCheck,
    ServerUrl,
    TlsMode,
)
from adapters.ldap.directory import (
    MAX_PASSWORD_LENGTH,
    MAX_USERNAME_LENGTH,
    CheckStep,
    DirectoryListing,
    LdapDirectory,
)
from adapters.ldap.dn import normalize_dn, rdn_value
from adapters.ldap.pool import ConnectionPool, ServerHealth

__all__ = [
    "DEFAULT_ATTRIBUTES",
    "MAX_PASSWORD_LENGTH",
    "MAX_USERNAME_LENGTH",
    "CheckStep",
    "ConnectionPool",
    "DirectoryConfig",
    "DirectoryListing",
    "GroupMode",
    "IdentityCheck",
    "LdapDirectory",
    "ServerHealth",
    "ServerUrl",
    "TlsMode",
    "normalize_dn",
    "rdn_value",
]

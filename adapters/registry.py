"""Settings -> adapter instances: the one place that turns configuration tables into adapters.

The application factory calls :func:`build_directories` once at start-up, so that every
configuration mistake in a ``[directories.<id>]`` table stops the start with a message naming
the directory and the key (issue 6: "all configuration errors are reported clearly at
start-up") instead of surfacing as a failed login later.

:mod:`adapters.ldap` (with ``ldap3`` and pyasn1, about 4 MB per worker) is imported only when
a directory is configured: most servers have none (issue 12 item 5).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from adapters.base import AdapterConfigError

if TYPE_CHECKING:
    from adapters.ldap import DirectoryConfig, LdapDirectory

__all__ = ["AdapterConfigError", "DirectoryConfigErrors", "build_directories", "parse_directories"]


class DirectoryConfigErrors(AdapterConfigError):
    """Several directory tables are wrong at once; ``errors`` lists each, in table order.

    Reporting all of them in one start-up beats fixing them one restart at a time.
    """

    def __init__(self, errors: list[AdapterConfigError]) -> None:
        super().__init__("directories", None, "; ".join(str(e) for e in errors))
        self.errors = errors


def parse_directories(settings_directories: Mapping[str, Any]) -> dict[str, DirectoryConfig]:
    """Parse every ``[directories.<id>]`` table; raise one error listing every problem."""
    if not isinstance(settings_directories, Mapping):
        raise AdapterConfigError("directories", None, "expected a table of directory tables")
    if not settings_directories:
        return {}
    from adapters.ldap import DirectoryConfig

    configs: dict[str, DirectoryConfig] = {}
    errors: list[AdapterConfigError] = []
    for directory_id, table in settings_directories.items():
        try:
            configs[str(directory_id)] = DirectoryConfig.from_mapping(str(directory_id), table)
        except AdapterConfigError as exc:
            errors.append(exc)
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise DirectoryConfigErrors(errors)
    return configs


def build_directories(settings_directories: Mapping[str, Any]) -> dict[str, LdapDirectory]:
    """One :class:`LdapDirectory` per configured department, keyed by directory id.

    Building opens no connection: a directory that is down at start-up must not stop the
    provider (its breaker deals with it at login time); ``yitong ldap test`` checks reachability.
    """
    configs = parse_directories(settings_directories)
    if not configs:
        return {}
    from adapters.ldap import LdapDirectory

    return {directory_id: LdapDirectory(config) for directory_id, config in configs.items()}

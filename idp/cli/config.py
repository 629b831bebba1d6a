"""``yitong config docs``: the settings reference (docs/configuration.md is generated from it)."""

from __future__ import annotations

import click

from idp.cli.common import out_lines
from idp.config import settings_reference


@click.group("config")
def config() -> None:
    """Configuration helpers."""


@config.command("docs")
def config_docs() -> None:
    """Print the settings reference (docs/configuration.md is generated from it)."""
    out_lines(settings_reference().splitlines())

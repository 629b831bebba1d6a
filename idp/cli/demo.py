"""``yitong demo``: set up the demo, then hand over to the launcher that serves it.

``--no-serve`` only sets up (:func:`idp.demo.setup`) and prints the login.  Serving replaces
this process with ``python -m examples.launcher`` (examples/launcher.py starts the IdP and the
two relying parties): the launcher then gets Ctrl-C and SIGTERM itself and its exit status
is the command's.  It needs the source checkout, where the examples live.
"""

from __future__ import annotations

import os
import sys

import click

from idp.cli.common import CliError, out, out_lines
from idp.demo import LAUNCHER, REPO_ROOT, DemoError, DemoLayout, demo_settings, describe, setup


def _exec_launcher() -> None:
    if not LAUNCHER.is_file():
        raise CliError(
            f"the demo needs a source checkout: {LAUNCHER} is missing "
            "(the demo relying parties are not installed with the package)"
        )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "examples.launcher"], env)  # noqa: S606


@click.command("demo")
@click.option("--no-serve", is_flag=True, help="only set up (used by tests)")
def demo(no_serve: bool) -> None:
    """Set up the demo (IdP, portal, service, a citizen) and serve all three."""
    if not no_serve:
        _exec_launcher()
        return
    layout = DemoLayout()
    try:
        settings = demo_settings(layout)
        state = setup(settings, layout)
    except DemoError as exc:
        raise CliError(str(exc)) from None
    for item in state.created:
        out(f"created {item}")
    out_lines(describe(state))

"""docs/configuration.md and the README's table are the settings reference, generated.

Every setting is documented where it is declared (``idp/config.py``); ``yitong config docs``
prints the reference.  When a setting changes, regenerate both copies with
``python -m tests.test_config_docs``.
"""

from __future__ import annotations

import re
from pathlib import Path

from idp.config import settings_reference

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "configuration.md"
README = ROOT / "README.md"
BLOCK = re.compile(r"(<!-- settings:begin[^>]*-->\n)(.*?)(<!-- settings:end -->)", re.S)
HOW = "regenerate with: python -m tests.test_config_docs"


def test_configuration_md_is_the_settings_reference() -> None:
    assert DOC.read_text("utf-8") == settings_reference(), HOW


def test_readme_table_is_the_settings_reference() -> None:
    match = BLOCK.search(README.read_text("utf-8"))
    assert match, "README.md lacks the <!-- settings:begin --> … <!-- settings:end --> block"
    assert match.group(2) == settings_reference(), HOW


def regenerate() -> None:
    reference = settings_reference()
    DOC.write_text(reference, "utf-8")
    text = README.read_text("utf-8")
    README.write_text(BLOCK.sub(lambda m: m.group(1) + reference + m.group(3), text), "utf-8")


if __name__ == "__main__":
    regenerate()

"""The compiled message catalogues ship with the code (issue 15 item 6).

A plain ``pip install`` (wheel, sdist or editable) runs no ``make``: the ``.mo`` files are in
the repository and in the package data, and this test fails when one of them no longer says
what its ``.po`` says (run ``make translations`` and commit the result).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

TRANSLATIONS = Path(__file__).resolve().parents[1] / "idp" / "translations"
LOCALES = sorted(p.name for p in TRANSLATIONS.iterdir() if p.is_dir())


def _messages(catalog: object) -> dict[object, object]:
    return {m.id: m.string for m in catalog if m.id and m.string and not m.fuzzy}  # type: ignore[attr-defined]


@pytest.mark.parametrize("locale", LOCALES)
def test_compiled_catalogue_matches_its_source(locale: str) -> None:
    folder = TRANSLATIONS / locale / "LC_MESSAGES"
    with (folder / "messages.po").open("rb") as f:
        source = _messages(read_po(f, locale=locale))
    with (folder / "messages.mo").open("rb") as f:
        compiled = _messages(read_mo(f))
    assert compiled == source


def test_chinese_pages_without_make(client) -> None:  # type: ignore[no-untyped-def]
    """Served in Chinese from the committed catalogue (the default locale)."""
    html = client.get("/login").get_data(as_text=True)
    assert 'lang="zh-CN"' in html and "登录" in html


def test_a_built_wheel_carries_the_compiled_catalogues(tmp_path: Path) -> None:
    """pip builds the wheel with setuptools, not ``make``: the ``.mo`` files must be in it.

    Built from a copy of the packages (so the work tree gets no ``build/``), without
    isolation or network: a few seconds.
    """
    import shutil
    import subprocess
    import sys
    import zipfile

    root = TRANSLATIONS.parents[1]
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(root / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in ("idp", "adapters", "admin", "keys"):
        shutil.copytree(root / package, src / package, ignore=ignore)
    subprocess.run(
        [sys.executable, "-c", "from setuptools import build_meta as b; b.build_wheel('../out')"],
        cwd=src,
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "out").glob("yitong-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for locale in LOCALES:
        assert f"idp/translations/{locale}/LC_MESSAGES/messages.mo" in names
    assert "idp/templates/base.html" in names and "idp/static/style.css" in names

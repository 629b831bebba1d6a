"""No English developer string reaches a Chinese page (issue 15 item 6).

Three walks, no browser: the message catalogue (every string marked for translation in the
code and the templates has Chinese), the templates (no text or attribute a person reads is
left outside ``_()``), and the error catalogue (every error class and status a page can show
is explained in :data:`idp.messages.PAGE_ERRORS`; every message raised below the web layer is
listed in :mod:`idp.messages`, so it is extracted and translated).  The pages as drawn, in
Chinese and English, are read in Chromium by ``tests/browser/test_accessibility.py`` with the
same rule (:func:`english_words`).
"""

from __future__ import annotations

import ast
import inspect
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

import idp.errors
from idp import messages
from idp.errors import OAuth2Error

ROOT = Path(__file__).resolve().parents[1]
IDP = ROOT / "idp"
CJK = re.compile(r"[\u3400-\u9fff]")
WORD = re.compile(r"[A-Za-z]{2,}")
# Text that may stay Latin on a Chinese page: an address, an e-mail, a code in a <code>.
NOT_WORDS = re.compile(r"[\w.+-]+@[\w.-]+|https?://\S+|\b[\w-]+\.(?:js|css|html)\b")
#: Error pages can be drawn for these statuses (Flask/werkzeug and our handlers).
PAGE_STATUSES = (400, 403, 404, 405, 413, 414, 429, 500, 503)


#: Latin words Chinese writes as they are (政务服务App).
LOANWORDS = frozenset({"App", "Unicode"})


def english_words(text: str) -> list[str]:
    """Latin words in ``text``: addresses, e-mail addresses, acronyms a Chinese sentence
    uses as they are (USB, NFC, JSON, SMS) and :data:`LOANWORDS` aside."""
    words = WORD.findall(NOT_WORDS.sub(" ", text))
    return [w for w in words if not w.isupper() and w not in LOANWORDS]


def _chinese() -> dict[str, str]:
    with (IDP / "translations" / "zh" / "LC_MESSAGES" / "messages.po").open("rb") as f:
        return {m.id: m.string for m in read_po(f, locale="zh") if m.id and not m.fuzzy}


def _extracted() -> list[tuple[str, str]]:
    """(message id, file) for every string marked for translation, as ``make`` extracts."""
    methods = [("**.py", "python"), ("**/templates/**.html", "jinja2")]
    out = []
    for filename, _lineno, message, _comments, _context in extract_from_dir(
        str(IDP), method_map=methods, options_map={"**/templates/**.html": {}}
    ):
        for msgid in message if isinstance(message, tuple) else (message,):
            if msgid:
                out.append((msgid, filename))
    return out


def test_every_marked_string_has_chinese() -> None:
    chinese = _chinese()
    extracted = _extracted()
    assert len(extracted) > 200  # the walk found the code and the templates
    missing = [
        (msgid, where)
        for msgid, where in extracted
        if WORD.search(msgid) and not CJK.search(chinese.get(msgid, ""))
    ]
    assert not missing, "no Chinese for (run pybabel, translate, compile):\n" + "\n".join(
        f"  {where}: {msgid!r}" for msgid, where in missing
    )


class _TemplateText(HTMLParser):
    """Text and human-read attributes of a template, skipping ``lang="en"``/``translate="no"``
    subtrees, scripts and styles (the Jinja code is blanked out before parsing)."""

    HUMAN_ATTRS = ("title", "alt", "placeholder", "aria-label", "aria-description")
    VOID = frozenset(("br", "input", "img", "meta", "link", "hr", "col", "source", "wbr"))

    def __init__(self) -> None:
        super().__init__()
        self.skipping: list[str] = []
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if not self.skipping:
            self.found += [values[a] or "" for a in self.HUMAN_ATTRS if a in values]
            if tag == "input" and values.get("type") in ("submit", "button"):
                self.found.append(values.get("value") or "")
        if tag in self.VOID:
            return
        exempt = values.get("lang") == "en" or values.get("translate") == "no"
        if self.skipping or exempt or tag in ("script", "style", "code"):
            self.skipping.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if self.skipping and self.skipping[-1] == tag:
            self.skipping.pop()

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.found.append(data)


def _without_jinja(source: str) -> str:
    source = re.sub(r"\{#.*?#\}", " ", source, flags=re.S)
    return re.sub(r"\{\{.*?\}\}|\{%.*?%\}", " ", source, flags=re.S)


@pytest.mark.parametrize(
    "template", sorted((IDP / "templates").rglob("*.html")), ids=lambda p: p.name
)
def test_templates_have_no_untranslated_text(template: Path) -> None:
    parser = _TemplateText()
    parser.feed(_without_jinja(template.read_text("utf-8")))
    words = [w for text in parser.found for w in english_words(text)]
    assert not words, f"{template.name}: text outside _(): {words}"


def _error_classes() -> list[type[OAuth2Error]]:
    return [
        cls
        for _name, cls in inspect.getmembers(idp.errors, inspect.isclass)
        if issubclass(cls, OAuth2Error) and getattr(cls, "error", None)
    ]


def test_every_error_a_page_can_show_is_explained_in_chinese() -> None:
    chinese = _chinese()
    classes = _error_classes()
    assert len(classes) >= 20
    unexplained = [cls.error for cls in classes if cls.error not in messages.PAGE_ERRORS]
    assert not unexplained, f"add to idp.messages.PAGE_ERRORS: {unexplained}"
    for status in PAGE_STATUSES:
        assert messages.explain(None, status) is not messages.GENERAL or status == 400, status
    explanations = {*messages.PAGE_ERRORS.values(), messages.GENERAL}
    for explanation in explanations:
        for text in (explanation.title, explanation.what, explanation.todo):
            assert CJK.search(chinese.get(text, "")), f"no Chinese for {text!r}"


_RAISED = ("PasswordPolicyError", "IdentifierError", "RegistrationError")


def _raised_literals() -> list[tuple[str, str]]:
    """(message, file) for each string literal that code below the pages raises for people:
    ``PasswordPolicyError("...")``, ``IdentifierError("...")`` and registration problems."""
    out = []
    for path in IDP.rglob("*.py"):
        tree = ast.parse(path.read_text("utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") in _RAISED:
                first = node.args[0] if node.args else None
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    out.append((first.value, path.name))
            if (
                isinstance(node, ast.Assign)
                and isinstance(node.targets[0], ast.Subscript)
                and getattr(node.targets[0].value, "id", "") == "problems"
                and isinstance(node.value, ast.Tuple)
                and isinstance(node.value.elts[0], ast.Constant)
            ):
                out.append((node.value.elts[0].value, path.name))
    return out


def test_messages_raised_below_the_pages_are_listed_for_translation() -> None:
    raised = _raised_literals()
    assert len(raised) >= 15
    chinese = _chinese()
    unlisted = [(m, f) for m, f in raised if m not in messages.MESSAGES]
    assert not unlisted, f"list in idp.messages.MESSAGES: {unlisted}"
    assert all(CJK.search(chinese.get(m, "")) for m in messages.MESSAGES)


#: Calls whose first argument a person reads: it must be a translation, never a literal.
_SHOWN = ("error_page", "Refused", "page_error")


def test_no_literal_text_is_handed_to_a_page() -> None:
    literal = []
    for path in IDP.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", getattr(node.func, "attr", ""))
            args = list(node.args[:1]) + [k.value for k in node.keywords if k.arg == "message"]
            if name in _SHOWN or (name == "json_error" and node.keywords):
                for arg in args if name != "json_error" else args[1:]:
                    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                        literal.append(f"{path.name}:{node.lineno}: {arg.value!r}")
    assert not literal, "translate with _():\n" + "\n".join(literal)


def test_english_words_spots_english_and_spares_addresses() -> None:
    words = english_words("页面已过期 redirect_uri is not registered")
    assert words == ["redirect", "uri", "is", "not", "registered"]
    assert english_words("请发送至 lisi@example.cn 或访问 https://gov.example/a") == []
    assert english_words("安全密钥（USB 或 NFC）") == []


def test_every_policy_description_is_marked_and_has_chinese() -> None:
    """The console's policies page shows each policy's ``doc`` through ``_()``: every one is
    extracted from :mod:`idp.interaction.policies` and translated in the zh catalogue."""
    from idp.interaction.policies import DEFINITIONS

    docs = {d.doc for d in DEFINITIONS.values()}
    assert len(docs) >= 30
    extracted = {msgid for msgid, where in _extracted() if where.endswith("policies.py")}
    chinese = _chinese()
    assert docs - extracted == set(), "mark with N_() in idp/interaction/policies.py"
    untranslated = sorted(d for d in docs if not CJK.search(chinese.get(d, "")))
    assert not untranslated, f"no Chinese for: {untranslated}"

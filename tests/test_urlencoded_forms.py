"""The direct urlencoded parse (idp.urlencoded) answers exactly as Werkzeug's own parser.

Each case builds one WSGI environ twice and hands it to the app's request class with and
without :class:`~idp.urlencoded.UrlencodedForms`; the form, the files, what ``get_data``
returns afterwards, what is left unread in ``wsgi.input`` and any exception must be the same.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask, request
from hypothesis import given, settings
from hypothesis import strategies as st
from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge
from werkzeug.wrappers import Request as WerkzeugRequest

from idp.app import _Request
from idp.request_guards import install_request_guards
from idp.urlencoded import URLENCODED, UrlencodedForms, with_urlencoded_forms

FAST = with_urlencoded_forms(_Request)
LIMIT = 256 * 1024


class _Failing(io.RawIOBase):
    """A ``wsgi.input`` whose reads fail, as a reset connection's do."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        raise OSError("connection reset")


def _environ(
    body: bytes | io.RawIOBase,
    *,
    length: str | None = "auto",
    mimetype: str = URLENCODED,
    terminated: bool = False,
    extra: dict[str, str] | None = None,
) -> dict[str, Any]:
    stream = io.BytesIO(body) if isinstance(body, bytes) else body
    env: dict[str, Any] = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/token",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "wsgi.url_scheme": "http",
        "wsgi.input": stream,
        "CONTENT_TYPE": mimetype,
        **(extra or {}),
    }
    if length == "auto":
        assert isinstance(body, bytes)
        env["CONTENT_LENGTH"] = str(len(body))
    elif length is not None:
        env["CONTENT_LENGTH"] = length
    if terminated:
        env["wsgi.input_terminated"] = True
    return env


def _outcome(
    cls: type[WerkzeugRequest],
    make: Callable[[], dict[str, Any]],
    before: Callable[[WerkzeugRequest], Any] | None = None,
) -> tuple[Any, ...]:
    env = make()
    source = env["wsgi.input"]
    req = cls(env)
    try:
        first = before(req) if before else None
        form = list(req.form.items(multi=True))
    except Exception as exc:  # the exception is the outcome compared
        return ("raised", type(exc))
    files = list(req.files.items(multi=True))
    try:
        data: Any = (req.get_data(), req.get_data(as_text=True))
    except Exception as exc:  # likewise
        data = (type(exc), None)
    try:
        left = source.read()
    except OSError:
        left = None
    return ("parsed", first, form, files, *data, left)


def _same(make: Callable[[], dict[str, Any]], **kw: Any) -> tuple[Any, ...]:
    """The outcome of the fast class, asserted equal to Werkzeug's."""
    fast = _outcome(FAST, make, **kw)
    assert fast == _outcome(_Request, make, **kw)
    return fast


# ------------------------------------------------------------------ random bodies
PIECES = [
    b"a",
    b"b",
    b"=",
    b"&",
    b"&&",
    b";",
    b"+",
    b"%",
    b"%2",
    b"%20",
    b"%2B",
    b"%26",
    b"%3D",
    b"%ff",
    b"%FF",
    b"%C3",
    b"%c3%a9",
    b"%e4%b8%ad",
    b"%00",
    b"%zz",
    b"\xc3\xa9",
    b"\xe4\xb8\xad",
    b"\xff",
    b"\xc3",
    b" ",
    b"\x00",
    b"\r\n",
    b"\xed\xa0\x80",  # an encoded surrogate: not UTF-8
]

bodies = st.one_of(
    st.lists(st.sampled_from(PIECES), max_size=30).map(b"".join),
    st.binary(max_size=60),
)


@settings(max_examples=600, deadline=None)
@given(bodies, st.booleans())
def test_random_bodies_parse_as_werkzeug_does(body: bytes, terminated: bool) -> None:
    _same(lambda: _environ(body, terminated=terminated))


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"a=1&a=2&b=", [("a", "1"), ("a", "2"), ("b", "")]),
        (b"a+b=c+d%2Be", [("a b", "c d+e")]),
        (b"=x&&y&;=z", [("", "x"), ("y", ""), (";", "z")]),
        (b"s=%FF%c3%a9", [("s", "%FF\u00e9")]),
        (b"s=\xff", []),  # a body that is not UTF-8: an empty form, as Werkzeug gives
        (b"n=%00", [("n", "\x00")]),
    ],
)
def test_known_bodies(body: bytes, expected: list[tuple[str, str]]) -> None:
    outcome = _same(lambda: _environ(body))
    assert outcome[2] == expected


# ------------------------------------------------------------------ limits and odd streams
def test_over_max_content_length_is_413() -> None:
    body = b"a=" + b"x" * LIMIT
    assert _same(lambda: _environ(body)) == ("raised", RequestEntityTooLarge)
    assert _same(lambda: _environ(b"a=1", length=str(LIMIT + 1))) == (
        "raised",
        RequestEntityTooLarge,
    )


def test_at_max_content_length_is_parsed() -> None:
    body = b"a=" + b"x" * (LIMIT - 2)
    assert _same(lambda: _environ(body))[2] == [("a", "x" * (LIMIT - 2))]


def test_form_parts_and_memory_limits_are_multipart_only() -> None:
    """Werkzeug applies max_form_parts and max_form_memory_size to multipart bodies only."""
    many = b"&".join(b"k%d=v" % i for i in range(_Request._max_form_parts + 50))
    assert len(_same(lambda: _environ(many))[2]) == _Request._max_form_parts + 50


def test_short_body_is_a_disconnect() -> None:
    make = lambda: _environ(b"a=1", length="10")  # noqa: E731
    assert _same(make) == ("raised", ClientDisconnected)


def test_short_body_of_a_terminated_stream_is_what_arrived() -> None:
    assert _same(lambda: _environ(b"a=1", length="10", terminated=True))[2] == [("a", "1")]


def test_longer_body_reads_to_content_length_or_to_the_end() -> None:
    outcome = _same(lambda: _environ(b"a=1&b=2", length="3"))
    assert outcome[2] == [("a", "1")] and outcome[6] == b"&b=2"
    # A stream the server terminates is read to its end (Werkzeug), past Content-Length.
    outcome = _same(lambda: _environ(b"a=1&b=2", length="3", terminated=True))
    assert outcome[2] == [("a", "1"), ("b", "2")]
    # Past max_content_length Werkzeug's parser stops at the limit; the next read is a 413.
    big = b"a=" + b"x" * LIMIT
    outcome = _same(lambda: _environ(big, length="3", terminated=True))
    assert outcome[2] == [("a", "x" * (LIMIT - 2))] and outcome[4] is RequestEntityTooLarge


@pytest.mark.parametrize("terminated", [False, True])
def test_failing_read_is_a_disconnect(terminated: bool) -> None:
    make = lambda: _environ(_Failing(), length="5", terminated=terminated)  # noqa: E731
    assert _same(make) == ("raised", ClientDisconnected)


@pytest.mark.parametrize(
    "env",
    [
        {"length": None},
        {"length": None, "terminated": True},
        {"length": None, "extra": {"HTTP_TRANSFER_ENCODING": "chunked"}, "terminated": True},
        {"length": "abc"},
        {"length": " 3"},
        {"length": "-1"},
        {"length": "\u0663"},  # an Arabic-Indic three: a digit, but not ASCII
        {"mimetype": "application/x-www-form-urlencoded; charset=latin-1"},
        {"mimetype": "Application/X-WWW-Form-Urlencoded"},
        {"mimetype": "application/x-url-encoded"},
        {"mimetype": "text/plain"},
        {"mimetype": ""},
    ],
)
def test_other_requests_go_to_werkzeug(env: dict[str, Any]) -> None:
    _same(lambda: _environ(b"a=%C3%A9&b=+", **env))


def test_get_data_before_and_after_the_form() -> None:
    body = b"a=1&b=%20"
    before = _same(lambda: _environ(body), before=lambda r: r.get_data())
    assert before[1] == body and before[4] == body  # cached, then parsed from the cache
    after = _same(lambda: _environ(body))
    assert after[2] == [("a", "1"), ("b", " ")] and after[4] == b""  # consumed by the parse
    uncached = _same(lambda: _environ(body), before=lambda r: r.get_data(cache=False))
    assert uncached[1] == body and uncached[2] == []
    opened = _same(lambda: _environ(body), before=lambda r: r.stream.read(2))
    assert opened[2] == [("1", ""), ("b", " ")]  # the rest after "a="


def test_shallow_request_refuses_the_stream() -> None:
    env = _environ(b"a=1")
    with pytest.raises(RuntimeError):
        _ = FAST(env, shallow=True).form


# ------------------------------------------------------------------ in the app
def test_the_app_request_class_parses_directly_under_flask() -> None:
    app = Flask(__name__)
    app.request_class = _Request
    install_request_guards(app)
    assert issubclass(app.request_class, UrlencodedForms)
    assert issubclass(app.request_class, _Request)
    assert with_urlencoded_forms(app.request_class) is app.request_class
    app.debug = True
    seen: dict[str, Any] = {}

    @app.post("/t")
    def view() -> str:
        seen["form"] = list(request.form.items(multi=True))
        seen["files"] = type(request.files).__qualname__
        return "ok"

    response = app.test_client().post("/t", data={"a": "1", "b": "x y"})
    assert response.status_code == 200
    assert seen["form"] == [("a", "1"), ("b", "x y")]
    # Flask's own _load_form_data still runs around ours: its debug-mode files helper.
    assert seen["files"].endswith("attach_enctype_error_multidict.<locals>.newcls")

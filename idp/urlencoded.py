"""A direct parse of small ``application/x-www-form-urlencoded`` bodies (issue 12).

Every token, introspection and revocation request, and every login POST, carries a form of a
few hundred bytes.  Werkzeug parses it through a :class:`~werkzeug.formparser.FormDataParser`
built for the request, a :class:`~werkzeug.wsgi.LimitedStream` over ``wsgi.input`` and the
``content_length`` and ``stream`` properties: about 8 % of a client-credentials request's
CPU under the profiler, of which the parse itself (``parse_qsl``) is under a third.

:class:`UrlencodedForms` reads the ``Content-Length`` bytes from ``wsgi.input`` itself and
parses them exactly as Werkzeug 3.1's ``FormDataParser._parse_urlencoded`` does:

- the body is decoded as strict UTF-8; a body that is not UTF-8 gives an empty form (the
  parser's ``ValueError``, which Werkzeug's silent parser turns into empty data);
- ``parse_qsl(keep_blank_values=True, errors="werkzeug.url_quote")``: ``+`` is a space, empty
  values are kept, ``&`` is the only separator (``;`` is data), and a %-escape that is not
  UTF-8 stays as the escape (``%FF``), not U+FFFD;
- ``max_form_memory_size`` and ``max_form_parts`` do not apply to this type (Werkzeug applies
  them to ``multipart/form-data`` only), ``max_content_length`` does (413).

Everything else is Werkzeug's own code, unchanged: another content type, no or a chunked
``Content-Length``, one over ``max_content_length`` (Werkzeug raises the 413), a stream
already opened or a body already read by ``get_data``, a shallow request.  So is a body that
does not end where ``Content-Length`` says (shorter: a client that went away; or, where the
server terminates the stream itself, longer): the bytes read are put back in front of
``wsgi.input`` and Werkzeug reads them again, so its answer (400 ``ClientDisconnected``,
a 413, or a form of what arrived) is the same as without this class.

After the form is parsed, ``stream`` is empty and ``get_data()`` returns ``b""``, as with
Werkzeug (whose stream was consumed by its parser).

The class sits between Flask's request and Werkzeug's in the method order
(:func:`with_urlencoded_forms`), so Flask's own ``_load_form_data`` (its debug-mode
``files`` helper) still runs around this one.
"""

from __future__ import annotations

import io
from typing import IO, Any
from urllib.parse import parse_qsl

from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import ClientDisconnected
from werkzeug.wrappers import Request as WerkzeugRequest

#: The one content type parsed here (Werkzeug lower-cases ``mimetype``).
URLENCODED = "application/x-www-form-urlencoded"


class _Replay(io.RawIOBase):
    """``wsgi.input`` with the bytes already taken from it put back in front."""

    def __init__(self, head: bytes, rest: IO[bytes]) -> None:
        super().__init__()
        self._head = memoryview(head)
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class UrlencodedForms(WerkzeugRequest):
    """Werkzeug's request with the direct parse of urlencoded bodies (see the module)."""

    def _load_form_data(self) -> None:
        d = self.__dict__
        if "form" in d:
            return
        environ = self.environ
        length = environ.get("CONTENT_LENGTH")
        limit = self.max_content_length
        if (
            not length
            or not (length.isascii() and length.isdigit())
            or "HTTP_TRANSFER_ENCODING" in environ
            or limit is None
            or int(length) > limit
            or self.shallow
            or "stream" in d
            or "_cached_data" in d
            or self.mimetype != URLENCODED
        ):
            super()._load_form_data()
            return
        size = int(length)
        source: IO[bytes] = environ["wsgi.input"]
        try:
            body = source.read(size)
            # A server that terminates the stream itself (gunicorn) has Werkzeug read to its
            # end, not to Content-Length: one more byte tells whether the two differ.
            if len(body) == size and "wsgi.input_terminated" in environ:
                body += source.read(1)
        except (OSError, ValueError):
            # What Werkzeug's LimitedStream answers to a read that fails.
            raise ClientDisconnected() from None
        if len(body) != size:
            environ["wsgi.input"] = _Replay(body, source)
            super()._load_form_data()
            return
        storage = self.parameter_storage_class
        form: MultiDict[str, str]
        try:
            form = storage(
                parse_qsl(body.decode(), keep_blank_values=True, errors="werkzeug.url_quote")
            )
        except ValueError:  # not UTF-8: Werkzeug's silent parser gives empty data
            form = storage()
        d["stream"], d["form"], d["files"] = io.BytesIO(), form, storage()


def with_urlencoded_forms(request_class: type[WerkzeugRequest]) -> type[WerkzeugRequest]:
    """``request_class`` with :class:`UrlencodedForms` right above Werkzeug's request.

    Listed after ``request_class`` among the bases, the mixin comes after every class of
    ``request_class`` but Werkzeug's in the method order: Flask's ``_load_form_data`` calls
    it through ``super()``, and the app's own class keeps its settings (the body limits).
    """
    if issubclass(request_class, UrlencodedForms):
        return request_class
    return type(request_class.__name__, (request_class, UrlencodedForms), {})

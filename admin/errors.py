"""The one error of the admin service layer (issue 11): refused input, an RFC error code and
a status; the API answers it as JSON, the console as a page, the command line on stderr."""

from __future__ import annotations

from idp.errors import InvalidRequestError, OAuth2Error


class AdminInputError(Exception):
    """Refused admin input: ``invalid_request`` with ``status`` (404 for what does not exist),
    or ``temporarily_unavailable`` when an outside system is down.  RFC error codes only."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        error: type[OAuth2Error] = InvalidRequestError,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.error = error

    def as_error(self) -> OAuth2Error:
        return self.error(self.message)

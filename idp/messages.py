"""What people read when something fails: messages raised outside a request, and the plain
explanation of every error a page can show (issue 15 item 6).

Code below the web layer (accounts, identifiers, passwords) raises plain English so that it
needs no Flask; listing its messages here lets the catalogue extractor find them, and pages
translate them.  Protocol errors (:mod:`idp.errors`) carry ASCII descriptions for developers;
a person sees instead the explanation of the error's code from :data:`PAGE_ERRORS`: what
happened and what to do, in the page's language.  ``tests/test_page_language.py`` fails when
an error class, a status or a message here has no Chinese.
"""

from __future__ import annotations

from dataclasses import dataclass


def N_(text: str) -> str:
    """Mark ``text`` for the extractor; translated where it is shown."""
    return text


MESSAGES = (
    N_("name is required (at most 100 characters)"),
    N_("resident ID number must have 18 characters"),
    N_("resident ID number must be 17 digits and a digit or X"),
    N_("resident ID number has an invalid region code"),
    N_("resident ID number has an invalid birth date"),
    N_("resident ID number has an impossible birth date"),
    N_("resident ID number check character does not match"),
    N_("unified social credit code must have 18 characters"),
    N_("unified social credit code has a character outside GB 32100"),
    N_("unified social credit code has an invalid region code"),
    N_("organization code check character does not match (GB 11714)"),
    N_("unified social credit code check character does not match"),
    N_("phone must be a mainland mobile number (11 digits, 13x-19x)"),
    N_("e-mail address is not valid"),
    N_("password must have at least %(n)d characters"),
    N_("password must have at most %(n)d characters"),
    N_("password is too common; choose another"),
    N_("password must not contain your name, phone or ID number"),
    N_("password repeats too few characters"),
    N_("password must not contain the name of a department, place or this service"),
    N_("this password appeared in a data breach elsewhere; choose another"),
    N_("an account with this ID number already exists"),
    N_("an account with this phone number already exists"),
    N_("an account with this e-mail address already exists"),
)


@dataclass(frozen=True)
class Explanation:
    """A failure in plain words: a heading, what happened, what to do (all message ids)."""

    title: str
    what: str
    todo: str


SERVICE_REQUEST = Explanation(
    N_("This sign-in request cannot be used"),
    N_(
        "The website or app that sent you here asked for something Yitong cannot accept. "
        "Nothing you did caused this."
    ),
    N_(
        "Go back to that website or app and try again. If this keeps happening, contact its "
        "help desk and give them the reference number below."
    ),
)
SIGN_IN_AGAIN = Explanation(
    N_("Please sign in again"),
    N_("Your sign-in has ended, or this step needs a stronger sign-in."),
    N_("Go back to the website or app you were using and sign in again."),
)
DENIED = Explanation(
    N_("You cannot continue here"),
    N_("The sign-in was cancelled, or this service may not use what it asked for."),
    N_("Go back to the website or app you were using and start again."),
)
BUSY = Explanation(
    N_("Please wait a moment"),
    N_("There have been too many attempts in a short time, or the service is busy."),
    N_("Wait a minute, then try again."),
)
OUR_FAULT = Explanation(
    N_("Something went wrong on our side"),
    N_("The problem has been recorded. Nothing you did caused it."),
    N_(
        "Try again in a few minutes. If it keeps happening, call the help desk and give them "
        "the reference number below."
    ),
)
EXPIRED = Explanation(
    N_("This page has expired"),
    N_("For your safety, a form left open for a long time, or sent twice, no longer works."),
    N_("Go back, reload the page and try again."),
)
NOT_FOUND = Explanation(
    N_("Page not found"),
    N_("The address may be mistyped, or the page has moved."),
    N_("Check the address, or start again from the home page."),
)
NOT_ALLOWED = Explanation(
    N_("This page cannot be opened this way"),
    N_("The page was reached by a link or button it does not accept."),
    N_("Start again from the home page."),
)
TOO_LARGE = Explanation(
    N_("The request was too large"),
    N_("The address or the form sent was longer than Yitong accepts."),
    N_("Go back and try again with less text."),
)
GENERAL = Explanation(
    N_("We could not continue"),
    N_("Something in this request could not be handled."),
    N_(
        "Go back and try again. If it keeps happening, call the help desk and give them the "
        "reference number below."
    ),
)

#: The explanation of each RFC error code (every class in :mod:`idp.errors`), of ``csrf``
#: (an expired form) and of HTTP statuses (``http_404``...).
PAGE_ERRORS: dict[str, Explanation] = {
    **dict.fromkeys(
        (
            "invalid_request",
            "invalid_client",
            "invalid_grant",
            "invalid_scope",
            "unauthorized_client",
            "unsupported_response_type",
            "unsupported_grant_type",
            "invalid_request_uri",
            "invalid_request_object",
            "request_not_supported",
            "invalid_target",
            "invalid_redirect_uri",
            "invalid_client_metadata",
            "invalid_dpop_proof",
            "use_dpop_nonce",
        ),
        SERVICE_REQUEST,
    ),
    **dict.fromkeys(
        (
            "interaction_required",
            "login_required",
            "consent_required",
            "account_selection_required",
            "invalid_token",
            "insufficient_user_authentication",
            "expired_token",
        ),
        SIGN_IN_AGAIN,
    ),
    **dict.fromkeys(("access_denied", "insufficient_scope", "http_403"), DENIED),
    **dict.fromkeys(
        ("slow_down", "authorization_pending", "temporarily_unavailable", "http_429", "http_503"),
        BUSY,
    ),
    **dict.fromkeys(("server_error", "http_500"), OUR_FAULT),
    "csrf": EXPIRED,
    "http_404": NOT_FOUND,
    "http_405": NOT_ALLOWED,
    **dict.fromkeys(("http_413", "http_414", "http_431"), TOO_LARGE),
}


def explain(error: str | None, status: int) -> Explanation:
    """The explanation for an error code, else for the HTTP status, else a general one."""
    return PAGE_ERRORS.get(error or "") or PAGE_ERRORS.get(f"http_{status}") or GENERAL

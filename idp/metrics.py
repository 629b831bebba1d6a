"""The provider's Prometheus metrics (issue 12 item 4); rendered by :mod:`idp.observability`.

A leaf module (it imports nothing of ours) so that the audit trail, the login flow and the
request hooks can all count without import cycles.  Metric objects are process-wide by
nature (prometheus_client keeps one registry per process and, with
``PROMETHEUS_MULTIPROC_DIR`` set, one file per gunicorn worker); they hold counts only, never
a name, an address or an identifier, and every label takes values from a short fixed set.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter(
    "yitong_http_requests", "HTTP requests answered, by endpoint and status", ["endpoint", "status"]
)
LATENCY = Histogram(
    "yitong_http_request_duration_seconds",
    "Time to answer a request, by endpoint",
    ["endpoint"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
LOGINS = Counter("yitong_logins", "Completed sign-ins, by account type", ["account_type", "method"])
LOGIN_FAILURES = Counter(
    "yitong_login_failures",
    "Refused sign-in attempts, by reason and account type",
    ["reason", "account_type"],
)
TOKENS = Counter("yitong_tokens_issued", "Token responses, by grant type", ["grant_type"])
DIRECTORY_UP = Gauge(
    "yitong_directory_up",
    "Whether the department directory answered the last sign-in (1) or not (0)",
    ["directory"],
    multiprocess_mode="mostrecent",
)
DEPENDENCY_ERRORS = Counter(
    "yitong_dependency_unavailable",
    "Requests answered 503 because the database or Redis did not answer",
)

#: Label values for grant types are fixed, so a client cannot grow the series without bound.
GRANT_TYPES = frozenset(
    {
        "authorization_code",
        "refresh_token",
        "client_credentials",
        "urn:ietf:params:oauth:grant-type:token-exchange",
        "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "urn:openid:params:grant-type:ciba",
        "urn:ietf:params:oauth:grant-type:device_code",
    }
)
ACCOUNT_TYPES = frozenset({"citizen", "staff", "company", "admin"})

# The labelled series of the per-request counts, looked up once each: ``labels()`` checks and
# joins its arguments under a lock on every call.  Endpoints, statuses and grant types are
# short fixed sets (the URL rules, not the paths), so these stay small.
_REQUEST_SERIES: dict[tuple[str, int], tuple[Any, Any]] = {}
_TOKEN_SERIES: dict[str, Any] = {}


def count_request(endpoint: str, status: int, seconds: float | None) -> None:
    """One answered request: its latency (unless unknown) and its (endpoint, status) count."""
    series = _REQUEST_SERIES.get((endpoint, status))
    if series is None:
        series = (LATENCY.labels(endpoint), REQUESTS.labels(endpoint, str(status)))
        _REQUEST_SERIES[(endpoint, status)] = series
    if seconds is not None:
        series[0].observe(seconds)
    series[1].inc()


def count_token(grant_type: str) -> None:
    """One token response, by grant type (an unknown type is counted as ``other``)."""
    label = grant_type if grant_type in GRANT_TYPES else "other"
    series = _TOKEN_SERIES.get(label)
    if series is None:
        series = _TOKEN_SERIES[label] = TOKENS.labels(label)
    series.inc()


def _account_type(kind: Any) -> str:
    return kind if kind in ACCOUNT_TYPES else "unknown"


def audited(action: str, outcome: str, target: str | None, details: dict[str, Any] | None) -> None:
    """Count sign-ins from the audit events that already describe them (one path for both)."""
    if not action.startswith(("login.", "directory.")):
        return
    details = details or {}
    method = str(details.get("method") or "")
    if action == "login.success":
        amr = details.get("amr") or []
        LOGINS.labels(_account_type(details.get("kind")), "+".join(sorted(map(str, amr)))).inc()
    elif action == "login.failure":
        staff = method == "ldap" or bool(details.get("department"))
        kind = "staff" if staff else _account_type(details.get("kind") or "citizen")
        LOGIN_FAILURES.labels(method or "unknown", kind).inc()
        if method == "ldap" and details.get("department"):
            DIRECTORY_UP.labels(str(details["department"])[:64]).set(1)  # it answered
    elif action == "directory.unavailable":
        LOGIN_FAILURES.labels("directory_unavailable", "staff").inc()
        DIRECTORY_UP.labels(str(target or "")[:64]).set(0)


def refused(reason: str, account_type: str) -> None:
    """A sign-in refused before any check (throttled, locked)."""
    LOGIN_FAILURES.labels(reason, _account_type(account_type)).inc()

"""What operators and load balancers see: request ids, Prometheus metrics, health probes.

Issue 12 item 4.

- **Request id.**  An ``X-Request-Id`` sent by the reverse proxy is kept when it is a short
  token (``[A-Za-z0-9._-]{1,64}``), otherwise a fresh one is made; it is echoed in the response
  and carried by every log record of the request (:mod:`idp.logging_setup`), so one line of
  the proxy's log finds the provider's lines.
- **Metrics** (Prometheus text format, https://prometheus.io/docs/instrumenting/exposition_formats/)
  at ``/metrics``: request counts and latency per endpoint, logins and failures by reason and
  account type, tokens issued by grant, directory health, and at scrape time the age of each
  active signing key, the back-channel logout backlog and the state of the database and Redis.
  Under gunicorn with several workers set ``PROMETHEUS_MULTIPROC_DIR`` (an empty directory per
  start; ``scripts/cluster.py`` and docs/deployment.md do) and every worker's counts are
  summed.  ``metrics_token`` set: the scraper must send it as a Bearer token.
- **Probes.**  ``/healthz``: the process answers (liveness; never touches a dependency, so a
  database outage does not make the orchestrator kill healthy workers).  ``/readyz``: the
  database answers, Redis answers (when configured) and every configured signing algorithm
  has a usable key; otherwise ``503`` naming what is down, so the load balancer sends the
  traffic elsewhere.  Neither names hosts, versions or errors.

The metric objects are process-wide (prometheus_client keeps one registry per process, and
in multiprocess mode one file per worker); they hold counts only, never a name, an address
or an identifier.
"""

from __future__ import annotations

import hmac
import logging
import os
import re
import secrets
import time
from typing import Any

from flask import Flask, Response, g, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import func, select, text

from idp import context
from idp.metrics import count_request, count_token
from idp.services import Services
from idp.storage.models import LogoutDelivery, utcnow

log = logging.getLogger(__name__)

_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


# ---------------------------------------------------------------------- scrape-time values
class _ScrapeCollector:
    """Values read when Prometheus scrapes: key age, delivery backlog, dependencies."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def collect(self) -> Any:
        now = utcnow()
        age = GaugeMetricFamily(
            "yitong_signing_key_age_seconds", "Age of each active signing key", labels=["alg"]
        )
        backlog = GaugeMetricFamily(
            "yitong_logout_outbox_backlog", "Back-channel logout messages not yet delivered"
        )
        up = GaugeMetricFamily(
            "yitong_dependency_up", "Whether a dependency answers now", labels=["dependency"]
        )
        database_up = 1
        try:
            for info in self.services.keys.list_keys():
                if info.state == "active":
                    since = info.activated_at or info.created_at
                    age.add_metric([info.alg], (now - since).total_seconds())
            with self.services.db.session() as session:
                pending = session.scalar(
                    select(func.count())
                    .select_from(LogoutDelivery)
                    .where(LogoutDelivery.delivered_at.is_(None))
                    .where(LogoutDelivery.abandoned_at.is_(None))
                )
            backlog.add_metric([], float(pending or 0))
        except Exception:  # the scrape reports the outage instead of failing
            database_up = 0
        up.add_metric(["database"], database_up)
        if self.services.hot is not None:
            up.add_metric(["redis"], 1 if self.services.hot.ping() else 0)
        yield from (age, backlog, up)


def render_metrics(services: Services) -> bytes:
    """Every worker's counters (multiprocess mode) or this process's, plus scrape-time values."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        body = generate_latest(registry)
    else:
        body = generate_latest(REGISTRY)
    scrape = CollectorRegistry()
    scrape.register(_ScrapeCollector(services))
    return body + generate_latest(scrape)


# ---------------------------------------------------------------------- readiness
def readiness(services: Services) -> dict[str, str]:
    """What is up and what is down, by name; every value ``up`` means ready."""
    state = {"database": "up", "keys": "up"}
    try:
        with services.db.session() as session:
            session.execute(text("SELECT 1"))
    except Exception:
        state["database"] = "down"
    if services.hot is not None:
        state["redis"] = "up" if services.hot.ping() else "down"
    if state["database"] == "up":
        try:
            for alg in services.settings.signing_algorithms:
                services.keys.signing_key(alg)
        except Exception:
            state["keys"] = "down"
    else:
        state["keys"] = "unknown"
    return state


def request_id_for(sent: str) -> str:
    """The id of a request: the proxy's ``X-Request-Id`` if it is a short token, else new."""
    return sent if _REQUEST_ID.fullmatch(sent) else secrets.token_hex(8)


# ---------------------------------------------------------------------- installation
def install(app: Flask, services: Services) -> None:
    """Request ids, timing and the three operator endpoints (called by the app factory)."""

    @app.before_request
    def start_request() -> None:
        values = g._get_current_object()  # type: ignore[attr-defined]  # one proxy lookup
        sent = context.current_request().environ.get("HTTP_X_REQUEST_ID", "")
        values.request_id = request_id_for(sent)
        values.started = time.perf_counter()

    @app.after_request
    def finish_request(resp: Response) -> Response:
        values = g._get_current_object()  # type: ignore[attr-defined]  # one proxy lookup
        rid = values.get("request_id")
        if rid is None:  # an earlier hook answered before start_request ran
            rid = values.request_id = secrets.token_hex(8)
        resp.headers.add("X-Request-Id", rid)  # only this hook sets it: no search for another
        started = values.get("started")
        req = context.current_request()
        endpoint = req.url_rule.endpoint if req.url_rule is not None else "unmatched"
        status = resp.status_code
        count_request(endpoint, status, None if started is None else time.perf_counter() - started)
        if endpoint == "oidc.token" and status == 200:
            count_token(req.form.get("grant_type", ""))
        return resp

    @app.route("/healthz", methods=["GET"])
    def healthz() -> Response:
        return jsonify({"status": "alive"})

    @app.route("/readyz", methods=["GET"])
    def readyz() -> tuple[Response, int]:
        state = readiness(context.services())
        ready = all(v == "up" for v in state.values())
        if not ready:
            log.warning("not ready: %s", ", ".join(k for k, v in state.items() if v != "up"))
        body = {"status": "ready" if ready else "unavailable", **state}
        return jsonify(body), 200 if ready else 503

    @app.route("/metrics", methods=["GET"])
    def metrics() -> Response:
        token = services.settings.metrics_token
        if token:
            sent = request.headers.get("Authorization", "")
            if not hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
                return Response(
                    "unauthorized\n",
                    status=401,
                    mimetype="text/plain",
                    headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
                )
        resp = Response(render_metrics(services), mimetype=CONTENT_TYPE_LATEST)
        resp.headers["Cache-Control"] = "no-store"
        return resp

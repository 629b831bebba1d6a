"""gunicorn settings for a Yitong node (``make cluster``, docs/deployment.md).

Sync workers (one request per worker at a time, the measured default: docs/benchmarks.md);
the reverse proxy in front buffers slow clients (checklist 113).  With several workers
Prometheus counts are kept per worker in ``PROMETHEUS_MULTIPROC_DIR`` and summed at scrape;
a dead worker's live gauges are dropped here.
"""

from typing import Any

from prometheus_client import multiprocess

worker_class = "sync"
timeout = 30  # a worker silent this long is killed and replaced
graceful_timeout = 10  # SIGTERM: finish the request in hand, then exit (rolling restarts)
keepalive = 5
max_requests = 20000  # recycle workers now and then (memory stays flat)
max_requests_jitter = 2000


def child_exit(_server: Any, worker: Any) -> None:
    multiprocess.mark_process_dead(worker.pid)

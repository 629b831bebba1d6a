"""gunicorn settings for a Yitong node (``make cluster``, docs/deployment.md).

Sync workers (one request per worker at a time, the measured default: docs/benchmarks.md);
the reverse proxy in front buffers slow clients (checklist 113).  With several workers
Prometheus counts are kept per worker in ``PROMETHEUS_MULTIPROC_DIR`` and summed at scrape;
a dead worker's live gauges are dropped here.

The app is preloaded: the arbiter imports and builds it once and the workers share those pages
copy-on-write.  Measured on a 4-worker node after mixed traffic (``python -m bench.memory``,
docs/benchmarks.md "Memory"): a worker's PSS falls from about 99 MB to about 63 MB and the
node's total from about 410 MB to about 295 MB; a worker's RSS stays about 118 MB, since RSS
counts shared pages in full.  ``gc.freeze()`` before each fork keeps the collector from
writing to every inherited object (one full collection in a worker otherwise copies about
40 MB of them).  ``wsgi.py`` closes the database connections the build opened, so no worker
inherits the arbiter's sockets.  Preloading means a ``HUP`` reloads settings but not code:
upgrades restart the node (docs/deployment.md, "Upgrades and rolling restarts").
"""

import gc
import os
from typing import Any

from prometheus_client import multiprocess

worker_class = "sync"
preload_app = True
timeout = 30  # a worker silent this long is killed and replaced
graceful_timeout = 10  # SIGTERM: finish the request in hand, then exit (rolling restarts)
keepalive = 5
max_requests = 20000  # recycle workers now and then (memory stays flat)
max_requests_jitter = 2000


def pre_fork(_server: Any, _worker: Any) -> None:
    gc.freeze()


def child_exit(_server: Any, worker: Any) -> None:
    # Only with per-worker metric files: without PROMETHEUS_MULTIPROC_DIR there are none,
    # and prometheus_client would fail here (in the arbiter) looking for them.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(worker.pid)

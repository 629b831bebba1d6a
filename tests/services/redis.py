"""Real Redis for the tests (issue 12): the shared server at 127.0.0.1:6379, one database
index per pytest-xdist worker so parallel workers never see each other's keys.

Outside CI a missing server skips with a reason; with ``CI=true`` it fails
(``tests.conftest.missing``).  Each test that takes ``redis_url`` starts on an empty database.
"""

from __future__ import annotations

import os

import pytest

# YITONG_TEST_REDIS_PORT lets two checkouts run their suites side by side on their own servers.
REDIS_HOST, REDIS_PORT = "127.0.0.1", int(os.environ.get("YITONG_TEST_REDIS_PORT", "6379"))


def worker_db_index() -> int:
    """Databases 8-15: 0 stays for people's own use (and the rate-limit tests' namespaces)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    number = int(worker[2:]) if worker[2:].isdigit() else 0
    return 8 + number % 8


@pytest.fixture
def redis_url() -> str:
    import redis

    from tests.conftest import missing

    url = f"redis://{REDIS_HOST}:{REDIS_PORT}/{worker_db_index()}"
    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    try:
        client.flushdb()
    except redis.RedisError as exc:
        missing(f"Redis is not running on {REDIS_HOST}:{REDIS_PORT}: {exc}")
    finally:
        client.close()
    return url

"""``examples/gunicorn_conf.py``, the documented node configuration: its hooks run in
gunicorn's arbiter, where an exception stops the whole node."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

CONF = Path(__file__).resolve().parents[1] / "examples" / "gunicorn_conf.py"


def _conf() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gunicorn_conf", CONF)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_worker_exit_without_per_worker_metrics_is_not_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    conf = _conf()
    assert conf.preload_app is True and conf.worker_class == "sync"
    conf.child_exit(None, SimpleNamespace(pid=4242))  # the README's command sets no directory


def test_a_dead_workers_live_gauges_are_removed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    (tmp_path / "gauge_livesum_4242.db").write_bytes(b"")
    (tmp_path / "counter_4242.db").write_bytes(b"")
    _conf().child_exit(None, SimpleNamespace(pid=4242))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["counter_4242.db"]  # counts stay

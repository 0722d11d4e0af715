"""graph-service reliability (issue 10, graph-service bullet) with real servers on free ports.

- The models.config watcher outlives any error reading the file (bad UTF-8, a folder where the
  file was) and reports it: log, GET /monitoring/config, graph_config_reload_errors_total.
- Each model has its own bounded call slots: a model whose calls are stuck answers 429
  RESOURCE_EXHAUSTED at once (TF Serving maps RESOURCE_EXHAUSTED to 429, http_server.cc
  ToHTTPStatusCode), while another model keeps answering promptly.
- Watcher and pools stop on shutdown.
"""

from __future__ import annotations

import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests

from devtools.savedmodels import (
    dense_reference,
    start_graph_service,
    write_dense_savedmodel,
    write_models_config,
    write_spin_savedmodel,
)
from graph_service.bootstrap import build_service
from graph_service.models.pools import ModelPools, ResourceExhaustedError, UnavailableError
from graph_service.settings import Settings

POLL = 0.3
X = np.array([[0.3, -0.2, 0.8, 0.1]], np.float32)


def wait_until(check, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"condition not met within {timeout}s (last: {last!r})")


def metric(server, line_start: str) -> float:
    text = requests.get(server.url + "/monitoring/prometheus/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def predict_dense(server, name: str = "dense") -> requests.Response:
    return requests.post(
        f"{server.url}/v1/models/{name}:predict", json={"instances": X.tolist()}, timeout=30
    )


def test_watcher_survives_unreadable_config_and_reports_it(tmp_path: Path) -> None:
    models = tmp_path / "models"
    write_dense_savedmodel(models / "dense" / "1", 4, seed=1)
    config = models / "models.config"
    write_models_config(config, {"dense": ""})
    good = config.read_text()
    server = start_graph_service(config, tmp_path / "logs", poll_seconds=POLL)
    try:
        errors = 'graph_config_reload_errors_total{stage="read"}'
        assert metric(server, errors) == 0
        # Bad UTF-8: a decode error, which used to kill the watcher thread for good.
        config.write_bytes(b'model_config_list { config { name: "\xff\xfe" } }')
        wait_until(lambda: metric(server, errors) >= 1)
        status = requests.get(server.url + "/monitoring/config", timeout=10).json()
        assert status["watcher_running"] is True
        assert "UnicodeDecodeError" in status["last_error"]
        assert "models.config not reloaded" in server.log()
        assert predict_dense(server).status_code == 200  # the previous config still serves

        # The file replaced by a folder: an OSError.
        config.unlink()
        config.mkdir()
        before = metric(server, errors)
        wait_until(lambda: metric(server, errors) > before)
        assert (
            "IsADirectoryError"
            in requests.get(server.url + "/monitoring/config", timeout=10).json()["last_error"]
        )

        # A good file again, now with a second model: the watcher is alive and applies it.
        config.rmdir()
        write_dense_savedmodel(models / "other" / "1", 4, seed=2)
        write_models_config(config, {"dense": "", "other": ""})
        assert good != config.read_text()
        wait_until(lambda: predict_dense(server, "other").status_code == 200)
        np.testing.assert_allclose(
            predict_dense(server, "other").json()["predictions"],
            dense_reference(X, seed=2),
            rtol=1e-5,
        )
        assert requests.get(server.url + "/monitoring/config", timeout=10).json()["models"] == [
            "dense",
            "other",
        ]
    finally:
        server.stop()


@pytest.fixture(scope="module")
def two_models(tmp_path_factory: pytest.TempPathFactory):
    """`spin` (cost chosen per request) and `dense`, at most 2 calls in flight per model."""
    root = tmp_path_factory.mktemp("pools")
    models = root / "models"
    write_spin_savedmodel(models / "spin" / "1")
    write_dense_savedmodel(models / "dense" / "1", 4, seed=3)
    write_models_config(models / "models.config", {"dense": "", "spin": ""})
    server = start_graph_service(
        models / "models.config",
        root / "logs",
        extra_args=[
            "--rest_api_num_threads=6",
            "--model_max_inflight=2",
            "--rest_api_timeout_in_ms=60000",
        ],
    )
    try:
        for _ in range(5):  # warm both signatures (first call optimises the graph)
            spin(server, 1)
            predict_dense(server)
        yield server
    finally:
        server.stop()


def spin(server, iterations: int) -> requests.Response:
    return requests.post(
        server.url + "/v1/models/spin:predict", json={"instances": [iterations]}, timeout=120
    )


def test_a_stuck_model_gets_429_at_once_and_never_starves_another(two_models) -> None:
    server = two_models
    with ThreadPoolExecutor(2) as pool:
        # Two long calls take both of spin's slots (about 0.4 ms per iteration here).
        long_calls = [pool.submit(spin, server, 6000) for _ in range(2)]
        wait_until(lambda: metric(server, 'graph_model_inflight_calls{model_name="spin"}') == 2)

        started = time.perf_counter()
        refused = spin(server, 1)
        refused_after = time.perf_counter() - started
        assert refused.status_code == 429, refused.text
        assert "limit (--model_max_inflight=2)" in refused.json()["error"]

        started = time.perf_counter()
        other = predict_dense(server)
        other_after = time.perf_counter() - started
        assert other.status_code == 200, other.text
        np.testing.assert_allclose(
            other.json()["predictions"], dense_reference(X, seed=3), rtol=1e-5
        )
        assert all(not call.done() for call in long_calls), "the long calls ended too early"
        results = [call.result() for call in long_calls]
    # The refusal and the other model did not wait for the stuck calls to end.
    assert refused_after < 1.0 and other_after < 1.0, (refused_after, other_after)
    assert [r.status_code for r in results] == [200, 200]
    assert (
        metric(
            server,
            ':tensorflow:serving:request_count{model_name="spin",status="RESOURCE_EXHAUSTED"}',
        )
        >= 1
    )
    assert spin(server, 1).status_code == 200  # slots were given back


def test_pools_bound_each_model_and_close_waits_for_running_calls() -> None:
    pools = ModelPools(lambda: 1, wait_seconds=0.05)
    entered, release = threading.Event(), threading.Event()

    def hold() -> None:
        with pools.slot("a"):
            entered.set()
            release.wait(10)

    worker = threading.Thread(target=hold)
    worker.start()
    assert entered.wait(10)
    started = time.monotonic()
    with pytest.raises(ResourceExhaustedError), pools.slot("a"):
        pass
    assert time.monotonic() - started < 1.0  # refused after the short wait, not the call
    with pools.slot("b"):  # another model is not affected
        assert pools.inflight() == {"a": 1, "b": 1}
    assert pools.close(timeout=0.2) is False  # "a" still runs
    with pytest.raises(UnavailableError), pools.slot("b"):
        pass
    release.set()
    worker.join(10)
    assert pools.close(timeout=5) is True and pools.inflight() == {}


def test_a_slot_freed_during_the_short_wait_is_taken_not_refused() -> None:
    """A burst on a full model waits up to SLOT_WAIT_SECONDS for a slot instead of a 429."""
    pools = ModelPools(lambda: 1, wait_seconds=2.0)
    entered = threading.Event()

    def hold_briefly() -> None:
        with pools.slot("a"):
            entered.set()
            time.sleep(0.1)

    worker = threading.Thread(target=hold_briefly)
    worker.start()
    assert entered.wait(10)
    with pools.slot("a"):
        assert pools.inflight() == {"a": 1}
    worker.join(10)


def test_service_close_stops_watcher_pools_and_sessions(tmp_path: Path) -> None:
    models = tmp_path / "models"
    write_dense_savedmodel(models / "dense" / "1", 4)
    write_models_config(models / "models.config", {"dense": ""})
    service = build_service(
        Settings(
            model_config_file=models / "models.config",
            model_config_file_poll_wait_seconds=POLL,
            file_system_poll_wait_seconds=POLL,
        )
    )
    servable = service.registry.servable("dense")
    assert service.watcher.status()["watcher_running"] is True
    service.close(grace=5)
    assert service.watcher.status()["watcher_running"] is False
    with pytest.raises(UnavailableError), service.pools.slot("dense"):
        pass
    assert servable.handle._closed
    assert service.registry.names() == []
    shutil.rmtree(models)

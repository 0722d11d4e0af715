"""Live reload in the real `graph-service`: new versions, config changes, broken versions.

TF Serving facts (shared doc; serving_config.md): --file_system_poll_wait_seconds picks up
new version folders, --model_config_file_poll_wait_seconds re-reads models.config, and a
version that fails to load never replaces one that serves. Tests run in order against one
server; each waits at most a few poll intervals.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests

from devtools.savedmodels import (
    dense_reference,
    start_graph_service,
    write_dense_savedmodel,
    write_models_config,
)

POLL = 0.5
X = np.array([[0.3, -0.2, 0.8, 0.1]], np.float32)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    root = tmp_path_factory.mktemp("graph_live")
    models = root / "models"
    write_dense_savedmodel(models / "live" / "1", 4, seed=1)
    write_models_config(models / "models.config", {"live": ""})
    server = start_graph_service(models / "models.config", root / "logs", poll_seconds=POLL)
    server.models = models
    yield server
    server.stop()


def publish(models: Path, version: int, seed: int) -> None:
    """Write a version beside the others under a non-integer name, then rename it into place."""
    staging = models / "live" / f".staging-{version}"
    write_dense_savedmodel(staging, 4, seed=seed)
    os.replace(staging, models / "live" / str(version))


def wait_until(check, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"condition not met within {timeout}s (last: {last!r})")


def statuses(server, name: str = "live") -> dict[str, dict]:
    response = requests.get(f"{server.url}/v1/models/{name}", timeout=10)
    if response.status_code != 200:
        return {}
    return {s["version"]: s for s in response.json()["model_version_status"]}


def predict(server, path: str = "/v1/models/live:predict") -> list:
    response = requests.post(server.url + path, json={"instances": X.tolist()}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["predictions"]


def test_new_version_is_served_without_restart(live):
    """New version folder -> served within the poll; latest 1 policy retires the old one (END)."""
    np.testing.assert_allclose(predict(live), dense_reference(X, seed=1), rtol=1e-5)
    publish(live.models, 2, seed=2)
    wait_until(lambda: statuses(live).get("2", {}).get("state") == "AVAILABLE")
    np.testing.assert_allclose(predict(live), dense_reference(X, seed=2), rtol=1e-5)
    wait_until(lambda: statuses(live)["1"]["state"] == "END")


def test_corrupt_version_is_reported_and_never_replaces_the_working_one(live):
    """Issue 3: a version that fails to load shows its error in status; the previous keeps serving."""
    broken = live.models / "live" / "3"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"\x08garbage, not a protobuf")
    failed = wait_until(lambda: statuses(live).get("3", {}).get("status", {}).get("error_message"))
    assert "3" in failed or "saved_model" in failed
    state = statuses(live)
    assert state["3"]["state"] == "END" and state["3"]["status"]["error_code"] != "OK"
    assert state["2"]["state"] == "AVAILABLE"
    np.testing.assert_allclose(predict(live), dense_reference(X, seed=2), rtol=1e-5)
    shutil.rmtree(broken)


def test_half_copied_version_loads_once_complete(live):
    """A version folder still being copied fails first, then loads when its files arrive."""
    target = live.models / "live" / "4"
    target.mkdir()
    wait_until(
        lambda: statuses(live).get("4", {}).get("status", {}).get("error_code") not in (None, "OK")
    )
    complete = live.models / "live" / ".complete-4"
    write_dense_savedmodel(complete, 4, seed=4)
    for item in complete.iterdir():
        os.replace(item, target / item.name)
    wait_until(lambda: statuses(live).get("4", {}).get("state") == "AVAILABLE")
    np.testing.assert_allclose(predict(live), dense_reference(X, seed=4), rtol=1e-5)


def test_requests_in_flight_survive_a_reload(live):
    """Issue 3: swapping versions fails no request; each answer comes from the old or the new version."""
    answers, failures, stop = [], [], threading.Event()

    def hammer() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                response = session.post(
                    live.url + "/v1/models/live:predict", json={"instances": X.tolist()}, timeout=30
                )
                if response.status_code != 200:
                    failures.append(response.text)
                else:
                    answers.append(response.json()["predictions"][0][0])

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        publish(live.models, 5, seed=5)
        wait_until(lambda: statuses(live).get("5", {}).get("state") == "AVAILABLE")
        time.sleep(2 * POLL)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert failures == []
    expected = {round(float(dense_reference(X, seed=s)[0, 0]), 5) for s in (4, 5)}
    assert {round(a, 5) for a in answers} <= expected
    assert round(answers[-1], 5) == round(float(dense_reference(X, seed=5)[0, 0]), 5)


def test_config_change_adds_a_model_a_policy_and_labels(live):
    """models.config is re-read every poll: a new model, `specific` policy and labels apply live."""
    write_dense_savedmodel(live.models / "other" / "7", 4, seed=7)
    policy = (
        "    model_version_policy { specific { versions: 4 versions: 5 } }\n"
        '    version_labels { key: "stable" value: 4 }\n'
    )
    write_models_config(live.models / "models.config", {"live": policy, "other": ""})
    wait_until(lambda: statuses(live, "other").get("7", {}).get("state") == "AVAILABLE")
    wait_until(lambda: statuses(live).get("4", {}).get("state") == "AVAILABLE")
    np.testing.assert_allclose(
        predict(live, "/v1/models/live/labels/stable:predict"),
        dense_reference(X, seed=4),
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        predict(live, "/v1/models/other:predict"), dense_reference(X, seed=7), rtol=1e-5
    )


def test_label_held_back_is_logged_once_not_every_poll(live):
    """shared doc: without --allow_version_labels_for_unavailable_models a label may only point
    at a loaded version, so the label keeps its version. The log says so when it starts and
    when it ends, not on every poll (at 0.5 s polls that was 4 lines a second)."""
    config = live.models / "models.config"
    good = config.read_text()
    waiting = good.replace('key: "stable" value: 4', 'key: "stable" value: 9')
    assert waiting != good
    config.write_text(waiting)
    held = "label stable cannot move to version 9 (not available); keeps 4"
    wait_until(lambda: held in live.log())
    time.sleep(8 * POLL)
    assert live.log().count(held) == 1
    np.testing.assert_allclose(
        predict(live, "/v1/models/live/labels/stable:predict"),
        dense_reference(X, seed=4),
        rtol=1e-5,
    )
    config.write_text(good)
    resolved = "label stable no longer waits for version 9; it points at 4"
    wait_until(lambda: resolved in live.log())
    time.sleep(4 * POLL)
    log = live.log()
    assert log.count(resolved) == 1
    assert log.count(held) == 1


def test_model_without_versions_is_warned_about_once(live):
    """A model whose folder holds no versions yet is logged when seen, not on every poll."""
    (live.models / "hollow").mkdir()
    config = live.models / "models.config"
    good = config.read_text()
    entry = 'config { name: "hollow" base_path: "hollow" model_platform: "tensorflow" }'
    config.write_text(good.replace("model_config_list {", "model_config_list {\n  " + entry, 1))
    warning = "model hollow: no version folders under"
    wait_until(lambda: warning in live.log())
    time.sleep(8 * POLL)
    assert live.log().count(warning) == 1
    config.write_text(good)


def test_broken_config_keeps_the_previous_one(live):
    """A models.config that no longer parses is reported; the models already served stay up."""
    config = live.models / "models.config"
    good = config.read_text()
    config.write_text("model_config_list { config { name: ")
    time.sleep(3 * POLL)
    assert statuses(live, "other")["7"]["state"] == "AVAILABLE"
    assert "models.config not reloaded" in live.log()
    config.write_text(good)


def test_model_removed_from_config_is_unloaded(live):
    """A model left out of models.config stops being served (404), the others keep serving."""
    write_models_config(live.models / "models.config", {"live": ""})
    wait_until(lambda: requests.get(live.url + "/v1/models/other", timeout=10).status_code == 404)
    np.testing.assert_allclose(predict(live), dense_reference(X, seed=5), rtol=1e-5)
    assert live.alive()

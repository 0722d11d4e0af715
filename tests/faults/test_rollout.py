"""A new model version rolled out on the graph tier under load: no request fails.

The TF Serving way: copy version 2 next to version 1, let the server load it (policy lists
both), move the `stable` label the logic tier scores with from 1 to 2, then retire 1.
"""

from __future__ import annotations

import shutil
import time

import pytest
import requests

from devtools.savedmodels import (
    start_graph_service,
    write_dense_savedmodel,
    write_models_config,
)
from devtools.traffic import scores
from tests.faults.conftest import GRAPH_SEED, Load, record, start_logic, statuses, wait_for

pytestmark = pytest.mark.fault

CLIENTS = 16
NEW_SEED = 11


def _policy(versions: list[int], stable: int) -> str:
    listed = " ".join(f"versions: {v}" for v in versions)
    return (
        f"    model_version_policy {{ specific {{ {listed} }} }}\n"
        f'    version_labels {{ key: "stable" value: {stable} }}\n'
    )


def _available(status_url: str) -> bool:
    response = requests.get(status_url, timeout=5)
    if response.status_code != 200:
        return False  # 404 until the server has found the new version folder
    return response.json()["model_version_status"][0]["state"] == "AVAILABLE"


def test_version_2_rolled_out_during_load_fails_no_request(fault_bed, tmp_path) -> None:
    models = tmp_path / "models"
    shutil.copytree(fault_bed.models / "credit" / "1", models / "credit" / "1")
    staging = tmp_path / "staging"
    write_dense_savedmodel(staging / "2", fault_bed.width, seed=NEW_SEED)
    config = models / "models.config"
    write_models_config(config, {"credit": _policy([1], stable=1)})
    pipelines = fault_bed.artifacts.write_config(
        "faults_rollout.yaml",
        {
            "pipelines": {
                "credit": {
                    "transformer": "credit/transformer.pkl",
                    "graph_model": "credit",
                    "version_label": "stable",
                }
            }
        },
    )
    graph = start_graph_service(config, tmp_path)
    logic = None
    records = fault_bed.records(3)
    old, new = fault_bed.expected(records, GRAPH_SEED), fault_bed.expected(records, NEW_SEED)
    status_url = f"{graph.url}/v1/models/credit/versions/2"
    try:
        logic = start_logic(fault_bed, graph.url, tmp_path / "logic.log", config=pipelines)
        with Load(logic.url, CLIENTS, lambda _c, _s: {"data": records}) as load:
            time.sleep(2)
            shutil.copytree(staging / "2", models / "credit" / ".2.tmp")
            (models / "credit" / ".2.tmp").rename(models / "credit" / "2")
            write_models_config(config, {"credit": _policy([1, 2], stable=1)})
            loaded = wait_for(lambda: _available(status_url), 60, "version 2 AVAILABLE")
            switched_at = time.monotonic()
            write_models_config(config, {"credit": _policy([1, 2], stable=2)})

            def on_new() -> bool:
                latest = [o for o in load.outcomes[-CLIENTS:] if o.status == 200]
                return bool(latest) and all(
                    scores(o.body) == pytest.approx(new, abs=1e-5) for o in latest
                )

            switch = wait_for(on_new, 30, "scores from version 2")
            write_models_config(config, {"credit": _policy([2], stable=2)})
            time.sleep(3)
        assert logic.alive() and graph.alive()
    finally:
        if logic is not None:
            logic.stop()
        graph.stop()
    outcomes = load.outcomes
    flat = [scores(o.body) for o in outcomes if o.status == 200]
    record(
        "model version 2 rolled out under load",
        requests=len(outcomes),
        statuses=statuses(outcomes),
        version_2_loaded_seconds=round(loaded, 1),
        label_switch_seen_seconds=round(switch, 1),
        answers_from_v1=sum(s == pytest.approx(old, abs=1e-5) for s in flat),
        answers_from_v2=sum(s == pytest.approx(new, abs=1e-5) for s in flat),
    )
    assert all(o.status == 200 for o in outcomes), statuses(outcomes)
    assert all(s == pytest.approx(old, abs=1e-5) or s == pytest.approx(new, abs=1e-5) for s in flat)
    assert flat[-1] == pytest.approx(new, abs=1e-5)
    assert switched_at > 0

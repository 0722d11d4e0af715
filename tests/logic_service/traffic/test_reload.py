"""Reloading routes under load with the real server (gunicorn master + 2 workers): a file edit
and a SIGHUP each move the traffic without losing a request or restarting a worker; a bad
edit is refused with one line and the routes in force keep serving, also in a worker started
after it."""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests

from devtools.servers import ServerProcess
from devtools.traffic import TrafficBed, metric, scores, start_traffic_logic
from logic_service.config import parse_config
from logic_service.traffic.reload import outside_traffic
from tests.faults.conftest import Load, Outcome, statuses, wait_for

CLIENTS = 8


def _versions(bed: TrafficBed, records: list[dict[str, Any]]) -> dict[str, list[float]]:
    return {"stable": bed.expected(records, 1), "canary": bed.expected(records, 2)}


def _answered_by(outcome: Outcome, expected: dict[str, list[float]]) -> str | None:
    if outcome.status != 200:
        return None
    answered = scores(outcome.body)
    for version, wanted in expected.items():
        if answered == pytest.approx(wanted, abs=1e-5):
            return version
    return None


def _all_from(load: Load, expected: dict[str, list[float]], version: str, last: int = 40) -> bool:
    recent = load.outcomes[-last:]
    return len(recent) == last and all(_answered_by(o, expected) == version for o in recent)


def _workers(server: ServerProcess) -> set[int]:
    return {child.pid for child in psutil.Process(server.process.pid).children()}


def _booted(server: ServerProcess) -> set[int]:
    """Both workers' pids (the master forks the second after /ready may already answer)."""
    wait_for(lambda: len(_workers(server)) == 2, 30, "two workers")
    return _workers(server)


def _refusals(server: ServerProcess) -> list[str]:
    return [line for line in server.log().splitlines() if "traffic reload refused" in line]


def _edit(bed: TrafficBed, path: Path, traffic: dict[str, Any] | None, **pipeline: Any) -> None:
    """Rewrite the file (a new mtime even within the same second: the size or inode changes)."""
    time.sleep(0.05)
    bed.write_pipelines(path, traffic, **pipeline)


def test_file_edits_under_load_lose_no_request_and_bad_ones_are_refused(
    traffic_bed: TrafficBed, graph: ServerProcess, tmp_path: Path
) -> None:
    logic = start_traffic_logic(
        traffic_bed,
        graph.url,
        tmp_path,
        {"routes": {"stable": 100}},
        env={"LOGIC_TRAFFIC_POLL_SECONDS": "0.5"},
    )
    config = tmp_path / "pipelines.yaml"
    records = traffic_bed.records(2, seed=9)
    expected = _versions(traffic_bed, records)
    workers = _booted(logic)
    try:
        with Load(logic.url, CLIENTS, lambda _c, _s: {"data": records}) as load:
            wait_for(lambda: len(load.outcomes) > 100, 30, "load running")
            _edit(traffic_bed, config, {"routes": {"stable": 0, "canary": 100}})
            moved = wait_for(lambda: _all_from(load, expected, "canary"), 20, "canary answers")

            bad_edits = [
                {"routes": {"stable": 0, "canary": 0}},  # weights sum to 0
                {"routes": {"stable": 50, "canray": 50}},  # a label the graph does not know
                {"routes": {"stable": 50, "canary": 50}, "shadow": "canary", "shadow_sample": 2},
            ]
            for number, traffic in enumerate(bad_edits, start=1):
                _edit(traffic_bed, config, traffic)
                wait_for(lambda n=number: len(_refusals(logic)) == n, 20, f"refusal {number}")
            config.write_text("pipelines: {credit: [unclosed\n")
            wait_for(lambda: len(_refusals(logic)) == 4, 20, "refusal of broken YAML")
            time.sleep(1.5)  # three more polls: nothing changes, nothing is logged again
            assert len(_refusals(logic)) == 4
            assert _all_from(load, expected, "canary", last=200)
            os.utime(config)  # a touch has the same file judged again
            wait_for(lambda: len(_refusals(logic)) == 5, 20, "the touched file judged again")

            # Traffic and an artifact path changed together: traffic applies, the rest waits.
            moved_copy = tmp_path / "transformer-copy.pkl"
            shutil.copy(traffic_bed.artifacts.root / "credit" / "transformer.pkl", moved_copy)
            _edit(traffic_bed, config, {"routes": {"stable": 100}}, transformer=str(moved_copy))
            back = wait_for(lambda: _all_from(load, expected, "stable"), 20, "stable answers")
            time.sleep(0.5)
        outcomes = load.outcomes
        generation = metric(logic.url, "logic_traffic_generation")
        assert _workers(logic) == workers  # nobody was restarted
    finally:
        logic.stop()
    assert all(o.status == 200 for o in outcomes), statuses(outcomes)
    assert {_answered_by(o, expected) for o in outcomes} == {"stable", "canary"}
    assert generation == 3  # start, canary, stable: the refused edits made no generation
    refusals = _refusals(logic)
    assert len(refusals) == 5 and all("generation 2 keeps serving" in r for r in refusals)
    for refusal, needle in zip(
        refusals,
        [
            "weights sum to 0",
            "traffic names label 'canray'",
            "shadow_sample",
            "not valid YAML",
            "not valid YAML",
        ],
        strict=True,
    ):
        assert needle in refusal
    applied = [line for line in logic.log().splitlines() if "traffic generation" in line]
    assert len(applied) == 2
    assert "only traffic blocks reload, artifact and other changes need a restart" in applied[1]
    assert applied[1].endswith("not applied until a restart: pipeline 'credit': transformer\"}")
    print(f"file edit seen by every worker after {moved:.1f} s; back after {back:.1f} s")


def test_sighup_under_load_reloads_in_place_and_a_new_worker_serves_the_same(
    traffic_bed: TrafficBed, graph: ServerProcess, tmp_path: Path
) -> None:
    logic = start_traffic_logic(
        traffic_bed,
        graph.url,
        tmp_path,
        {"routes": {"stable": 100}},
        env={"LOGIC_TRAFFIC_POLL_SECONDS": "0"},  # no file watching: only SIGHUP reloads
    )
    config = tmp_path / "pipelines.yaml"
    records = traffic_bed.records(3, seed=10)
    expected = _versions(traffic_bed, records)
    workers = _booted(logic)
    try:
        with Load(logic.url, CLIENTS, lambda _c, _s: {"data": records}) as load:
            wait_for(lambda: len(load.outcomes) > 100, 30, "load running")
            _edit(traffic_bed, config, {"routes": {"canary": 100}})
            time.sleep(1.5)
            assert _all_from(load, expected, "stable", last=100)  # not applied without SIGHUP
            logic.process.send_signal(signal.SIGHUP)
            wait_for(lambda: _all_from(load, expected, "canary"), 20, "canary after SIGHUP")
            # A SIGHUP to every process (dumb-init forwards to the process group): the same.
            _edit(traffic_bed, config, {"routes": {"stable": 100}})
            for process in [*psutil.Process(logic.process.pid).children(), logic.process]:
                process.send_signal(signal.SIGHUP)
            wait_for(lambda: _all_from(load, expected, "stable"), 20, "stable after SIGHUP")
        outcomes = load.outcomes
        assert _workers(logic) == workers

        # Good, then refused: a worker started now must serve the good one, not the start's.
        _edit(traffic_bed, config, {"routes": {"canary": 100}})
        logic.process.send_signal(signal.SIGHUP)
        wait_for(lambda: metric(logic.url, "logic_traffic_generation") == 4, 20, "generation 4")
        _edit(traffic_bed, config, {"routes": {"stable": 0}})
        logic.process.send_signal(signal.SIGHUP)
        wait_for(lambda: len(_refusals(logic)) == 1, 20, "the refusal")
        victim = sorted(workers)[0]
        psutil.Process(victim).kill()
        wait_for(
            lambda: len(_workers(logic) - workers) == 1 and len(_workers(logic)) == 2,
            30,
            "a new worker",
        )
        wait_for(lambda: metric(logic.url, "logic_traffic_generation") == 4, 20, "livemin 4")
        with Load(logic.url, CLIENTS, lambda _c, _s: {"data": records}) as after:
            wait_for(lambda: len(after.outcomes) > 400, 60, "requests on both workers")
        assert {_answered_by(o, expected) for o in after.outcomes} == {"canary"}
    finally:
        logic.stop()
    assert all(o.status == 200 for o in outcomes), statuses(outcomes)
    assert logic.log().count("Booting worker") == 3  # the two at start, the one killed


def test_changes_outside_the_traffic_blocks_are_named_by_their_keys(tmp_path: Path) -> None:
    def config(**credit: Any) -> Any:
        body = {"transformer": "t.pkl", "graph_model": "credit", **credit}
        return parse_config({"pipelines": {"credit": body}}, tmp_path / "pipelines.yaml")

    start = config(version_label="stable", traffic={"shadow": "canary"})
    assert outside_traffic(start, config(version_label="stable")) == []  # traffic is not "other"
    assert outside_traffic(start, config(version_label="canary", graph_model="credit2")) == [
        "pipeline 'credit': graph_model, version_label"
    ]
    assert outside_traffic(start, config(transformer="other.pkl", max_rows=5)) == [
        "pipeline 'credit': transformer, version_label, max_rows"
    ]
    two = parse_config(
        {"default": "credit", "pipelines": {"credit": {"model": "m.pkl"}, "new": {"model": "m"}}},
        tmp_path / "pipelines.yaml",
    )
    assert outside_traffic(start, two) == [
        "default",
        "pipeline 'credit': transformer, graph_model, model",
        "pipeline 'new' added",
    ]


def test_a_reload_to_a_version_the_graph_lacks_fails_only_its_requests(
    traffic_bed: TrafficBed, graph: ServerProcess, tmp_path: Path
) -> None:
    """A version number cannot be told from one still loading: applied with a warning; its
    requests fail (503, naming it), the others are answered, the pod stays ready."""
    logic = start_traffic_logic(
        traffic_bed,
        graph.url,
        tmp_path,
        {"routes": {"stable": 100}},
        env={"LOGIC_TRAFFIC_POLL_SECONDS": "0.5"},
    )
    config = tmp_path / "pipelines.yaml"
    records = traffic_bed.records(1, seed=13)
    try:
        _edit(traffic_bed, config, {"routes": {"stable": 50, 7: 50}})
        wait_for(lambda: metric(logic.url, "logic_traffic_generation") == 2, 20, "generation 2")
        session = requests.Session()
        answers = [
            session.post(logic.url + "/get_score", json={"data": records}, timeout=30)
            for _ in range(40)
        ]
        ready = requests.get(logic.url + "/ready", timeout=10)
    finally:
        logic.stop()
    by_version = {r.headers["X-Model-Version"]: r for r in answers}
    assert set(by_version) == {"stable", "7"}
    assert {r.status_code for r in answers if r.headers["X-Model-Version"] == "stable"} == {200}
    failed = [r for r in answers if r.headers["X-Model-Version"] == "7"]
    assert {r.status_code for r in failed} == {503}
    assert "/v1/models/credit/versions/7" in failed[0].json()["msg"]
    assert ready.status_code == 200
    warning = [line for line in logic.log().splitlines() if "credit@7" in line]
    assert warning and "requests routed there fail until it is served" in warning[0]

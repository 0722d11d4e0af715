"""Shadow scoring: the comparison metrics are the differences computed offline for the same
rows, and the caller's answer is always the primary's (real tiers, two real versions)."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest
import requests

from devtools.servers import ServerProcess
from devtools.traffic import TrafficBed, metric, scores, scrape, start_traffic_logic
from logic_service.traffic.metrics import DIFF_BUCKETS
from logic_service.traffic.shadow import IncomparableError, compare

PAIR = {"pipeline": "credit", "primary": "stable", "shadow": "canary"}


def test_compare_gives_the_absolute_difference_and_agreement_per_value() -> None:
    diffs, agree = compare(np.array([[0.2], [0.7]]), np.array([[0.6], [0.75]]), 0.5)
    assert diffs.tolist() == pytest.approx([0.4, 0.05])
    assert agree.tolist() == [False, True]
    diffs, agree = compare(
        {"p": np.array([1.0]), "n": np.array(["x"])}, {"p": [3.0], "n": ["y"]}, None
    )
    assert diffs.tolist() == [2.0] and agree is None  # strings are not compared
    with pytest.raises(IncomparableError, match="shapes differ"):
        compare(np.zeros((2, 1)), np.zeros((3, 1)), None)
    with pytest.raises(IncomparableError, match="outputs differ"):
        compare({"a": [1.0]}, {"b": [1.0]}, None)


def _wait_for_jobs(url: str, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while metric(url, "logic_shadow_jobs_total", **PAIR) < count:
        assert time.monotonic() < deadline, f"shadow jobs did not reach {count}"
        time.sleep(0.1)


def _settled_jobs(url: str) -> float:
    """Shadow jobs counted once the count stops moving (the last ones are off the path)."""
    last, deadline = -1.0, time.monotonic() + 30
    while (now := metric(url, "logic_shadow_jobs_total", pipeline="credit")) != last:
        assert time.monotonic() < deadline, "shadow jobs never settled"
        last = now
        time.sleep(0.5)
    return now


def test_difference_metrics_match_the_offline_differences(
    traffic_bed: TrafficBed, graph: ServerProcess, tmp_path: Path
) -> None:
    logic = start_traffic_logic(
        traffic_bed,
        graph.url,
        tmp_path,
        {"shadow": "canary", "shadow_threshold": 0.5},
        version_label="stable",
    )
    try:
        records = traffic_bed.records(240, seed=5)
        # 200 one-record requests, then 20 of two records: 220 shadow jobs, 240 values.
        requests_sent = [records[i : i + 1] for i in range(200)]
        requests_sent += [records[i : i + 2] for i in range(200, 240, 2)]
        session = requests.Session()
        for sent in requests_sent:
            response = session.post(logic.url + "/get_score", json={"data": sent}, timeout=30)
            assert response.status_code == 200, response.text
            assert response.headers["X-Model-Version"] == "stable"
            assert scores(response.json()) == pytest.approx(traffic_bed.expected(sent, 1), abs=1e-5)
        _wait_for_jobs(logic.url, len(requests_sent))
        samples = scrape(logic.url)
        info = requests.get(logic.url + "/pipelines", timeout=10).json()["data"]
    finally:
        logic.stop()

    stable = np.array(traffic_bed.expected(records, 1))
    canary = np.array(traffic_bed.expected(records, 2))
    offline = np.abs(stable - canary)

    def value(name: str, **labels: str) -> float:
        wanted = {**PAIR, **labels}.items()
        return sum(v for (n, s), v in samples.items() if n == name and set(wanted) <= set(s))

    assert value("logic_shadow_jobs_total", outcome="ok") == len(requests_sent)
    assert value("logic_shadow_jobs_total") == len(requests_sent)  # nothing dropped or failed
    assert value("logic_shadow_score_diff_count") == len(records)
    assert value("logic_shadow_score_diff_sum") == pytest.approx(offline.sum(), abs=1e-4)
    for bound in DIFF_BUCKETS:
        # The graph computes in float32 as the offline reference does; only a value within
        # 1e-6 of a bucket's edge could land on the other side.
        sure = int(np.sum(offline <= bound - 1e-6))
        unsure = int(np.sum(np.abs(offline - bound) < 1e-6))
        counted = value("logic_shadow_score_diff_bucket", le=str(bound))
        assert sure <= counted <= sure + unsure, bound
    agree = (stable >= 0.5) == (canary >= 0.5)
    borderline = int(np.sum((np.abs(stable - 0.5) < 1e-6) | (np.abs(canary - 0.5) < 1e-6)))
    counted_agree = value("logic_shadow_decisions_total", agreement="agree")
    assert abs(counted_agree - int(agree.sum())) <= borderline
    assert counted_agree + value("logic_shadow_decisions_total", agreement="disagree") == len(
        records
    )
    assert 0 < agree.sum() < len(records)  # the two versions really disagree on some rows

    (pipeline,) = info["pipelines"]
    shadow = pipeline["traffic"]["shadow"]
    assert shadow["version"] == "canary" and shadow["threshold"] == 0.5
    (comparison,) = shadow["comparisons"]
    assert comparison["primary"] == "stable"
    assert comparison["compared_values"] == len(records)
    assert comparison["mean_abs_diff"] == pytest.approx(offline.mean(), abs=1e-6)
    assert comparison["agreement_rate"] == pytest.approx(agree.mean(), abs=borderline / 240 + 1e-9)
    assert comparison["jobs"]["ok"] == len(requests_sent)
    assert comparison["p99_abs_diff_at_most"] >= np.quantile(offline, 0.99)


def test_a_sample_of_the_requests_routed_elsewhere_is_shadowed(
    traffic_bed: TrafficBed, graph: ServerProcess, tmp_path: Path
) -> None:
    """shadow_sample 0.2 of the stable lane; the canary lane is the shadow: never shadowed."""
    logic = start_traffic_logic(
        traffic_bed,
        graph.url,
        tmp_path,
        {"routes": {"stable": 80, "canary": 20}, "shadow": "canary", "shadow_sample": 0.2},
    )
    try:
        session = requests.Session()
        record = traffic_bed.records(1, seed=8)
        for _ in range(1000):
            response = session.post(logic.url + "/get_score", json={"data": record}, timeout=30)
            assert response.status_code == 200
        stable = metric(logic.url, "logic_routed_requests_total", version="stable")
        jobs = _settled_jobs(logic.url)
        canary_pairs = metric(logic.url, "logic_shadow_jobs_total", primary="canary")
    finally:
        logic.stop()
    assert canary_pairs == 0
    assert abs(jobs - 0.2 * stable) <= 5 * math.sqrt(stable * 0.2 * 0.8), (jobs, stable)

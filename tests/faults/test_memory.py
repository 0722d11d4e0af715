"""Memory: each tier's resident size after warm-up and after many mixed requests.

RSS of the whole process tree (gunicorn master + workers), measured with psutil. The CI slice
sends 2,000 requests after warm-up; FAULT_FULL=1 (`make test-faults-full`) sends 20,000.
Mixed: good requests to the graph-backed and the in-process pipeline, and bad ones (a
missing field, a wrong type, broken JSON, an unknown pipeline, a body over the limit).
"""

from __future__ import annotations

import json
import time

import pytest

from tests.faults.conftest import (
    FULL,
    MAX_BODY,
    Load,
    record,
    start_logic,
    statuses,
    tree_rss_mb,
)

pytestmark = pytest.mark.fault

REQUESTS = 20_000 if FULL else 2_000
WARM_UP = 1_000
CLIENTS = 8
GROWTH_LIMIT_MB = 20


def _mixed(fault_bed):
    good = {"data": fault_bed.records(3)}
    local = {"model": "local", "data": fault_bed.records(2, seed=4)}
    missing = {"data": [{k: v for k, v in fault_bed.records(1)[0].items() if k != "income"}]}
    wrong_type = {"data": [{**fault_bed.records(1)[0], "income": "a lot"}]}
    unknown = {"model": "nope", "data": fault_bed.records(1)}
    oversized = json.dumps({"data": fault_bed.records(1) * 1200}).encode()
    assert len(oversized) > MAX_BODY
    kinds = [good, local, good, missing, local, wrong_type, b'{"data": [', unknown, good, oversized]
    return lambda client, sequence: kinds[(client + sequence) % len(kinds)]


def _send(url: str, body, count: int) -> list:
    load = Load(url, CLIENTS, body).start()
    while len(load.outcomes) < count:
        time.sleep(0.2)
    return load.stop()


def test_rss_of_both_tiers_stays_flat_over_mixed_good_and_bad_requests(
    fault_bed, graph, tmp_path
) -> None:
    logic = start_logic(
        fault_bed,
        graph.url,
        tmp_path / "logic.log",
        env={"LOGIC_MAX_CONTENT_LENGTH": str(MAX_BODY)},
    )
    body = _mixed(fault_bed)
    try:
        warm = _send(logic.url, body, WARM_UP)
        logic_before, graph_before = tree_rss_mb(logic), tree_rss_mb(graph)
        started = time.monotonic()
        outcomes = _send(logic.url, body, REQUESTS)
        elapsed = time.monotonic() - started
        logic_after, graph_after = tree_rss_mb(logic), tree_rss_mb(graph)
        assert logic.alive() and graph.alive()
    finally:
        logic.stop()
    record(
        f"memory over {len(outcomes):,} mixed requests",
        statuses=statuses(outcomes),
        requests_per_s=round(len(outcomes) / elapsed),
        logic_rss_mb=f"{logic_before:.0f} -> {logic_after:.0f} ({logic_after - logic_before:+.1f})",
        graph_rss_mb=f"{graph_before:.0f} -> {graph_after:.0f} ({graph_after - graph_before:+.1f})",
    )
    expected = {200, 400, 404, 413}
    assert {o.status for o in warm + outcomes} <= expected, statuses(warm + outcomes)
    assert all(o.json_ok for o in outcomes)
    assert logic_after - logic_before < GROWTH_LIMIT_MB
    assert graph_after - graph_before < GROWTH_LIMIT_MB

"""Routes: the weighted split, sticky keys and their documented hash, with the real tiers
(graph-service serving `credit` 1 as `stable` and 2 as `canary`, logic-service under gunicorn).

Every answer is checked against the version its X-Model-Version header names: the two
versions score differently, so an answer from the wrong version (or a batch mixing them)
would show.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from devtools.servers import ServerProcess
from devtools.traffic import TrafficBed, metric, scores, start_traffic_logic
from logic_service.config import GraphTarget
from logic_service.traffic.routes import Lane, RoutePlan, bucket, sticky_value

VERSIONS = {"stable": 1, "canary": 2}
CLIENTS = 8


def documented_bucket(key: str) -> int:
    """The assignment as docs/traffic.md states it, written out independently."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") % 10000


def test_the_documented_worked_example() -> None:
    assert documented_bucket("customer-42") == bucket("customer-42") == 6469
    assert bucket("customer-14") == 9851  # >= 9500: canary under {stable: 95, canary: 5}
    assert [bucket(str(i)) for i in range(500)] == [documented_bucket(str(i)) for i in range(500)]


def test_sticky_value_reads_the_first_record_in_any_body_shape() -> None:
    assert sticky_value([{"id": "a"}, {"id": "b"}], "id") == "a"
    assert sticky_value({"id": 42, "age": 30}, "id") == "42"  # one record; integers in decimal
    assert sticky_value({"id": ["c", "d"], "age": [1, 2]}, "id") == "c"  # columns
    for missing in ([], [{"age": 1}], {"id": None}, {"id": ""}, {"id": 1.5}, {"id": True}, "x"):
        assert sticky_value(missing, "id") is None


def test_raising_the_last_weight_only_moves_keys_into_it() -> None:
    """Buckets are cut in the order written: a canary growing from 5% to 20% keeps its keys."""

    def plan(weights: list[int]) -> RoutePlan:
        lanes = tuple(
            Lane(name, weight, GraphTarget("m"), target=None, count=lambda: None)  # type: ignore[arg-type]
            for name, weight in zip("ab", weights, strict=True)
        )
        return RoutePlan("p", lanes, sticky_key="id")

    small, large = plan([95, 5]), plan([80, 20])
    keys = [f"k{i}" for i in range(2000)]
    before = {k for k in keys if small.choose({"id": k}, None).name == "b"}
    after = {k for k in keys if large.choose({"id": k}, None).name == "b"}
    assert before < after


def _fan_out(url: str, bodies: list[tuple[dict, dict[str, str]]]) -> list[requests.Response]:
    """POST every (body, headers) from CLIENTS keep-alive sessions; answers in order."""
    local = threading.local()

    def post(item: tuple[dict, dict[str, str]]) -> requests.Response:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        body, headers = item
        return local.session.post(url + "/get_score", json=body, headers=headers, timeout=30)

    with ThreadPoolExecutor(CLIENTS) as pool:
        return list(pool.map(post, bodies))


def _check_answer(bed: TrafficBed, response: requests.Response, records: list[dict]) -> str:
    assert response.status_code == 200, response.text
    version = response.headers["X-Model-Version"]
    assert scores(response.json()) == pytest.approx(
        bed.expected(records, VERSIONS[version]), abs=1e-5
    )
    return version


@pytest.fixture
def start(traffic_bed: TrafficBed, graph: ServerProcess, tmp_path: Path):
    started: list[ServerProcess] = []

    def run(traffic: dict[str, Any], **options: Any) -> ServerProcess:
        folder = tmp_path / f"logic{len(started)}"
        folder.mkdir()
        server = start_traffic_logic(traffic_bed, graph.url, folder, traffic, **options)
        started.append(server)
        return server

    yield run
    for server in started:
        server.stop()


def test_weighted_split_holds_over_3000_requests(traffic_bed: TrafficBed, start) -> None:
    logic = start({"routes": {"stable": 70, "canary": 30}})
    records = traffic_bed.records(60, seed=4)
    expected = {v: traffic_bed.expected(records, n) for v, n in VERSIONS.items()}
    total = 3000
    bodies = [({"data": [records[i % 60]]}, {}) for i in range(total)]
    counts: Counter[str] = Counter()
    for i, response in enumerate(_fan_out(logic.url, bodies)):
        assert response.status_code == 200, response.text
        version = response.headers["X-Model-Version"]
        assert scores(response.json())[0] == pytest.approx(expected[version][i % 60], abs=1e-5)
        counts[version] += 1
    # Binomial(3000, 0.3): five standard deviations either side (a false alarm ~1 in 2 million).
    bound = 5 * math.sqrt(total * 0.3 * 0.7)
    assert abs(counts["canary"] - 0.3 * total) <= bound, counts
    assert counts["stable"] + counts["canary"] == total
    for version, count in counts.items():
        assert metric(logic.url, "logic_routed_requests_total", version=version) == count
    lines = [json.loads(line) for line in logic.log().splitlines() if '"path":"/get_score"' in line]
    assert Counter(line["model_version"] for line in lines) == counts


def test_sticky_keys_always_land_on_the_documented_version(traffic_bed: TrafficBed, start) -> None:
    logic = start({"routes": {"stable": 50, "canary": 50}, "sticky_key": "customer_id"})
    records = traffic_bed.records(40, seed=6)
    customers: list[str | int] = [f"customer-{i}" for i in range(150)] + list(range(1000, 1050))
    bodies, keys = [], []
    for repeat in range(3):
        for n, customer in enumerate(customers):
            record = dict(records[(n + repeat) % 40], customer_id=customer)
            bodies.append(({"data": [record]}, {}))
            keys.append((customer, [records[(n + repeat) % 40]]))
    answered: dict[str, set[str]] = {}
    for (customer, sent), response in zip(keys, _fan_out(logic.url, bodies), strict=True):
        answered.setdefault(str(customer), set()).add(_check_answer(traffic_bed, response, sent))
    for customer, versions in answered.items():
        documented = "stable" if documented_bucket(customer) < 5000 else "canary"
        assert versions == {documented}, customer
    assert {next(iter(v)) for v in answered.values()} == {"stable", "canary"}

    # Columns and several records: the first record's key routes the whole request.
    columns = {
        "customer_id": ["customer-14", "customer-42"],
        **{k: [r[k] for r in records[:2]] for k in records[0]},
    }
    response = requests.post(logic.url + "/get_score", json={"data": columns}, timeout=30)
    first = "stable" if documented_bucket("customer-14") < 5000 else "canary"
    assert _check_answer(traffic_bed, response, records[:2]) == first

    # Without the key: scored, routed by weight at random, counted.
    missing = [({"data": [records[i % 40]]}, {}) for i in range(200)]
    seen = Counter(
        _check_answer(traffic_bed, r, [records[i % 40]])
        for i, r in enumerate(_fan_out(logic.url, missing))
    )
    assert set(seen) == {"stable", "canary"}
    assert metric(logic.url, "logic_sticky_fallbacks_total", pipeline="credit") == 200


def test_sticky_header_routes_by_the_header(traffic_bed: TrafficBed, start) -> None:
    logic = start({"routes": {"stable": 95, "canary": 5}, "sticky_header": "X-Customer-ID"})
    records = traffic_bed.records(1, seed=7)
    for customer in ("customer-14", "customer-77", "customer-42", "customer-7"):
        versions = {
            _check_answer(
                traffic_bed,
                requests.post(
                    logic.url + "/get_score",
                    json={"data": records},
                    headers={"X-Customer-ID": customer},
                    timeout=30,
                ),
                records,
            )
            for _ in range(3)
        }
        assert versions == {"canary" if documented_bucket(customer) >= 9500 else "stable"}
    assert metric(logic.url, "logic_sticky_fallbacks_total", pipeline="credit") == 0

"""Which HTTP client should the logic tier use to call the graph tier? Measured, not guessed.

Starts the real `graph-service` on a free port with a small dense SavedModel, then calls
`:predict` serially from this process with each candidate over one kept-alive connection:
`requests.Session` (the first client), a bare `urllib3.HTTPConnectionPool`, `http.client`
keep-alive (the previous transport), and the service's own `GraphClient` (its minimal HTTP/1.1
connection, logic_service/graph/http_transport.py, in a pool with timeouts, retries and error mapping).
Reports the CPU this process burns per call (time.process_time: survives a noisy shared machine)
and wall time per call, as medians over interleaved rounds, with ratios against requests and
against http.client.

    python benchmarks/bench_graph_client.py [--calls 2000] [--rounds 3] [--rows 1 20]
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import requests
import urllib3
from requests.adapters import HTTPAdapter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # devtools, this tree

from devtools.savedmodels import (
    start_graph_service,
    write_dense_savedmodel,
    write_models_config,
)
from logic_service.graph.client import GraphClient

WIDTH = 20
PATH = "/v1/models/bench:predict"
HEADERS = {"Content-Type": "application/json"}


def candidates(url: str) -> dict[str, Callable[[bytes], bytes]]:
    """name -> call(body) -> response body, each keeping its connection alive."""
    session = requests.Session()
    session.mount("http://", HTTPAdapter(pool_connections=1, pool_maxsize=4, max_retries=0))

    def with_requests(body: bytes) -> bytes:
        return session.post(url + PATH, data=body, headers=HEADERS, timeout=(2, 10)).content

    host, port = url.removeprefix("http://").split(":")
    pool = urllib3.HTTPConnectionPool(host, int(port), maxsize=4, retries=False)
    limit = urllib3.Timeout(connect=2, read=10)

    def with_urllib3(body: bytes) -> bytes:
        return pool.urlopen("POST", PATH, body=body, headers=HEADERS, timeout=limit).data

    state: dict[str, http.client.HTTPConnection] = {}

    def with_http_client(body: bytes) -> bytes:
        for attempt in range(2):
            conn = state.get("c") or http.client.HTTPConnection(host, int(port), timeout=10)
            state["c"] = conn
            try:
                conn.request("POST", PATH, body=body, headers=HEADERS)
                return conn.getresponse().read()
            except (http.client.HTTPException, OSError):
                conn.close()
                state.pop("c", None)
                if attempt:
                    raise
        raise AssertionError("unreachable")

    client = GraphClient(url)

    def with_graph_client(body: bytes) -> bytes:
        return client.predict("/v1/models/bench", body, timeout=10)

    return {
        "requests.Session": with_requests,
        "urllib3 pool": with_urllib3,
        "http.client keep-alive": with_http_client,
        "GraphClient (own HTTP/1.1 pool + mapping)": with_graph_client,
    }


def measure(call: Callable[[bytes], bytes], body: bytes, calls: int) -> tuple[float, float]:
    """(CPU seconds, wall seconds) per call over `calls` serial calls."""
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(calls):
        call(body)
    return (time.process_time() - cpu) / calls, (time.perf_counter() - wall) / calls


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls per round (default 2000)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 20], help="rows per body")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-graph-client-") as tmp:
        root = Path(tmp)
        write_dense_savedmodel(root / "models" / "bench" / "1", WIDTH, seed=1)
        config = root / "models" / "models.config"
        write_models_config(config, {"bench": ""})
        graph = start_graph_service(config, root)
        try:
            clients = candidates(graph.url)
            rows_table = []
            for rows in args.rows:
                body = orjson.dumps({"inputs": {"x": [[0.25] * WIDTH] * rows}})
                expected = clients["requests.Session"](body)
                for name, call in clients.items():
                    assert orjson.loads(call(body)) == orjson.loads(expected), name
                    measure(call, body, 100)  # warm-up
                results: dict[str, list[tuple[float, float]]] = {name: [] for name in clients}
                for _ in range(args.rounds):
                    for name, call in clients.items():
                        results[name].append(measure(call, body, args.calls))
                rows_table.append((rows, results))
        finally:
            graph.stop()

    print(
        f"\nGraph-tier client, serial :predict calls ({args.calls} x {args.rounds} rounds, "
        f"medians; CPU of this client process only; {os.cpu_count()} CPUs)\n"
    )
    print("| rows | client | CPU us/call | vs requests | vs http.client | wall us/call |")
    print("|---:|---|---:|---:|---:|---:|")
    for rows, results in rows_table:
        base = statistics.median(cpu for cpu, _ in results["requests.Session"])
        previous = statistics.median(cpu for cpu, _ in results["http.client keep-alive"])
        for name, samples in results.items():
            cpu = statistics.median(c for c, _ in samples)
            wall = statistics.median(w for _, w in samples)
            print(
                f"| {rows} | {name} | {cpu * 1e6:.0f} | {cpu / base:.2f}x "
                f"| {cpu / previous:.2f}x | {wall * 1e6:.0f} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Graph-tier benchmark: `:predict` over HTTP against the same model called in-process.

Builds a small dense SavedModel in a temp folder, starts the real `graph-service` on a free
port, and for batch 1 and 64 measures p50/p99 latency and throughput of
(a) the signature's concrete function called in this process (`tf.saved_model.load`, what a
user would call; the baseline of the issue's "p50 at most 2x the in-process call" target),
(b) the Session callable graph-service itself runs (TF1 loader, feeds by tensor name),
(c) POST :predict from one client, (d) from several concurrent clients, with the CPU seconds
the server's whole process tree spent per request. Request bodies are encoded once up front,
so the HTTP figures are the server's parse + model + encode + the HTTP round trip.
Run: `make bench-graph`.
"""

from __future__ import annotations

import argparse
import http.client
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from devtools.savedmodels import start_graph_service, write_dense_savedmodel  # noqa: E402
from devtools.servers import tree_cpu  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def timed(call: Callable[[], object], count: int) -> list[float]:
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        latencies.append(time.perf_counter() - started)
    return latencies


def concurrent_run(make_call: Callable[[], Callable[[], object]], total: int, clients: int):
    """(latencies, wall seconds) for `total` calls spread over `clients` threads."""
    per_client = max(total // clients, 1)

    def client(_: int) -> list[float]:
        return timed(make_call(), per_client)

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        latencies = [lat for chunk in pool.map(client, range(clients)) for lat in chunk]
    return latencies, time.perf_counter() - started


def row(case: str, batch: int, latencies: list[float], wall: float) -> dict:
    return {
        "case": case,
        "batch": batch,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "req_s": len(latencies) / wall,
        "rows_s": len(latencies) * batch / wall,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=int, default=16, help="input width (default 16)")
    parser.add_argument("--requests", type=int, default=400, help="calls per case (default 400)")
    parser.add_argument(
        "--clients", type=int, default=4, help="concurrent HTTP clients (default 4)"
    )
    parser.add_argument(
        "--threads", type=int, default=8, help="graph-service --rest_api_num_threads"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="bench-graph-") as tmp:
        root = Path(tmp)
        models = root / "models"
        write_dense_savedmodel(models / "bench" / "1", args.features, n_outputs=1)
        (models / "models.config").write_text(
            'model_config_list { config { name: "bench" base_path: "/models/bench" '
            'model_platform: "tensorflow" } }\n'
        )
        serving = tf.saved_model.load(str(models / "bench" / "1")).signatures["serving_default"]
        from graph_service.models.servable import load_servable

        servable = load_servable("bench", 1, models / "bench" / "1", run_timeout_ms=30_000)
        server = start_graph_service(
            models / "models.config",
            root / "logs",
            extra_args=[f"--rest_api_num_threads={args.threads}", "--log_level=WARNING"],
        )
        results = []
        try:
            path = "/v1/models/bench:predict"
            rng = np.random.default_rng(0)
            for batch in (1, 64):
                x = rng.normal(size=(batch, args.features)).astype(np.float32)
                body = orjson.dumps({"instances": x.tolist()})

                def in_process(x=x):
                    return serving(x=tf.constant(x))["score"].numpy()

                def session_callable(x=x):
                    return servable.run("serving_default", {"x": x})["score"]

                np.testing.assert_allclose(in_process(), session_callable(), rtol=1e-6)

                def http_call_factory(body=body):
                    return keepalive_client(server.port, path, body)

                timed(in_process, 20)  # warm-up
                timed(session_callable, 20)
                warm = http_call_factory()
                timed(warm, 20)
                started = time.perf_counter()
                lat = timed(in_process, args.requests)
                results.append(row("in-process fn", batch, lat, time.perf_counter() - started))
                started = time.perf_counter()
                lat = timed(session_callable, args.requests)
                results.append(row("in-process sess", batch, lat, time.perf_counter() - started))
                cpu = tree_cpu(server.process.pid)
                started = time.perf_counter()
                lat = timed(http_call_factory(), args.requests)
                results.append(row("HTTP 1 client", batch, lat, time.perf_counter() - started))
                results[-1]["cpu_ms"] = (tree_cpu(server.process.pid) - cpu) / len(lat) * 1000
                if batch == 1:
                    results.append(http_floor(server.port, args.requests))
                cpu = tree_cpu(server.process.pid)
                lat, wall = concurrent_run(http_call_factory, args.requests, args.clients)
                results.append(row(f"HTTP {args.clients} clients", batch, lat, wall))
                results[-1]["cpu_ms"] = (tree_cpu(server.process.pid) - cpu) / len(lat) * 1000
        finally:
            server.stop()

    print_table(results, args.features, args.requests)
    return 0


def http_floor(port: int, count: int) -> dict:
    """The HTTP server's own floor: a status GET runs no model and no codec."""
    floor = keepalive_client(port, "/v1/models/bench", None)
    timed(floor, 20)
    started = time.perf_counter()
    latencies = timed(floor, count)
    return row("HTTP status GET", 0, latencies, time.perf_counter() - started)


def print_table(results: list[dict], features: int, requests: int) -> None:
    """The table, with each row's p50 against both in-process calls, and the target line."""
    print(f"\ngraph-service :predict, dense model {features}->1, {requests} calls per case")
    header = (
        f"{'case':<16}{'batch':>6}{'p50 ms':>10}{'p99 ms':>10}{'req/s':>10}{'rows/s':>11}"
        f"{'CPU ms/req':>12}{'p50 vs fn':>11}{'p50 vs sess':>13}"
    )
    print(header)
    print("-" * len(header))
    base = {r["batch"]: r["p50_ms"] for r in results if r["case"] == "in-process fn"}
    sess = {r["batch"]: r["p50_ms"] for r in results if r["case"] == "in-process sess"}
    for r in results:
        key = r["batch"] or 1
        ratio = r["p50_ms"] / base[key] if base[key] else float("nan")
        ratio_sess = r["p50_ms"] / sess[key] if sess[key] else float("nan")
        cpu = f"{r['cpu_ms']:.2f}" if "cpu_ms" in r else "-"
        print(
            f"{r['case']:<16}{r['batch']:>6}{r['p50_ms']:>10.2f}{r['p99_ms']:>10.2f}"
            f"{r['req_s']:>10.0f}{r['rows_s']:>11.0f}{cpu:>12}{ratio:>10.1f}x{ratio_sess:>12.1f}x"
        )
    one = next(r for r in results if r["case"] == "HTTP 1 client" and r["batch"] == 1)
    target = one["p50_ms"] / base[1]
    verdict = "meets" if target <= 2.0 else "misses"
    print(
        f"\ntarget (issue 11.3): HTTP :predict p50 at most 2x the in-process call, batch 1: "
        f"{target:.2f}x ({verdict})"
    )


def keepalive_client(port: int, path: str, body: bytes | None) -> Callable[[], bytes]:
    """One keep-alive connection posting `body`; http.client, whose own cost is ~50 us/call
    (requests adds ~0.3 ms of client-side Python per call, which is not the server's)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json"}

    def call() -> bytes:
        connection.request("GET" if body is None else "POST", path, body, headers)
        response = connection.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"{response.status}: {data[:200]!r}")
        return data

    return call


if __name__ == "__main__":
    sys.exit(main())

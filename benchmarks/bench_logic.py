"""Logic-tier benchmark: the kit beside its peers, one run, same machine, same graph tier.

Four servers on the same fitted transformer and the same graph-service model, 1-row and
20-row bodies:
  graph   the graph tier alone, fed precomputed features (the floor)
  kit     the kit's logic tier (logic-service under gunicorn, its shipped defaults)
  recipe  the plain Flask recipe (pandas, the transformer, requests.post per call,
          json.dumps) under gunicorn with the kit's worker layout
  kserve  a KServe v1 transformer (kserve.Model: preprocess applies the transformer, the
          predictor is the same graph tier), run by kserve's ModelServer from .venv-bench
For each: serial p50/p99 (one client), throughput with 16 clients, and the CPU seconds the
server's whole process tree burnt per request during the throughput phase (psutil), plus the
graph tier's and the load generator's own CPU. Each server's phases are split into rounds
(3) with the servers interleaved, so a spell of load on a shared machine falls on every
server's share instead of on one server's whole figure. The load generator
(benchmarks/loadgen.py) is a separate process with http.client keep-alive threads. Every
phase is bounded in count and time; only 127.0.0.1 is spoken to. Prints a markdown table and
issue 12's three target ratios and writes both, with plots, into benchmarks/results/. Run:
`make bench-logic`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import requests

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from bench_report import (  # noqa: E402
    GRAPH,
    KIT,
    KSERVE,
    LABELS,
    RECIPE,
    Measurement,
    markdown_table,
    targets,
    write_markdown,
    write_plots,
)

from devtools.savedmodels import start_graph_service, write_dense_savedmodel  # noqa: E402
from devtools.servers import (  # noqa: E402
    ServerProcess,
    free_port,
    script,
    start_server,
    tree_cpu,
)
from devtools.sklearn_artifacts import build_sklearn_artifacts, credit_records  # noqa: E402

MODEL = "credit"
DEFAULT_BENCH_PYTHON = ROOT / ".venv-bench" / "bin" / "python"

# The recipe as tutorials write it: globals, pandas, transformer, a fresh requests.post per
# call with row-format JSON built by json.dumps, json.dumps on the way out.
RECIPE_APP = """
import json

import joblib
import pandas as pd
import requests
from flask import Flask, request

app = Flask(__name__)
transformer = joblib.load(r"{transformer}")
GRAPH = "{graph}"


@app.route("/get_score", methods=["POST"])
def get_score():
    df = pd.DataFrame(request.get_json()["data"])
    features = transformer.transform(df)
    if hasattr(features, "toarray"):
        features = features.toarray()
    response = requests.post(
        GRAPH + "/v1/models/credit:predict", data=json.dumps({{"instances": features.tolist()}})
    )
    return json.dumps({{"msg": "Successful!", "code": 200, "data": response.json()["predictions"]}})
"""


def kit_layout() -> tuple[int, int]:
    """The kit's default gunicorn workers x threads, read from its own gunicorn.conf.py."""
    probe = (
        "import os, runpy, sys, tempfile\n"
        "with tempfile.TemporaryDirectory() as metrics:\n"
        "    os.environ['PROMETHEUS_MULTIPROC_DIR'] = metrics\n"
        "    conf = runpy.run_path(sys.argv[1])\n"
        "print(conf['workers'], conf['threads'])\n"
    )
    conf = ROOT / "logic_service" / "http" / "gunicorn.conf.py"
    env = {k: v for k, v in os.environ.items() if k not in ("LOGIC_WORKERS", "LOGIC_THREADS")}
    out = subprocess.run(
        [sys.executable, "-c", probe, str(conf)], capture_output=True, text=True, env=env
    )
    if out.returncode != 0:
        raise RuntimeError(f"could not read {conf}: {out.stderr.strip()}")
    workers, threads = out.stdout.split()
    return int(workers), int(threads)


def measured_tree() -> str:
    """Which code was measured: branch @ commit, flagged when the tree has local changes."""

    def git(*argv: str) -> str:
        out = subprocess.run(["git", *argv], cwd=ROOT, capture_output=True, text=True)
        return out.stdout.strip() if out.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD")
    if not commit:
        return "tree: not a git checkout"
    dirty = (
        ", with uncommitted changes" if git("status", "--porcelain", "--untracked-files=no") else ""
    )
    return f"tree: {git('rev-parse', '--abbrev-ref', 'HEAD')} @ {commit}{dirty}"


def drive(
    url: str,
    body: Path,
    *,
    concurrency: int,
    count: int,
    seconds: float,
    trees: dict[str, int],
) -> tuple[dict[str, Any], dict[str, float]]:
    """One bounded phase by benchmarks/loadgen.py; its result and each tree's CPU seconds."""
    argv = [
        sys.executable,
        str(HERE / "loadgen.py"),
        f"--url={url}",
        f"--body-file={body}",
        f"--concurrency={concurrency}",
        f"--requests={count}",
        f"--seconds={seconds}",
        "--handshake",
    ]
    with subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        assert process.stdin and process.stdout and process.stderr
        if not process.stdout.readline():
            raise RuntimeError(f"load generator failed: {process.stderr.read()}")
        before = {name: tree_cpu(pid) for name, pid in trees.items()}
        process.stdin.write("go\n")
        process.stdin.flush()
        line = process.stdout.readline()
        after = {name: tree_cpu(pid) for name, pid in trees.items()}
        process.wait(60)
        if not line:
            raise RuntimeError(f"load generator failed: {process.stderr.read()}")
    return json.loads(line), {name: after[name] - before[name] for name in trees}


def scores(server: str, answer: dict[str, Any]) -> np.ndarray:
    """The scores inside each server's own response shape."""
    key = {GRAPH: "outputs", KIT: "data", RECIPE: "data", KSERVE: "predictions"}[server]
    return np.asarray(answer[key], dtype=float).ravel()


def check_parity(urls: dict[str, str], bodies: dict[str, Path]) -> float:
    """Every server must return the graph tier's scores for the same records (else: exit)."""
    results = {}
    for server, url in urls.items():
        response = requests.post(
            url,
            data=bodies[server].read_bytes(),
            headers={"Content-Type": "application/json"},
            timeout=60,
        )
        if response.status_code != 200:
            raise RuntimeError(f"{server}: HTTP {response.status_code}: {response.text[:300]}")
        results[server] = scores(server, response.json())
    reference = results[GRAPH]
    worst = 0.0
    for server, values in results.items():
        if values.shape != reference.shape or not np.allclose(values, reference, atol=1e-5):
            raise RuntimeError(
                f"{server} answers {values[:5]}... where the graph tier answers {reference[:5]}...: "
                "the servers do not compute the same thing, so their figures would not compare"
            )
        worst = max(worst, float(np.max(np.abs(values - reference))))
    return worst


def print_preprocess_table() -> None:
    """Per-pipeline preprocess p50, scikit-learn vs compiled (benchmarks/bench_preprocess.py)."""
    import bench_preprocess

    print("\npreprocess p50 per pipeline (benchmarks/bench_preprocess.py):", flush=True)
    bench_preprocess.main([])


def start_servers(
    work: Path, workers: int, threads: int, bench_python: Path | None
) -> tuple[dict[str, ServerProcess], Any]:
    """Artifacts, the graph model and every server under test; returns them by name."""
    servers: dict[str, ServerProcess] = {}
    artifacts = build_sklearn_artifacts(work / "artifacts")
    transformer = artifacts.root / "credit" / "transformer.pkl"
    width = artifacts.credit_features(credit_records(1)).shape[1]
    write_dense_savedmodel(work / "models" / MODEL / "1", width)
    (work / "models" / "models.config").write_text(
        f'model_config_list {{\n  config {{\n    name: "{MODEL}"\n'
        f'    base_path: "/models/{MODEL}"\n    model_platform: "tensorflow"\n  }}\n}}\n'
    )
    print("starting graph-service ...", flush=True)
    try:
        graph = servers[GRAPH] = start_graph_service(
            work / "models" / "models.config", work / "logs"
        )
        config = artifacts.write_config(
            "bench.yaml",
            {
                "default": MODEL,
                "pipelines": {
                    MODEL: {"transformer": "credit/transformer.pkl", "graph_model": MODEL}
                },
            },
        )
        print("starting logic-service (the kit) ...", flush=True)
        servers[KIT] = start_kit(
            config,
            work / "logs" / "logic.log",
            {
                "GRAPH_SERVICE_URL": graph.url,
                "LOGIC_WORKERS": str(workers),
                "LOGIC_THREADS": str(threads),
            },
        )
        print("starting the plain Flask recipe ...", flush=True)
        source = RECIPE_APP.format(transformer=transformer, graph=graph.url)
        servers[RECIPE] = start_recipe(work, source, workers, threads)
        if bench_python is not None:
            kserve = start_kserve(work, bench_python, transformer, graph, workers)
            if kserve is not None:
                servers[KSERVE] = kserve
    except BaseException:
        for server in reversed(servers.values()):
            server.stop()
        raise
    return servers, artifacts


def start_kit(config: Path, log: Path, env: dict[str, str], timeout: float = 120) -> ServerProcess:
    """logic-service (the kit) on a free port, returned once /ready answers 200."""
    port = free_port()
    return start_server(
        [script("logic-service"), "--config", str(config), "--bind", f"127.0.0.1:{port}"],
        port,
        log,
        ready_path="/ready",
        ready_status=(200,),
        env=env,
        timeout=timeout,
    )


def start_recipe(work: Path, source: str, workers: int, threads: int) -> ServerProcess:
    """A Flask recipe app (its source) under gunicorn with the kit's worker layout."""
    (work / "recipe_app.py").write_text(textwrap.dedent(source))
    port = free_port()
    return start_server(
        [
            script("gunicorn"),
            f"--bind=127.0.0.1:{port}",
            "--worker-class=gthread",
            f"--workers={workers}",
            f"--threads={threads}",
            "--no-control-socket",
            "recipe_app:app",
        ],
        port,
        work / "logs" / "recipe.log",
        cwd=work,
    )


def start_kserve(
    work: Path, bench_python: Path, transformer: Path, graph: ServerProcess, workers: int
) -> ServerProcess | None:
    """The KServe peer, or None (said loudly) when it does not come up: the kit's own
    targets do not depend on it, so the rest of the run still reports."""
    print("starting the KServe transformer ...", flush=True)
    port = free_port()
    try:
        return start_server(
            [
                str(bench_python),
                str(HERE / "kserve_transformer.py"),
                f"--transformer={transformer}",
                f"--model_name={MODEL}",
                f"--predictor_host=127.0.0.1:{graph.port}",
                f"--http_port={port}",
                f"--workers={workers}",
            ],
            port,
            work / "logs" / "kserve.log",
            ready_path=f"/v1/models/{MODEL}",
            ready_status=(200,),
            timeout=180,
            # kserve must not see the kit's tree or venv on its path.
            env={"PYTHONPATH": "", "VIRTUAL_ENV": ""},
        )
    except RuntimeError as exc:
        tail = "\n".join(str(exc).splitlines()[-15:])
        print(f"KServe peer NOT RUN: it did not come up; the table lacks it.\n{tail}", flush=True)
        return None


def write_bodies(work: Path, artifacts: Any, rows: int) -> dict[str, Path]:
    records = credit_records(rows, seed=rows)
    features = artifacts.credit_features(records).astype(np.float32).tolist()
    documents = {
        GRAPH: {"signature_name": "serving_default", "inputs": {"x": features}},
        KIT: {"data": records},
        RECIPE: {"data": records},
        KSERVE: {"instances": records},
    }
    paths = {}
    for server, document in documents.items():
        paths[server] = work / f"body-{server}-{rows}.json"
        paths[server].write_text(json.dumps(document))
    return paths


@dataclass
class Round:
    """One server's serial and load phases in one round."""

    serial: dict[str, Any]
    load: dict[str, Any]
    cpu: dict[str, float]  # CPU seconds of the server's and the graph tier's trees, load phase


def measure_round(
    server: ServerProcess, *, graph: ServerProcess, url: str, body: Path, args: argparse.Namespace
) -> Round:
    """A serial phase (latency), then a load phase (throughput, CPU per request), each a
    1/rounds share of the run's budget."""
    serial, _ = drive(
        url,
        body,
        concurrency=1,
        count=max(1, args.serial_requests // args.rounds),
        seconds=args.serial_seconds / args.rounds,
        trees={},
    )
    load, cpu = drive(
        url,
        body,
        concurrency=args.concurrency,
        count=max(1, args.load_requests // args.rounds),
        seconds=args.load_seconds / args.rounds,
        trees={"server": server.process.pid, "graph": graph.process.pid},
    )
    return Round(serial, load, cpu)


def interleaved_rounds(
    servers: dict[str, ServerProcess],
    urls: dict[str, str],
    bodies: dict[str, Path],
    *,
    graph: ServerProcess,
    args: argparse.Namespace,
) -> dict[str, list[Round]]:
    """`args.rounds` rounds of each server in `urls`, interleaved: a spell of load on the shared
    machine hits every server's share, not one server's whole measurement. Each round starts
    one server later."""
    names = list(urls)
    rounds: dict[str, list[Round]] = {name: [] for name in names}
    for number in range(args.rounds):
        shift = number % len(names)
        for name in names[shift:] + names[:shift]:
            rounds[name].append(
                measure_round(
                    servers[name], graph=graph, url=urls[name], body=bodies[name], args=args
                )
            )
    return rounds


def summarize(name: str, rows: int, rounds: list[Round]) -> Measurement:
    """One server's rounds as one measurement: latencies pooled, CPU and requests summed."""
    answered = sum(len(r.load["latencies"]) for r in rounds)
    per_request = 1000 / max(1, answered)
    failed = 0
    for phase in [p for r in rounds for p in (r.serial, r.load)]:
        failed += sum(n for status, n in phase["statuses"].items() if status != "200")
        for error in phase["errors"]:
            print(f"  {name}: {error}", flush=True)
    measurement = Measurement(
        server=name,
        rows=rows,
        serial_ms=[s * 1000 for r in rounds for s in r.serial["latencies"]],
        throughput=answered / sum(r.load["wall"] for r in rounds),
        server_cpu_ms=sum(r.cpu["server"] for r in rounds) * per_request,
        graph_cpu_ms=None if name == GRAPH else sum(r.cpu["graph"] for r in rounds) * per_request,
        client_cpu_ms=sum(r.load["cpu"] for r in rounds) * per_request,
        requests=answered,
        errors=failed,
    )
    by_round = " ".join(
        f"{r.cpu['server'] * 1000 / max(1, len(r.load['latencies'])):.2f}" for r in rounds
    )
    print(
        f"  {LABELS.get(name, name)}, {rows} row(s): p50 {measurement.p50:.2f} ms, "
        f"{measurement.throughput:.0f} req/s, {measurement.server_cpu_ms:.2f} ms CPU/req "
        f"(by round: {by_round}), {failed} errors",
        flush=True,
    )
    return measurement


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Figures: serial p50/p99 from one client; req/s and CPU ms per request from the "
        "throughput phase. CPU per request is the figure that survives a noisy machine.",
    )
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 20], help="body sizes (1 20)")
    parser.add_argument("--serial-requests", type=int, default=300, help="serial phase: at most N")
    parser.add_argument(
        "--serial-seconds", type=float, default=15, help="serial phase: at most S s"
    )
    parser.add_argument("--load-requests", type=int, default=20000, help="load phase: at most N")
    parser.add_argument("--load-seconds", type=float, default=10, help="load phase: at most S s")
    parser.add_argument("--concurrency", type=int, default=16, help="load phase clients (16)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="split each server's phases into N rounds, servers interleaved (3)",
    )
    parser.add_argument(
        "--bench-python",
        type=Path,
        default=DEFAULT_BENCH_PYTHON,
        help="python of the benchmark venv with kserve (make bench-venv creates .venv-bench)",
    )
    parser.add_argument(
        "--out", type=Path, default=HERE / "results", help="where the table and plots go"
    )
    parser.add_argument(
        "--no-preprocess", action="store_true", help="skip the preprocess-p50 table hook"
    )
    parser.add_argument(
        "--workers", type=int, help="gunicorn workers for kit and recipe (default: the kit's own)"
    )
    parser.add_argument(
        "--threads", type=int, help="threads per worker for kit and recipe (default: the kit's)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds {args.rounds}: must be at least 1")
    bench_python: Path | None = args.bench_python
    if not bench_python.exists():
        print(
            f"KServe peer not run: {bench_python} does not exist; `make bench-venv` creates "
            ".venv-bench (kserve, locust) and `make bench-logic` does so by itself.",
            flush=True,
        )
        bench_python = None
    workers, threads = kit_layout()
    workers, threads = args.workers or workers, args.threads or threads
    load_before = os.getloadavg()
    results: list[Measurement] = []
    with tempfile.TemporaryDirectory(prefix="bench-logic-") as tmp:
        work = Path(tmp)
        servers, artifacts = start_servers(work, workers, threads, bench_python)
        try:
            graph = servers[GRAPH]
            paths = {
                GRAPH: f"/v1/models/{MODEL}:predict",
                KIT: "/get_score",
                RECIPE: "/get_score",
                KSERVE: f"/v1/models/{MODEL}:predict",
            }
            urls = {name: server.url + paths[name] for name, server in servers.items()}
            for rows in args.rows:
                bodies = write_bodies(work, artifacts, rows)
                worst = check_parity(urls, bodies)
                print(
                    f"parity, {rows}-row body: all {len(urls)} servers return the graph tier's "
                    f"scores (max |diff| {worst:.1e})",
                    flush=True,
                )
                rounds = interleaved_rounds(servers, urls, bodies, graph=graph, args=args)
                results.extend(summarize(name, rows, rounds[name]) for name in urls)
        finally:
            for server in reversed(servers.values()):
                server.stop()

    load_after = os.getloadavg()
    header = (
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, {measured_tree()}, "
        f"{os.cpu_count()} CPUs, "
        f"load average {load_before[0]:.1f} before / {load_after[0]:.1f} after. "
        f"gunicorn {workers} workers x {threads} threads (kit and recipe; KServe {workers} "
        f"uvicorn workers); graph-service with its defaults; {width_note(artifacts)}. "
        f"Serial: 1 client, up to {args.serial_requests} requests; load: {args.concurrency} "
        f"keep-alive clients for up to {args.load_seconds:g} s; each in {args.rounds} rounds, "
        "the servers interleaved. CPU ms/req: CPU seconds of the "
        "process tree (master + workers) during the load phase / answered requests."
    )
    goals = targets(results)
    print()
    print(header)
    print()
    print(markdown_table(results))
    print()
    print("Targets (issue 12, 1-row bodies):")
    for goal in goals:
        print(goal.line())
    args.out.mkdir(parents=True, exist_ok=True)
    write_markdown(args.out / "bench_logic.md", results, goals, header)
    plots = write_plots(args.out, results)
    print(f"\nwrote {args.out / 'bench_logic.md'}, " + ", ".join(str(p) for p in plots))
    if not args.no_preprocess:
        print_preprocess_table()
    return 1 if any(m.errors for m in results) else 0


def width_note(artifacts: Any) -> str:
    width = artifacts.credit_features(credit_records(1)).shape[1]
    return f"{width}-feature dense model (credit fixtures: imputer, scaler, one-hot)"


if __name__ == "__main__":
    sys.exit(main())

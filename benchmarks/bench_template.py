"""The commonest public template, compiled, beside the Flask recipe serving its pickles.

The artifacts are the public end-to-end template's (devtools/legacy_train.py: a
ColumnTransformer of median-imputed scaled numbers and most-frequent-imputed one-hot strings
scaled without centering, then a Ridge regressor), fitted and pickled by the running
scikit-learn (the recipe peer must unpickle them; the compile step's correctness on older
releases' pickles is what tests/logic_service/compiler/ prove). They are compiled with
`logic-service compile`, then served two ways:

  kit, in-process    logic-service: compiled features + compiled Ridge (`model:`)
  recipe, in-process the Flask recipe: pandas, preprocessor.transform, model.predict
  kit, graph         logic-service: compiled features -> graph-service (`graph_model:`)
  recipe, graph      the Flask recipe: pandas, preprocessor.transform, requests.post
  graph alone        graph-service fed precomputed features (the floor)

each under gunicorn with the kit's worker layout, measured as `bench_logic.py` measures (a
serial phase and a 16-client phase per round, rounds interleaved, CPU seconds of each
server's process tree per answered request). Also: the compile step's wall time, and the
time from start to /ready of logic-service with the compiled build, without it (unpickle,
compile and parity-check at start-up) and with `engine: sklearn` (unpickle only). Targets:
kit CPU per request at most 1/10 of the recipe's, in-process and through the graph.
Run: `make bench-logic` (after bench_logic.py) or `python benchmarks/bench_template.py`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import requests
import sklearn

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from bench_logic import (  # noqa: E402
    interleaved_rounds,
    kit_layout,
    measured_tree,
    start_kit,
    start_recipe,
    summarize,
)
from bench_report import GRAPH, Measurement, Target, markdown_table  # noqa: E402

from devtools.legacy_sklearn import build_legacy  # noqa: E402
from devtools.savedmodels import (  # noqa: E402
    start_graph_service,
    write_dense_savedmodel,
    write_models_config,
)
from devtools.servers import ServerProcess, script  # noqa: E402

MODEL = "template"
KIT_LOCAL, RECIPE_LOCAL = "kit, in-process Ridge", "recipe, in-process Ridge"
KIT_GRAPH, RECIPE_GRAPH = "kit, graph model", "recipe, graph model"
PIPELINES = {
    "local": {"transformer": "template/preprocessor.pkl", "model": "template/model.pkl"},
    "graph": {"transformer": "template/preprocessor.pkl", "graph_model": MODEL},
}

RECIPE_APP = """
import json

import joblib
import pandas as pd
import requests
from flask import Flask, request

app = Flask(__name__)
preprocessor = joblib.load(r"{preprocessor}")
model = joblib.load(r"{model}")
GRAPH = "{graph}"


@app.route("/local", methods=["POST"])
def local():
    df = pd.DataFrame(request.get_json()["data"])
    scores = model.predict(preprocessor.transform(df))
    return json.dumps({{"msg": "Successful!", "code": 200, "data": scores.tolist()}})


@app.route("/graph", methods=["POST"])
def graph():
    df = pd.DataFrame(request.get_json()["data"])
    features = preprocessor.transform(df)
    if hasattr(features, "toarray"):
        features = features.toarray()
    response = requests.post(
        GRAPH + "/v1/models/{model_name}:predict", data=json.dumps({{"instances": features.tolist()}})
    )
    return json.dumps({{"msg": "Successful!", "code": 200, "data": response.json()["predictions"]}})
"""


def start_logic(config: Path, log: Path, env: dict[str, str]) -> tuple[ServerProcess, float]:
    """logic-service up to /ready 200, and how long that took from the process start."""
    started = time.monotonic()
    server = start_kit(config, log, env, timeout=300)
    return server, time.monotonic() - started


def startup_times(work: Path, env: dict[str, str]) -> dict[str, float]:
    """Start to /ready of logic-service serving the in-process pipeline three ways."""
    times = {}
    folder = work / "startup"
    shutil.copytree(work / "artifacts" / "template", folder / "template")
    cases = {
        "compiled build (nothing unpickled)": dict(PIPELINES["local"]),
        "no build: unpickle, compile, parity at start": dict(PIPELINES["local"]),
        "engine: sklearn: unpickle only": {**PIPELINES["local"], "engine": "sklearn"},
    }
    for name, spec in cases.items():
        config = folder / "pipelines.yaml"
        config.write_text(json.dumps({"pipelines": {"local": spec}}))
        if name.startswith("compiled"):
            run = subprocess.run(
                [script("logic-service"), "compile", "--config", str(config)],
                capture_output=True,
                text=True,
            )
            assert run.returncode == 0, run.stdout + run.stderr
        else:
            shutil.rmtree(folder / "compiled", ignore_errors=True)
        server, seconds = start_logic(config, work / "logs" / f"startup-{len(times)}.log", env)
        server.stop()
        times[name] = seconds
    return times


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1, help="records per request (1)")
    parser.add_argument("--serial-requests", type=int, default=300)
    parser.add_argument("--serial-seconds", type=float, default=10)
    parser.add_argument("--load-requests", type=int, default=20000)
    parser.add_argument("--load-seconds", type=float, default=8)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    workers, threads = kit_layout()
    load_before = os.getloadavg()
    servers: dict[str, ServerProcess] = {}
    with tempfile.TemporaryDirectory(prefix="bench-template-") as tmp:
        work = Path(tmp)
        print(f"fitting the template with scikit-learn {sklearn.__version__} ...", flush=True)
        legacy = build_legacy(sklearn.__version__, work / "artifacts")
        try:
            env, compile_seconds = start_servers(work, legacy, servers, (workers, threads))
            urls, paths = write_bodies(work, legacy, servers, args.rows)
            rounds = interleaved_rounds(servers, urls, paths, graph=servers[GRAPH], args=args)
            results = [summarize(name, args.rows, rounds[name]) for name in urls]
            print("measuring start-up times ...", flush=True)
            startups = startup_times(work, env)
        finally:
            for server in {id(s): s for s in servers.values()}.values():
                server.stop()
    timing = {"compile": compile_seconds, "load_before": load_before[0]}
    report(args, results, startups, timing, layout=(workers, threads))
    return 1 if any(m.errors for m in results) else 0


def start_servers(
    work: Path, legacy: Any, servers: dict[str, ServerProcess], layout: tuple[int, int]
) -> tuple[dict[str, str], float]:
    """graph-service, the compiled kit and the recipe (into `servers`); the kit's environment
    and how long the compile step took."""
    width = len(legacy.expected["template/features"][0])
    write_dense_savedmodel(work / "models" / MODEL / "1", width)
    write_models_config(work / "models" / "models.config", {MODEL: ""})
    print("starting graph-service ...", flush=True)
    graph = servers[GRAPH] = start_graph_service(work / "models" / "models.config", work / "logs")
    workers, threads = layout
    env = {
        "LOGIC_WORKERS": str(workers),
        "LOGIC_THREADS": str(threads),
        "GRAPH_SERVICE_URL": graph.url,
    }
    config = work / "artifacts" / "pipelines.yaml"
    config.write_text(json.dumps({"pipelines": PIPELINES}))
    started = time.monotonic()
    compiled = subprocess.run(
        [script("logic-service"), "compile", "--config", str(config)],
        capture_output=True,
        text=True,
    )
    compile_seconds = time.monotonic() - started
    print(compiled.stdout, flush=True)
    if compiled.returncode != 0:
        raise RuntimeError(f"compile failed:\n{compiled.stdout}{compiled.stderr}")
    print("starting logic-service (the kit, compiled) ...", flush=True)
    kit, _ = start_logic(config, work / "logs" / "logic.log", env)
    servers[KIT_LOCAL] = servers[KIT_GRAPH] = kit
    print("starting the Flask recipe ...", flush=True)
    artifacts = work / "artifacts" / "template"
    source = RECIPE_APP.format(
        preprocessor=artifacts / "preprocessor.pkl",
        model=artifacts / "model.pkl",
        graph=graph.url,
        model_name=MODEL,
    )
    recipe = start_recipe(work, source, workers, threads)
    servers[RECIPE_LOCAL] = servers[RECIPE_GRAPH] = recipe
    return env, compile_seconds


def write_bodies(
    work: Path, legacy: Any, servers: dict[str, ServerProcess], rows: int
) -> tuple[dict[str, str], dict[str, Path]]:
    """Each server's URL and body file for the same records; checked for equal scores first."""
    records = legacy.records[:rows]
    features = np.asarray(legacy.expected["template/features"][:rows], np.float32)
    bodies = {
        KIT_LOCAL: {"model": "local", "data": records},
        KIT_GRAPH: {"model": "graph", "data": records},
        RECIPE_LOCAL: {"data": records},
        RECIPE_GRAPH: {"data": records},
        GRAPH: {"signature_name": "serving_default", "inputs": {"x": features.tolist()}},
    }
    urls = {
        KIT_LOCAL: servers[KIT_LOCAL].url + "/get_score",
        KIT_GRAPH: servers[KIT_GRAPH].url + "/get_score",
        RECIPE_LOCAL: servers[RECIPE_LOCAL].url + "/local",
        RECIPE_GRAPH: servers[RECIPE_GRAPH].url + "/graph",
        GRAPH: servers[GRAPH].url + f"/v1/models/{MODEL}:predict",
    }
    paths = {}
    for name, body in bodies.items():
        paths[name] = work / f"body-{len(paths)}.json"
        paths[name].write_text(json.dumps(body))
    check(urls, bodies, legacy.expected["template/model"][:rows])
    return urls, paths


def check(urls: dict[str, str], bodies: dict[str, dict], expected: list[float]) -> None:
    """The kit and the recipe return scikit-learn's scores (the in-process ones exactly)."""
    for name in (KIT_LOCAL, RECIPE_LOCAL):
        response = requests.post(urls[name], json=bodies[name], timeout=60)
        response.raise_for_status()
        got = np.asarray(response.json()["data"], dtype=float).ravel()
        if not np.allclose(got, expected, rtol=1e-5):
            raise RuntimeError(f"{name} answers {got} where scikit-learn computes {expected}")
    kit = requests.post(urls[KIT_GRAPH], json=bodies[KIT_GRAPH], timeout=60).json()["data"]
    recipe = requests.post(urls[RECIPE_GRAPH], json=bodies[RECIPE_GRAPH], timeout=60).json()["data"]
    if not np.allclose(np.ravel(kit), np.ravel(recipe), atol=1e-5):
        raise RuntimeError(f"through the graph the kit answers {kit}, the recipe {recipe}")


def report(
    args: argparse.Namespace,
    results: list[Measurement],
    startups: dict[str, float],
    timing: dict[str, float],
    *,
    layout: tuple[int, int],
) -> None:
    by = {m.server: m for m in results}
    goals = [
        Target(
            "kit CPU per request / recipe's, in-process Ridge",
            by[KIT_LOCAL].server_cpu_ms / by[RECIPE_LOCAL].server_cpu_ms,
            0.10,
            True,
            "x",
        ),
        Target(
            "kit CPU per request / recipe's, through the graph (logic tier, as on credit)",
            by[KIT_GRAPH].server_cpu_ms / by[RECIPE_GRAPH].server_cpu_ms,
            0.10,
            True,
            "x",
        ),
    ]
    both = (by[KIT_GRAPH].server_cpu_ms + (by[KIT_GRAPH].graph_cpu_ms or 0)) / (
        by[RECIPE_GRAPH].server_cpu_ms + (by[RECIPE_GRAPH].graph_cpu_ms or 0)
    )
    header = (
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, {measured_tree()}, "
        f"{os.cpu_count()} CPUs, load average {timing['load_before']:.1f} before / "
        f"{os.getloadavg()[0]:.1f} after. The public template (ColumnTransformer: median "
        "imputer + scaler on numbers; most-frequent imputer + one-hot + scaler without mean on "
        f"strings; Ridge) fitted by scikit-learn {sklearn.__version__}; {args.rows}-row bodies; "
        f"gunicorn {layout[0]} workers x {layout[1]} threads (kit and recipe). CPU ms/req: the "
        "server's process tree during the load phase / answered requests; graph CPU is the "
        "graph tier's behind it."
    )
    lines = [
        header,
        "",
        markdown_table(results),
        "",
        "Targets (issue 21, template pipeline):",
        "",
        *(goal.line() for goal in goals),
        f"- both tiers together, through the graph (the graph tier's CPU added on each side; "
        f"the kit batches its graph calls): {both:.3f}x",
        "",
        f"`logic-service compile` of both pipelines: {timing['compile']:.1f} s (wall).",
        "",
        "| logic-service start to /ready (2 workers) | seconds |",
        "|---|---:|",
        *(f"| {name} | {seconds:.2f} |" for name, seconds in startups.items()),
    ]
    text = "\n".join(lines)
    print("\n" + text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_template.md").write_text(
        "# `make bench-logic`: template pipeline\n\n" + text + "\n"
    )
    print(f"\nwrote {args.out / 'bench_template.md'}")


if __name__ == "__main__":
    sys.exit(main())

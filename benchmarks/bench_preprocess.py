"""Preprocess benchmark: validation + features per request, scikit-learn vs the compiled engine.

In-process (no server, no graph call): the same credit pipeline loaded twice, once with
`engine: sklearn` and once compiled (`engine: onnx`), each timed on `Pipeline.prepare` for
1-row and 100-row bodies decoded from JSON. Prints p50/p99 wall time and CPU per call, and
the ratio. Run: `python benchmarks/bench_preprocess.py` (see --help). `preprocess_table()`
returns the rows for other benchmarks (make bench-logic) to print beside theirs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from devtools.sklearn_artifacts import build_sklearn_artifacts, credit_records  # noqa: E402
from logic_service.config import load_config  # noqa: E402
from logic_service.pipeline.loader import load_pipelines  # noqa: E402
from logic_service.pipeline.runtime import Pipeline  # noqa: E402

TARGET_MS = 0.15  # issue 9: one-row preprocess p50 on the credit example
ENGINES = ("sklearn", "onnx")


def _pipelines(root: Path) -> dict[str, Pipeline]:
    """The credit pipeline (as examples/credit ships it) under each engine."""
    artifacts = build_sklearn_artifacts(root / "artifacts")
    document = {
        "pipelines": {
            engine: {
                "transformer": "credit/transformer.pkl",
                "graph_model": "credit",
                "engine": engine,
            }
            for engine in ENGINES
        }
    }
    path = artifacts.write_config("bench_preprocess.yaml", document)
    return load_pipelines(load_config(path))


def _time(pipeline: Pipeline, body: bytes, calls: int) -> dict[str, float]:
    """Per call: decode the JSON body (as the app does) and prepare it."""
    for _ in range(max(20, calls // 20)):
        pipeline.prepare(orjson.loads(body)["data"])
    walls = []
    cpu_start = time.process_time()
    for _ in range(calls):
        start = time.perf_counter()
        pipeline.prepare(orjson.loads(body)["data"])
        walls.append(time.perf_counter() - start)
    cpu = (time.process_time() - cpu_start) / calls
    walls.sort()
    return {
        "p50_ms": statistics.median(walls) * 1e3,
        "p99_ms": walls[int(0.99 * (len(walls) - 1))] * 1e3,
        "cpu_ms": cpu * 1e3,
    }


def preprocess_table(
    root: Path | None = None, calls: int = 2000, sizes: tuple[int, ...] = (1, 100)
) -> list[dict[str, Any]]:
    """One row per (pipeline, engine, rows): p50/p99 wall ms and CPU ms per call."""
    with tempfile.TemporaryDirectory(prefix="bench-preprocess-") as scratch:
        pipelines = _pipelines(root or Path(scratch))
        table = []
        for size in sizes:
            body = orjson.dumps({"data": credit_records(size, seed=5)})
            for engine in ENGINES:
                pipeline = pipelines[engine]
                assert pipeline.engine == engine, pipeline.engine_reason
                figures = _time(pipeline, body, max(200, calls // max(1, size // 10)))
                table.append({"pipeline": "credit", "engine": engine, "rows": size, **figures})
        return table


def format_table(table: list[dict[str, Any]]) -> str:
    """Markdown: one line per pipeline and size, both engines side by side, and the ratio."""
    lines = [
        "| pipeline | rows | sklearn p50 ms | onnx p50 ms | sklearn CPU ms | onnx CPU ms | "
        "speed-up (p50) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    by_key = {(r["pipeline"], r["rows"], r["engine"]): r for r in table}
    for pipeline, rows in sorted({(r["pipeline"], r["rows"]) for r in table}):
        sk, ox = by_key[(pipeline, rows, "sklearn")], by_key[(pipeline, rows, "onnx")]
        lines.append(
            f"| {pipeline} | {rows} | {sk['p50_ms']:.3f} | {ox['p50_ms']:.3f} | "
            f"{sk['cpu_ms']:.3f} | {ox['cpu_ms']:.3f} | {sk['p50_ms'] / ox['p50_ms']:.1f}x |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--calls", type=int, default=2000, help="timed calls per 1-row case (fewer for 100 rows)"
    )
    args = parser.parse_args(argv)
    table = preprocess_table(calls=args.calls)
    print(format_table(table))
    one = next(r for r in table if r["engine"] == "onnx" and r["rows"] == 1)
    verdict = "met" if one["p50_ms"] <= TARGET_MS else "NOT met"
    print(
        f"\ntarget: compiled 1-row preprocess p50 <= {TARGET_MS} ms: {one['p50_ms']:.3f} ms "
        f"({verdict})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Where the logic tier's CPU goes under load: py-spy on every gunicorn worker, one table.

Starts graph-service and `logic-service` (shipped defaults) on the credit fixtures, like
`make bench-logic`, drives 16 keep-alive clients at `/get_score`, and meanwhile attaches
`py-spy record --gil` to each worker: only the thread holding the GIL is sampled, so the
table shows Python-level CPU, not threads waiting on sockets or locks. Prints the tier's CPU
and context switches per request for the same phase, then the functions by share of samples
(inclusive and self). This is how the hot path was chosen: measure, change, measure again.

    make profile-logic                     # py-spy from .venv-bench
    python benchmarks/profile_logic.py --seconds 10 --top 40 [--raw out.txt]

py-spy needs ptrace on the workers (same user; containers may need CAP_SYS_PTRACE).
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from bench_logic import MODEL, drive, write_bodies  # noqa: E402

from devtools.savedmodels import start_graph_service, write_dense_savedmodel  # noqa: E402
from devtools.servers import free_port, script, start_server, tree_cpu  # noqa: E402
from devtools.sklearn_artifacts import build_sklearn_artifacts, credit_records  # noqa: E402

DEFAULT_PY_SPY = ROOT / ".venv-bench" / "bin" / "py-spy"
_LINE = re.compile(r":\d+\)$")


def context_switches(pid: int) -> int:
    """Voluntary + involuntary context switches of every thread in a process tree, now."""
    total = 0
    root = psutil.Process(pid)
    for process in [root, *root.children(recursive=True)]:
        try:
            tasks = os.listdir(f"/proc/{process.pid}/task")
        except FileNotFoundError:
            continue
        for task in tasks:
            try:
                status = Path(f"/proc/{process.pid}/task/{task}/status").read_text()
            except FileNotFoundError:
                continue
            for line in status.splitlines():
                if "ctxt_switches" in line:
                    total += int(line.split()[1])
    return total


def shares(raw_files: list[Path]) -> tuple[int, collections.Counter, collections.Counter]:
    """(samples, inclusive, self) from py-spy's raw (collapsed stack) output."""
    inclusive: collections.Counter = collections.Counter()
    own: collections.Counter = collections.Counter()
    total = 0
    for path in raw_files:
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            samples = int(count)
            total += samples
            frames = [_LINE.sub(")", frame) for frame in stack.split(";")[1:]]  # [0]: thread
            for frame in set(frames):
                inclusive[frame] += samples
            if frames:
                own[frames[-1]] += samples
    return total, inclusive, own


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10, help="load phase length (10)")
    parser.add_argument("--concurrency", type=int, default=16, help="clients (16)")
    parser.add_argument("--rows", type=int, default=1, help="records per request (1)")
    parser.add_argument("--top", type=int, default=35, help="rows per table (35)")
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument("--py-spy", type=Path, default=DEFAULT_PY_SPY, help="py-spy binary")
    parser.add_argument("--raw", type=Path, help="also keep py-spy's collapsed stacks here")
    args = parser.parse_args(argv)
    if not args.py_spy.exists():
        print(f"{args.py_spy} not found: `make bench-venv` installs py-spy into .venv-bench")
        return 2

    with tempfile.TemporaryDirectory(prefix="profile-logic-") as tmp:
        work = Path(tmp)
        artifacts = build_sklearn_artifacts(work / "artifacts")
        width = artifacts.credit_features(credit_records(1)).shape[1]
        write_dense_savedmodel(work / "models" / MODEL / "1", width)
        (work / "models" / "models.config").write_text(
            f'model_config_list {{\n  config {{\n    name: "{MODEL}"\n'
            f'    base_path: "/models/{MODEL}"\n    model_platform: "tensorflow"\n  }}\n}}\n'
        )
        config = artifacts.write_config(
            "profile.yaml",
            {
                "default": MODEL,
                "pipelines": {
                    MODEL: {"transformer": "credit/transformer.pkl", "graph_model": MODEL}
                },
            },
        )
        graph = start_graph_service(work / "models" / "models.config", work / "logs")
        try:
            port = free_port()
            kit = start_server(
                [script("logic-service"), "--config", str(config), "--bind", f"127.0.0.1:{port}"],
                port,
                work / "logs" / "logic.log",
                ready_path="/ready",
                ready_status=(200,),
                env={"GRAPH_SERVICE_URL": graph.url},
            )
            try:
                body = write_bodies(work, artifacts, args.rows)["kit"]
                workers = psutil.Process(kit.process.pid).children()
                raw = [work / f"worker-{w.pid}.txt" for w in workers]
                spies = [
                    subprocess.Popen(
                        [
                            str(args.py_spy),
                            "record",
                            f"--pid={worker.pid}",
                            f"--rate={args.rate}",
                            f"--duration={int(args.seconds) + 1}",
                            "--gil",
                            "--nonblocking",
                            "--format=raw",
                            f"--output={out}",
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE,
                        text=True,
                    )
                    for worker, out in zip(workers, raw, strict=True)
                ]
                switches = context_switches(kit.process.pid)
                cpu = tree_cpu(kit.process.pid)
                load, _ = drive(
                    kit.url + "/get_score",
                    body,
                    concurrency=args.concurrency,
                    count=10**6,
                    seconds=args.seconds,
                    trees={},
                )
                cpu = tree_cpu(kit.process.pid) - cpu
                switches = context_switches(kit.process.pid) - switches
                for spy in spies:
                    _, err = spy.communicate(timeout=args.seconds + 60)
                    if spy.returncode != 0:
                        print(f"py-spy failed ({spy.returncode}): {err.strip()[-500:]}")
                        return 1
            finally:
                kit.stop()
        finally:
            graph.stop()
        answered = max(1, len(load["latencies"]))
        total, inclusive, own = shares(raw)
        if args.raw:
            args.raw.write_text("".join(path.read_text() for path in raw))

    print(
        f"\nlogic tier, {args.concurrency} clients, {args.rows}-row bodies, {args.seconds:g} s: "
        f"{answered / load['wall']:.0f} req/s, {cpu / answered * 1000:.3f} ms CPU/req "
        f"(process tree), {switches / answered:.1f} context switches/req, "
        f"statuses {load['statuses']}"
    )
    print(f"py-spy --gil: {total} samples over {len(raw)} workers\n")
    for title, counter in (("inclusive", inclusive), ("self", own)):
        print(f"| {title} % | function (file) |\n|---:|---|")
        for frame, samples in counter.most_common(args.top):
            print(f"| {100 * samples / max(1, total):.1f} | {frame} |")
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())

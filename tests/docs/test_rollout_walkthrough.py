"""docs/rollout.md runs as written: the stack started the way `make up` starts it
(scripts/stack.py up, on free ports, in a copy of the repository's layout), then every ```sh
block of the page, in order, in one bash, from that copy's root."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devtools.servers import STACK_PY, free_port, stack_up

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "rollout.md"
EXAMPLE = ROOT / "examples" / "credit"
START_TIMEOUT = 600
WALK_TIMEOUT = 900


def sh_blocks(text: str) -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```$", text, flags=re.DOTALL | re.MULTILINE)


def test_the_page_uses_make_ups_addresses_and_restores_the_example() -> None:
    """What the blocks assume of `make up` is what scripts/stack.py does."""
    blocks = sh_blocks(DOC.read_text())
    assert len(blocks) >= 6
    assert "LOGIC=${LOGIC:-http://127.0.0.1:5000}" in blocks[0]
    assert "GRAPH=${GRAPH:-http://127.0.0.1:8501}" in blocks[0]
    stack = STACK_PY.read_text()
    assert 'default=5000, help="logic service port"' in stack
    assert 'default=8501, help="graph REST port"' in stack
    original = (EXAMPLE / "pipelines.yaml").read_text()
    assert f"cat > examples/credit/pipelines.yaml <<'EOF'\n{original}EOF\n" in blocks[-1]


@dataclass
class Stack:
    work: Path
    process: subprocess.Popen
    output: Path
    logic_url: str
    graph_url: str

    def text(self) -> str:
        return self.output.read_text(errors="replace")


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    """`make up` in a copy of the repository's layout: examples/credit, models/, run/, .venv."""
    work = tmp_path / "repo"
    shutil.copytree(
        EXAMPLE,
        work / "examples" / "credit",
        ignore=shutil.ignore_patterns("artifacts", "__pycache__"),
    )
    (work / ".venv").symlink_to(Path(sys.executable).parent.parent, target_is_directory=True)
    ports = {"graph": free_port(), "grpc": free_port(), "logic": free_port()}
    output = tmp_path / "stack.out"
    argv = [
        "up",
        "--example-dir",
        str(work / "examples" / "credit"),
        "--models-dir",
        str(work / "models"),
        "--run-dir",
        str(work / "run"),
        "--graph-port",
        str(ports["graph"]),
        "--grpc-port",
        str(ports["grpc"]),
        "--logic-port",
        str(ports["logic"]),
        "--config-poll-seconds",
        "1",
        "--timeout",
        str(START_TIMEOUT),
    ]
    with stack_up(argv, output, cwd=work, timeout=START_TIMEOUT) as process:
        yield Stack(
            work,
            process,
            output,
            f"http://127.0.0.1:{ports['logic']}",
            f"http://127.0.0.1:{ports['graph']}",
        )


@pytest.mark.slow
def test_the_rollout_walkthrough_runs_as_written(stack: Stack) -> None:
    blocks = sh_blocks(DOC.read_text())
    # -e: a failing step ends the walk as it would stop a reader; each block announced.
    script = "set -e\n" + "".join(
        f"echo '### block {number}'\n{block}" for number, block in enumerate(blocks, start=1)
    )
    result = subprocess.run(
        ["bash", "-c", script],
        cwd=stack.work,
        env={**os.environ, "LOGIC": stack.logic_url, "GRAPH": stack.graph_url},
        capture_output=True,
        text=True,
        timeout=WALK_TIMEOUT,
        check=False,
    )
    logic_log = (stack.work / "run" / "logic.log").read_text(errors="replace")
    report = f"{result.stdout}\n{result.stderr}\n--- logic.log (tail) ---\n{logic_log[-4000:]}"
    assert result.returncode == 0, report
    out = result.stdout
    assert f"### block {len(blocks)}" in out, report
    assert "logic tier ready" in out
    assert out.lower().count("x-model-version: canary") == 2, report
    summary = re.search(r"stable vs canary: (\d+) scores compared, mean \|diff\| ([\d.]+)", out)
    assert summary and int(summary.group(1)) > 450, report  # 3 scores x ~95% of 200 requests
    assert float(summary.group(2)) > 0  # version 2 is another model: its scores differ
    assert re.search(r"canary: weight +5, \d+ requests", out)
    assert "x-model-version: latest" in out.lower()
    assert "traffic reload refused" not in logic_log
    assert logic_log.count("traffic generation") == 2
    # The page leaves the example's pipeline file as it found it.
    restored = (stack.work / "examples" / "credit" / "pipelines.yaml").read_text()
    assert restored == (EXAMPLE / "pipelines.yaml").read_text()

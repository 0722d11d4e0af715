"""Reading the pipeline file while an editor rewrites it: the stat and the bytes a reload
judges come from the same version, so one edit is judged once (a mismatched pair made the
reloader judge the same content again when the next poll saw the stat it had missed)."""

from __future__ import annotations

import threading
from pathlib import Path

from logic_service.traffic.reload import FileState


def test_stat_and_bytes_come_from_one_version_while_the_file_is_rewritten(
    tmp_path: Path,
) -> None:
    path = tmp_path / "pipelines.yaml"
    versions = [b"pipelines: {credit: {}}\n", b"pipelines: {credit: {graph_model: m}}\n" * 40]
    path.write_bytes(versions[0])
    stop = threading.Event()

    def rewrite_in_place() -> None:  # truncate, then write, a thousand saves a second
        turn = 0
        while not stop.wait(0.001):
            turn += 1
            path.write_bytes(versions[turn % 2])

    writer = threading.Thread(target=rewrite_in_place)
    writer.start()
    try:
        states = [FileState.read(path) for _ in range(3000)]
    finally:
        stop.set()
        writer.join()
    mismatched = [s for s in states if s.stat is None or s.stat[1] != len(s.text)]
    assert not mismatched, (
        f"{len(mismatched)} of {len(states)} reads paired a stat with other bytes"
    )
    assert set(versions) <= {s.text for s in states}  # the reads did see the rewrites


def test_an_unreadable_file_is_an_empty_state(tmp_path: Path) -> None:
    state = FileState.read(tmp_path / "missing.yaml")
    assert (state.stat, state.digest, state.text) == (None, None, b"")

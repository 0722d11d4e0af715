"""The shared board: what one process publishes, a forked process reads (never a torn write)."""

from __future__ import annotations

import os

import pytest

from logic_service.traffic.board import BoardFullError, TrafficBoard


def test_a_generation_published_after_the_fork_reaches_the_child() -> None:
    board = TrafficBoard(capacity=4096)
    assert board.read() is None and board.generation() == 0
    board.publish(1, b"routes: {stable: 100}")
    ready_read, ready_write = os.pipe()
    done_read, done_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: wait for generation 2, report what it read
        try:
            os.read(ready_read, 1)
            seen = board.read()
            os.write(done_write, repr(seen).encode())
        finally:
            os._exit(0)
    board.publish(2, b"routes: {stable: 50, canary: 50}")
    os.write(ready_write, b"x")
    reported = os.read(done_read, 4096).decode()
    os.waitpid(pid, 0)
    assert reported == repr((2, b"routes: {stable: 50, canary: 50}"))


def test_a_write_under_way_or_a_corrupt_text_is_never_read() -> None:
    board = TrafficBoard(capacity=64)
    board.publish(3, b"abc")
    board._map[:8] = (7).to_bytes(8, "big")  # an odd sequence: a writer is in the middle
    assert board.read() is None
    board._map[:8] = (8).to_bytes(8, "big")
    board._map[53] ^= 0xFF  # the text changed under the digest (it starts at byte 52)
    assert board.read() is None


def test_a_file_larger_than_the_board_is_refused_with_the_fix() -> None:
    with pytest.raises(BoardFullError, match="restart the service to apply it"):
        TrafficBoard(capacity=8).publish(1, b"0123456789")

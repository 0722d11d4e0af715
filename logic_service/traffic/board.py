"""The last accepted pipeline file, in memory every process of the service shares.

Made before gunicorn forks (an anonymous shared mapping survives the fork), written only by
the process that judges reloads (the gunicorn master, or the only process without gunicorn),
read by the workers. A worker started later (a restart after a crash) therefore serves what
the others serve, even when the file on disk has since been edited into something refused.

One writer, so no lock: the writer makes the sequence number odd while it writes and even
when done; a reader keeps what it read only when the sequence was even and unchanged around
its read and the digest over generation and text matches.
"""

from __future__ import annotations

import hashlib
import mmap
import struct

CAPACITY = 1 << 20  # the largest pipeline file a reload accepts (bytes)
_HEADER = struct.Struct(">QQI32s")  # sequence, generation, length, sha256(generation + text)


class BoardFullError(ValueError):
    """The text does not fit in the shared mapping."""


class TrafficBoard:
    """Generation number + the text of the file that generation was read from."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self.capacity = capacity
        self._map = mmap.mmap(-1, _HEADER.size + capacity)  # MAP_SHARED | MAP_ANONYMOUS
        self._sequence = 0

    def publish(self, generation: int, text: bytes) -> None:
        """Make `text` the current generation (one writer only)."""
        if len(text) > self.capacity:
            raise BoardFullError(
                f"the pipeline file is {len(text)} bytes; a reload takes files up to "
                f"{self.capacity} bytes: restart the service to apply it"
            )
        self._sequence += 1  # odd: being written
        self._map[:8] = struct.pack(">Q", self._sequence)
        start = _HEADER.size
        self._map[start : start + len(text)] = text
        digest = _digest(generation, text)
        self._map[8 : _HEADER.size] = _HEADER.pack(0, generation, len(text), digest)[8:]
        self._sequence += 1  # even: complete
        self._map[:8] = struct.pack(">Q", self._sequence)

    def read(self) -> tuple[int, bytes] | None:
        """(generation, text), or None when nothing was published or a write is under way."""
        before, generation, length, digest = _HEADER.unpack(self._map[: _HEADER.size])
        if before == 0 or before % 2 or length > self.capacity:
            return None
        text = self._map[_HEADER.size : _HEADER.size + length]
        (after,) = struct.unpack(">Q", self._map[:8])
        if after != before or _digest(generation, text) != digest:
            return None
        return generation, text

    def generation(self) -> int:
        """The published generation (0 before the first), without reading the text."""
        return struct.unpack(">Q", self._map[8:16])[0]


def _digest(generation: int, text: bytes) -> bytes:
    return hashlib.sha256(struct.pack(">Q", generation) + text).digest()

"""Per-model call slots: one model's hung or slow calls never take another model's threads.

Each model has its own bounded set of slots. A call takes one for as long as the model runs
and gives it back after; when a model's slots are all taken the request waits at most
SLOT_WAIT_SECONDS (50 ms: under plain load a slot frees within a millisecond, so a burst is
not refused) and is then answered RESOURCE_EXHAUSTED (429), so nothing queues behind a stuck
model and no queue time worth counting lands on any deadline. The call itself runs in the request thread
(no hand-off to another pool: that costs more than a small model's whole run), and the
deadline is enforced inside TensorFlow through the Session callable's RunOptions.

The limit defaults to the request thread count when one model is served (no change for a
single model) and to three quarters of it with several, so a stuck model always leaves
threads for the others.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from graph_service.errors import ServingError

SLOT_WAIT_SECONDS = 0.05


class ResourceExhaustedError(ServingError):
    code = "RESOURCE_EXHAUSTED"


class UnavailableError(ServingError):
    code = "UNAVAILABLE"


def default_limit(threads: int, models: int) -> int:
    """Slots per model: all request threads for one model, else 3/4 of them (at least 1)."""
    if models <= 1:
        return threads
    return max(1, threads - max(1, threads // 4))


class ModelPools:
    """Bounded slots per model name; `close` refuses new calls and waits for running ones."""

    def __init__(self, limit: Callable[[], int], wait_seconds: float = SLOT_WAIT_SECONDS) -> None:
        self._limit = limit
        self._wait = wait_seconds
        self._lock = threading.Condition()
        self._inflight: dict[str, int] = {}
        self._closed = False

    @contextmanager
    def slot(self, model: str) -> Iterator[None]:
        """Hold one of `model`'s slots for the duration of a call, or raise 429 (full) / 503."""
        with self._lock:
            give_up = time.monotonic() + self._wait
            while True:
                if self._closed:
                    raise UnavailableError("Server is shutting down; retry on another replica")
                limit = self._limit()
                busy = self._inflight.get(model, 0)
                if busy < limit:
                    break
                left = give_up - time.monotonic()
                if left <= 0:
                    raise ResourceExhaustedError(
                        f"Model {model} has {busy} calls in flight, its limit "
                        f"(--model_max_inflight={limit}); retry later, or raise the limit"
                    )
                self._lock.wait(left)
            self._inflight[model] = busy + 1
        try:
            yield
        finally:
            with self._lock:
                self._inflight[model] -= 1
                if not self._inflight[model]:
                    del self._inflight[model]
                self._lock.notify_all()

    def inflight(self) -> dict[str, int]:
        with self._lock:
            return dict(self._inflight)

    def close(self, timeout: float = 10.0) -> bool:
        """Refuse new calls, wait up to `timeout` s for running ones; True when all ended."""
        deadline = time.monotonic() + timeout
        with self._lock:
            self._closed = True
            while self._inflight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(left)
        return True

"""Adaptive micro-batching: concurrent requests for one graph target become one `:predict`.

Request threads hand in rows that are already checked and shaped for the graph (a bad request
never gets here) and wait, each until its own deadline. A lone request (nothing queued, a
graph call slot free, `max_wait` 0) is sent by its own thread at once: no hand-over to another
thread, which costs a lone request about 0.1 ms of CPU. Otherwise it queues, and per process
`slots` sender threads take whatever is queued as soon as a slot is free: under load the queue
fills while the previous call is in flight. A batch
holds requests with the same input layout and output choice, at most `max_rows` rows (one
larger request goes alone). The graph's answer is split back by row counts; a graph error
fails the requests of that batch only, and a refused batch is re-sent request by request so
each gets the answer it would have got alone.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from logic_service.deadline import Deadline
from logic_service.errors import GraphRejectedError, GraphTimeoutError, LogicError
from logic_service.graph.client import GraphContractError

log = logging.getLogger(__name__)

_QUEUED, _SENT, _DONE = 0, 1, 2


class Signal:
    """A one-shot event on a bare lock: `set` wakes the waiter directly. threading.Event
    wakes it into a second wait for the Condition lock `set` still holds, a context switch
    per request on the hot path."""

    __slots__ = ("_lock", "_set")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()
        self._set = False

    def set(self) -> None:
        if not self._set:
            self._set = True
            self._lock.release()

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: float) -> bool:
        """True once set; False when `timeout` seconds pass first."""
        if self._set:
            return True
        if timeout <= 0 or not self._lock.acquire(timeout=timeout):
            return self._set
        self._lock.release()  # let any later wait() return at once
        return True


@dataclass(eq=False)
class Entry:
    """One request's rows waiting for (or riding in) a batch."""

    inputs: Any  # {input name: ndarray} with `rows` leading rows
    rows: int
    key: Hashable  # requests with equal keys can share a batch
    deadline: Deadline
    call_limit: float  # the most this request lets one graph call take
    request_id: str
    enqueued: float = field(default_factory=time.monotonic)
    state: int = _QUEUED
    result: Any = None
    error: LogicError | None = None
    batch_id: int = 0
    batch_size: int = 0
    done: Signal = field(default_factory=Signal)

    def call_timeout(self) -> float:
        return min(self.deadline.remaining(), self.call_limit)


# send(entries) -> one result per entry, in order; raises a LogicError for the whole batch.
SendBatch = Callable[[Sequence[Entry]], list[Any]]
# observe(rows in the batch, seconds each of its requests waited in the queue)
Observe = Callable[[int, list[float]], None]


class Batcher:
    """One queue and its sender threads, per graph target and worker process."""

    def __init__(
        self,
        name: str,
        send: SendBatch,
        *,
        max_rows: int = 256,
        max_wait: float = 0.0,
        slots: int = 1,
        observe: Observe | None = None,
    ) -> None:
        self.name = name
        self._send = send
        self.max_rows = max_rows
        self.max_wait = max_wait
        self.slots = slots
        self._observe = observe
        self._cond = threading.Condition()
        self._queue: deque[Entry] = deque()
        self._ids = itertools.count(1)
        self._pid: int | None = None
        self._free = slots  # graph call slots not in use in this process

    def submit(self, entry: Entry) -> Any:
        """Send `entry` now when it is alone and a slot is free; otherwise queue it and wait
        for its share of a batch's outputs. 504 when its deadline ends first."""
        with self._cond:
            self._start_senders()
            alone = not self._queue and self._free > 0 and self.max_wait <= 0
            if alone:
                self._free -= 1
                entry.state = _SENT
            else:
                self._queue.append(entry)
                self._cond.notify()
        if alone:
            try:
                self._dispatch([entry])
            finally:
                self._release_slot()
            return _outcome(entry)
        if entry.done.wait(entry.deadline.remaining()):
            return _outcome(entry)
        with self._cond:
            if entry.state == _QUEUED:
                self._queue.remove(entry)
                entry.state = _DONE
                raise GraphTimeoutError(
                    f"request deadline ({entry.deadline.budget:.3g}s) passed while queued for "
                    f"graph {self.name}; the graph tier is busy"
                )
        if entry.done.is_set():  # answered while we took the lock
            return _outcome(entry)
        raise GraphTimeoutError(
            f"graph {self.name} did not answer within the request deadline "
            f"({entry.deadline.budget:.3g}s, batch {entry.batch_id} of {entry.batch_size})"
        )

    def queued(self) -> int:
        return len(self._queue)

    def fail_queued(self, error: LogicError) -> int:
        """Answer every queued request with `error` now (the target's breaker opened: the
        call slot they wait for may never come free). Batches in flight are left alone."""
        with self._cond:
            queued, self._queue = self._queue, deque()
            _fail(
                queued, error
            )  # under the lock: a waiter at its deadline must not see them queued
        return len(queued)

    def _start_senders(self) -> None:
        """Sender threads of this process (threads do not survive gunicorn's fork)."""
        pid = os.getpid()
        if self._pid == pid:
            return
        self._pid = pid
        self._free = self.slots
        for number in range(self.slots):
            threading.Thread(
                target=self._run, name=f"batcher-{self.name}-{number}", daemon=True
            ).start()

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            try:
                if batch:
                    self._dispatch(batch)
            finally:
                self._release_slot()

    def _release_slot(self) -> None:
        """A graph call ended: its slot is free for whatever queued meanwhile."""
        with self._cond:
            self._free += 1
            if self._queue:
                self._cond.notify()

    def _next_batch(self) -> list[Entry]:
        """Wait for a queued request and a free slot; take the slot and a batch."""
        with self._cond:
            while not self._queue or self._free <= 0:
                self._cond.wait()
            self._free -= 1
            if self.max_wait > 0:
                until = self._queue[0].enqueued + self.max_wait
                while sum(e.rows for e in self._queue) < self.max_rows:
                    left = until - time.monotonic()
                    if left <= 0 or not self._queue:
                        break
                    self._cond.wait(left)
            return self._take()

    def _take(self) -> list[Entry]:
        """FIFO: the oldest live request and those after it that fit its key and the row cap."""
        batch: list[Entry] = []
        rows = 0
        key = None
        kept: deque[Entry] = deque()
        while self._queue:
            entry = self._queue.popleft()
            if entry.deadline.expired():
                entry.state = _DONE
                entry.error = GraphTimeoutError(
                    f"request deadline ({entry.deadline.budget:.3g}s) passed while queued for "
                    f"graph {self.name}; the graph tier is busy"
                )
                entry.done.set()
                continue
            fits = not batch or (entry.key == key and rows + entry.rows <= self.max_rows)
            if fits:
                key = entry.key
                rows += entry.rows
                entry.state = _SENT
                batch.append(entry)
            else:
                kept.append(entry)
            if rows >= self.max_rows:
                break
        kept.extend(self._queue)
        self._queue = kept
        return batch

    def _dispatch(self, batch: list[Entry]) -> None:
        batch_id = next(self._ids)
        now = time.monotonic()
        for entry in batch:
            entry.batch_id, entry.batch_size = batch_id, len(batch)
        if self._observe is not None:
            self._observe(sum(e.rows for e in batch), [now - e.enqueued for e in batch])
        try:
            results = self._send(batch)
        except GraphRejectedError as error:
            if len(batch) == 1 or isinstance(error, GraphContractError):
                _fail(batch, error)
                return
            # The graph refused the batch (a 4xx): each request gets the answer it would
            # have got alone, so one bad row fails its own request only.
            for entry in batch:
                try:
                    _finish(entry, self._send([entry])[0])
                except LogicError as single:
                    _fail([entry], single)
                except Exception as unexpected:  # the waiter must always wake
                    _fail([entry], _internal(unexpected))
            return
        except LogicError as error:
            _fail(batch, error)
            return
        except Exception as unexpected:  # a sender thread must never die
            log.exception("graph batch %d failed unexpectedly", batch_id)
            _fail(batch, _internal(unexpected))
            return
        for entry, result in zip(batch, results, strict=True):
            _finish(entry, result)


def _finish(entry: Entry, result: Any) -> None:
    entry.result = result
    entry.state = _DONE
    entry.done.set()


def _fail(entries: Sequence[Entry], error: LogicError) -> None:
    for entry in entries:
        entry.error = error
        entry.state = _DONE
        entry.done.set()


def _outcome(entry: Entry) -> Any:
    if entry.error is not None:
        raise entry.error
    return entry.result


def _internal(error: Exception) -> LogicError:
    return LogicError(f"internal error in the graph batcher: {type(error).__name__}: {error}")

"""gunicorn worker for the logic tier: probes on their own lanes, and a drain that refuses.

Hand-made, on top of a library: a subclass of gunicorn's threaded worker (`gthread`'s
`ThreadWorker`), reusing its connection handling (`TConn`), its parser and its keep-alive
loop, and replacing what it does per request. It builds on gunicorn internals that are not a
public API, so the logic extra pins `gunicorn>=27.0.1,<27.1` (the release the tests ran) and
`gunicorn_check.py` refuses, at start and in one line, a gunicorn whose internals differ.

Why, measured (`make bench-logic` and `make profile-logic`, 16 clients, 2 shared cores; the
docs/benchmarks.md has the runs): items 1 and 2 are behaviour plain gthread lacks
(a probe stuck behind scoring, a drain that leaves the backlog hanging); items 5 to 7 cut the
tier's CPU per request from 0.56-0.61 ms to 0.46-0.49 ms in interleaved A/B runs (RequestPool
about 4%, the linger with the request log's direct write 0.53-0.56 against 0.56-0.61, one CPU
per worker 0.46-0.49 against 0.50-0.56) and context switches per request from 8.1-8.4 to 3.5.

What it does not do: inspect TLS traffic (with gunicorn's own TLS every request takes the
usual pool, as in gthread), HTTP/2, or run under another gunicorn release range. Pinned by
tests/logic_service/http/test_worker.py (probe lanes with every thread stuck, drain refusing,
linger giving way to queued requests, pinning and replacement) and test_gunicorn_check.py.

What gunicorn's threaded worker (`gthread`) does not give us:

1. **Probes never queue behind scoring.** gthread hands every connection to one thread pool.
   When all its threads wait on a frozen graph tier, `GET /health` waits with them and
   Kubernetes restarts a healthy pod. This worker looks at a request before choosing a
   thread: the main loop peeks (MSG_PEEK, nothing consumed) at the request line once the
   socket is readable, and runs `GET /health` and `GET /ready` on small pools of their own
   (one per path, so a slow readiness check cannot hold up liveness either). Everything
   else goes to the usual pool of `threads`. The probes stay on the service port.
   A new connection waits in the poller until its first bytes arrive, instead of taking a
   pool thread to wait for them (gthread's own default).

2. **SIGTERM drains and refuses.** On SIGTERM the worker marks the requests it serves from
   then on as draining (`/ready` answers 503, see logic_service/http/drain.py), takes the
   connections already waiting in the listen backlog, then closes its copy of the listening
   socket: once every worker has (the master closes its copy first), new connections are
   refused at once instead of hanging in the backlog until the process exits. Requests
   already received, including ones arriving on kept-alive connections during gthread's
   short linger, are answered normally; gthread then exits after at most graceful_timeout.

3. **A connection gthread will close is announced as closing.** After a response gthread
   discards the request body the app left unread, but gives up past 64 KB and closes the
   connection, although the response promised keep-alive: the client's next request on it
   fails (found by the fault suite's fuzzing: a large body refused with 415 or 413). When
   that much body is left at start_response, this worker marks the response
   `Connection: close`, so clients open a new connection instead.

4. **The deadline counts from arrival.** When a request's first bytes are seen (the
   moment it is handed to a pool) is stamped into the environ (deadline.RECEIVED_KEY), so the
   request budget includes the wait for a free request thread, not only the time after.

5. **Less bookkeeping per request.** The request threads are a `RequestPool`: gthread's
   ThreadPoolExecutor builds a Future (with its own Condition) and takes a Python-level
   Semaphore on every submit, where gthread only needs "run this, then call that"; and the
   heartbeat the arbiter watches (a utime syscall per main-loop turn) is written at most
   every second. Both showed in `make profile-logic`.

6. **A kept-alive connection stays with its thread for a moment.** After a response the
   request thread waits up to `linger` (LOGIC_KEEPALIVE_LINGER_MS, 5 ms) for the connection's
   next request and serves it itself, instead of handing the connection to the main loop's
   poller and the request to another thread: a busy client's next request skips two thread
   wake-ups and four syscalls (docs/operations.md, Probes, shutdown and worker loss, for the
   figures).
   One thread of the pool never lingers, and a lingering thread gives up within a millisecond
   once a request is queued for a thread, and on drain. A probe arriving meanwhile is served
   by the lingering thread: it is a free thread, which is all a probe lane guarantees.

7. **Each worker on its own CPU, when there are as many workers as CPUs.** A worker's threads
   hand Python's GIL to one another at nearly every socket call; when the scheduler spreads
   them over several cores each hand-over is a cross-core wake-up. Pinned (the master picks
   for each new worker the allowed CPU fewest live workers use), a worker's threads take
   turns on one core: half the context switches and about 10% less CPU per request under
   load (docs/operations.md, Probes, shutdown and worker loss). LOGIC_PIN_WORKERS=auto pins
   only when the workers cover every CPU the service may use (a dedicated box, or a container
   with its own cpuset); on a large shared node the workers stay free to move.

TLS listeners are not inspected (the request line is encrypted): with certfile/keyfile set
every request takes the usual pool, as in plain gthread.
"""

from __future__ import annotations

import errno
import os
import queue
import select
import selectors
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

from gunicorn.http import parser as gunicorn_parser
from gunicorn.http.body import LengthReader
from gunicorn.workers.gthread import DEFAULT_WORKER_DATA_TIMEOUT, TConn, ThreadWorker

from logic_service.deadline import RECEIVED_KEY
from logic_service.http.drain import DRAINING_KEY

PROBE_PATHS = ("/health", "/ready")
DEFAULT_PROBE_THREADS = 2
# Long enough for "GET /health?x HTTP/1.1" and far shorter than any request line we care about.
PEEK_BYTES = 64
# What gthread drains of an unread body before it closes the connection instead.
DRAIN_LIMIT = getattr(gunicorn_parser, "_DRAIN_MAX_BYTES", 64 * 1024)
DEFAULT_LINGER = 0.005
# How often a lingering thread looks whether a queued request needs it more.
LINGER_SLICE = 0.001


class Task:
    """One submitted call: the part of a Future that gthread uses (result, callbacks)."""

    __slots__ = ("_callbacks", "_done", "_error", "_lock", "_result", "args", "fn")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.fn, self.args = fn, args
        self._result: Any = None
        self._error: BaseException | None = None
        self._done = False
        self._callbacks: list[Callable[[Task], Any]] = []
        self._lock = threading.Lock()

    def run(self) -> None:
        try:
            self._result = self.fn(*self.args)
        except BaseException as error:  # handed to result(), as a Future would
            self._error = error
        with self._lock:
            self._done = True
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback(self)

    def add_done_callback(self, callback: Callable[[Task], Any]) -> None:
        """Called on the thread that ran the task, or at once when it already has."""
        with self._lock:
            if not self._done:
                self._callbacks.append(callback)
                return
        callback(self)

    def result(self) -> Any:
        if self._error is not None:
            raise self._error
        return self._result

    @staticmethod
    def cancelled() -> bool:
        return False


class RequestPool:
    """A fixed set of threads taking Tasks from one queue (what gthread asks of its pool)."""

    def __init__(self, threads: int, name: str = "request") -> None:
        self._tasks: queue.SimpleQueue[Task | None] = queue.SimpleQueue()
        self._lingering = 0
        self._linger_lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{number}", daemon=True)
            for number in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[..., Any], *args: Any) -> Task:
        task = Task(fn, args)
        self._tasks.put(task)
        return task

    def backlog(self) -> int:
        """Tasks submitted and not yet taken by a thread."""
        return self._tasks.qsize()

    def start_lingering(self) -> bool:
        """Claim a lingering place; False when every other thread already lingers, so one
        thread is always left to take new tasks at once."""
        with self._linger_lock:
            if self._lingering >= len(self._threads) - 1:
                return False
            self._lingering += 1
            return True

    def stop_lingering(self) -> None:
        with self._linger_lock:
            self._lingering -= 1

    def shutdown(self, wait: bool = True) -> None:
        for _ in self._threads:
            self._tasks.put(None)
        if wait:
            for thread in self._threads:
                thread.join()

    def _work(self) -> None:
        while (task := self._tasks.get()) is not None:
            task.run()


def pins_workers(mode: str, workers: int, cpus: int) -> bool:
    """Whether workers get a CPU each: always (on), never (off), or when they cover every
    CPU the service may use (auto)."""
    return mode == "on" or (mode == "auto" and workers >= cpus)


def choose_cpu(allowed: Iterable[int], taken: Iterable[int]) -> int:
    """The allowed CPU the fewest live workers are pinned to (the lowest of a tie), so a
    replacement worker takes the CPU its dead predecessor left."""
    counts = Counter(taken)
    return min(sorted(allowed), key=lambda cpu: counts[cpu])


def probe_lane(head: bytes, paths: Iterable[str] = PROBE_PATHS) -> str | None:
    """The probe path a request starts with (`GET /health ...`), else None.

    `head` is the start of the request as read from the socket. Only a complete match
    counts: a request line cut short, another method or a longer path such as
    /healthz goes to the request pool.
    """
    for path in paths:
        prefix = b"GET " + path.encode("ascii")
        if head.startswith(prefix) and head[len(prefix) : len(prefix) + 1] in (b" ", b"?"):
            return path
    return None


def unread_body(environ: dict[str, Any]) -> int:
    """Bytes of a Content-Length body the app has not read yet (0 when unknown)."""
    reader = getattr(environ.get("wsgi.input"), "reader", None)
    left = getattr(reader, "length", 0)
    return left if isinstance(left, int) else 0


def _body_consumed(request: Any) -> bool:
    """True when a request's Content-Length body was read to its end (nothing to drain)."""
    body = getattr(request, "body", None)
    reader = getattr(body, "reader", None)
    return (
        isinstance(reader, LengthReader)
        and reader.length == 0
        and body.buf.tell() == 0
        and body.failed is False
    )


class ProbeLaneWorker(ThreadWorker):
    """gthread with reserved lanes for GET /health and GET /ready, and a refusing drain."""

    probe_threads = DEFAULT_PROBE_THREADS
    linger = DEFAULT_LINGER  # seconds; gunicorn.conf.py sets it from LOGIC_KEEPALIVE_LINGER_MS
    cpu: int | None = None  # chosen by the master before the fork (gunicorn.conf.py pre_fork)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.probe_pools: dict[str, RequestPool] = {}
        self.draining = False
        self._notified = 0.0
        self._current = threading.local()  # the connection this thread is serving
        self._linger = 0.0  # seconds, set for this process in init_process

    def get_thread_pool(self) -> RequestPool:  # type: ignore[override]
        return RequestPool(self.cfg.threads)

    def notify(self) -> None:
        """The heartbeat the arbiter checks against `timeout`, written at most every second
        (a quarter of the timeout when that is shorter) instead of on every loop turn."""
        now = time.monotonic()
        if now - self._notified >= min(1.0, self.timeout / 4):
            self._notified = now
            super().notify()

    def init_process(self) -> None:
        # Before super(): gunicorn's init_process ends by running the main loop.
        # TLS is not lingered on: bytes inside the TLS layer do not make the socket readable.
        self._linger = 0.0 if self.cfg.is_ssl else min(self.linger, self.cfg.keepalive)
        if self.cpu is not None:
            os.sched_setaffinity(0, {self.cpu})
            self.log.info("worker %s runs on CPU %d", os.getpid(), self.cpu)
        self.probe_pools = {
            path: RequestPool(self.probe_threads, name=f"probe{path}") for path in PROBE_PATHS
        }
        super().init_process()

    def load_wsgi(self) -> None:
        super().load_wsgi()
        app = self.wsgi

        def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
            environ[DRAINING_KEY] = self.draining
            environ[RECEIVED_KEY] = getattr(self._current, "received", None)

            def start(status: str, headers: list, exc_info: Any = None) -> Any:
                if unread_body(environ) >= DRAIN_LIMIT:
                    # start_response is bound to gunicorn's Response for this request.
                    response = getattr(start_response, "__self__", None)
                    if hasattr(response, "force_close"):
                        response.force_close()
                return start_response(status, headers, exc_info)

            return app(environ, start)

        self.wsgi = wsgi

    def run(self) -> None:
        try:
            super().run()
        finally:
            for pool in self.probe_pools.values():
                pool.shutdown(wait=False)

    # -- choosing a lane --------------------------------------------------------------

    def handle(self, conn: TConn) -> Any:
        """gthread's handle, then the connection's next requests while they come in linger."""
        while True:
            keep = self.handle_one(conn)
            if keep is not True or not self._next_request_arrives(conn):
                return keep

    def handle_one(self, conn: TConn) -> Any:
        """One request, as gthread serves it (probe lanes never linger)."""
        self._current.received = getattr(conn, "received", None)
        return super().handle(conn)

    def _next_request_arrives(self, conn: TConn) -> bool:
        """Wait up to `linger` for the next request on a kept-alive connection; True when it
        came (this thread serves it, a probe too: a lingering thread is a free one), False to
        hand the connection back to the poller (nothing came, or the worker stops)."""
        if self._linger <= 0 or conn.is_http2 or not self._serving():
            return False
        if not self.tpool.start_lingering():
            return False
        try:
            # Bytes a body drain read ahead are the next request already there.
            if not conn.parser.unreader.buf.getvalue():
                readable = select.poll()
                readable.register(conn.sock, select.POLLIN)
                until, left = time.monotonic() + self._linger, self._linger
                while not readable.poll(min(left, LINGER_SLICE) * 1000):
                    left = until - time.monotonic()
                    if left <= 0 or self.tpool.backlog() or not self._serving():
                        return False
        finally:
            self.tpool.stop_lingering()
        conn.received = time.monotonic()
        return True

    def _keepalive_after(self, conn: TConn, keepalive: bool) -> bool:
        """gthread's check that the request body was all read, without its two socket
        timeout changes (two syscalls) when the app already read a Content-Length body."""
        if keepalive and _body_consumed(conn.parser.mesg):
            return True
        return super()._keepalive_after(conn, keepalive)

    def _serving(self) -> bool:
        return self.alive and not self.draining

    def enqueue_req(self, conn: TConn) -> None:
        """Run the connection's next request on its lane, or wait until it has sent one."""
        if self.cfg.is_ssl:
            super().enqueue_req(conn)
            return
        head = self._peek(conn)
        if head is None:
            self._wait_for_first_bytes(conn)
            return
        conn.data_ready = True
        conn.received = time.monotonic()
        lane = probe_lane(head)
        if lane is None:
            future = self.tpool.submit(self.handle, conn)
        else:
            future = self.probe_pools[lane].submit(self.handle_one, conn)
        future.add_done_callback(
            lambda done: self.method_queue.defer(self.finish_request, conn, done)
        )

    @staticmethod
    def _peek(conn: TConn) -> bytes | None:
        """The first bytes of the next request without consuming them; None if none yet."""
        if conn.parser is not None:
            # A keep-alive body drain may have read ahead into the next request.
            buffered = conn.parser.unreader.buf.getvalue()
            if buffered:
                return buffered[:PEEK_BYTES]
        try:
            return conn.sock.recv(PEEK_BYTES, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            # Reset or closed: the request pool reads the error and closes it as gthread does.
            return b""

    def _wait_for_first_bytes(self, conn: TConn) -> None:
        """Park a fresh connection in the poller, as gthread parks a slow one, without a thread."""
        conn.sock.setblocking(False)
        conn.timeout = time.monotonic() + max(self.cfg.keepalive, DEFAULT_WORKER_DATA_TIMEOUT)
        self.pending_conns.append(conn)
        self.poller.register(
            conn.sock, selectors.EVENT_READ, partial(self.on_pending_socket_readable, conn)
        )

    # -- stopping -----------------------------------------------------------------------

    def handle_exit(self, sig: int, frame: Any) -> None:
        """SIGTERM: report draining from now on, then stop listening from the main loop."""
        first = self.alive and not self.draining
        self.draining = True
        super().handle_exit(sig, frame)
        if first:
            # The poller is the main loop's: act there, not inside the signal handler.
            self.method_queue.defer(self._stop_listening)

    def _stop_listening(self) -> None:
        """Take every connection already queued on the listeners, then close them."""
        self.set_accept_enabled(False)
        for listener in self.sockets:
            if listener.sock is None:
                continue
            listener.setblocking(False)
            while True:
                try:
                    client, address = listener.accept()
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as error:
                    if error.errno == errno.ECONNABORTED:
                        continue
                    break
                self.nr_conns += 1
                self.enqueue_req(TConn(self.cfg, client, address, listener.getsockname()))
            listener.close()
        self.log.info("draining: listeners closed, %d connection(s) to finish", self.nr_conns)

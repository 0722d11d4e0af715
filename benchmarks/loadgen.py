"""A lean load generator: one keep-alive `http.client` connection per thread, nothing else.

The benchmarks run it as its own process so the CPU it burns is never counted as a server's
and never hidden: it reports its own CPU seconds for the measured phase. A handshake on
stdin/stdout lets the caller read the servers' CPU counters exactly around that phase:

    stdout -> {"ready": true}       every thread connected and sent its warm-up requests
    stdin  <- go
    stdout -> {"latencies": [...], "statuses": {...}, "errors": [...], "wall": s, "cpu": s}

Each phase is bounded twice: at most `--requests` requests and at most `--seconds` seconds,
whichever comes first. Only loopback addresses are accepted.
"""

from __future__ import annotations

import argparse
import http.client
import ipaddress
import itertools
import json
import resource
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

MAX_ERRORS_KEPT = 5


@dataclass
class PhaseResult:
    """What one bounded phase produced; latencies in seconds, only for answered requests."""

    latencies: list[float] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    wall: float = 0.0
    cpu: float = 0.0

    @property
    def answered(self) -> int:
        return len(self.latencies)

    @property
    def failed(self) -> int:
        return sum(count for status, count in self.statuses.items() if status != "200")


def loopback_target(url: str) -> tuple[str, int, str]:
    """(host, port, path) of `url`; refuses anything but http on a loopback address."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"{url!r}: give an http://127.0.0.1:PORT/path URL")
    host = parts.hostname
    address = socket.gethostbyname(host) if host == "localhost" else host
    try:
        loopback = ipaddress.ip_address(address).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"{url!r}: the load generator only targets loopback (127.0.0.1)")
    return host, parts.port or 80, parts.path or "/"


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _post(
    connection: http.client.HTTPConnection, path: str, body: bytes, headers: dict[str, str]
) -> tuple[int, bytes]:
    connection.request("POST", path, body, headers)
    response = connection.getresponse()
    return response.status, response.read()


@dataclass
class _Shared:
    """What the threads of one phase share: the target, the gates and the two bounds."""

    host: str
    port: int
    path: str
    body: bytes
    warmup: int
    requests: int
    ready: threading.Barrier
    go: threading.Event
    issued: Iterator[int]
    deadline: float = 0.0
    headers: dict[str, str] = field(
        default_factory=lambda: {"Content-Type": "application/json", "Connection": "keep-alive"}
    )


def _worker(shared: _Shared, mine: PhaseResult) -> None:
    connection = http.client.HTTPConnection(shared.host, shared.port, timeout=60)
    statuses: Counter[str] = Counter()
    try:
        for _ in range(shared.warmup):
            _post(connection, shared.path, shared.body, shared.headers)
    except (OSError, http.client.HTTPException) as exc:
        mine.errors.append(f"warm-up: {exc!r}")
        connection.close()
    shared.ready.wait()
    shared.go.wait()
    while next(shared.issued) < shared.requests and time.perf_counter() < shared.deadline:
        started = time.perf_counter()
        try:
            status, data = _post(connection, shared.path, shared.body, shared.headers)
        except (OSError, http.client.HTTPException) as exc:
            connection.close()  # http.client reopens it on the next request
            statuses["connection error"] += 1
            if len(mine.errors) < MAX_ERRORS_KEPT:
                mine.errors.append(repr(exc))
            continue
        mine.latencies.append(time.perf_counter() - started)
        statuses[str(status)] += 1
        if status != 200 and len(mine.errors) < MAX_ERRORS_KEPT:
            mine.errors.append(f"HTTP {status}: {data[:200].decode(errors='replace')}")
    connection.close()
    mine.statuses = dict(statuses)


def run(
    url: str,
    body: bytes,
    *,
    concurrency: int,
    requests: int,
    seconds: float,
    warmup: int = 2,
    on_ready: Callable[[], None] | None = None,
) -> PhaseResult:
    """POST `body` to `url` from `concurrency` threads until `requests` or `seconds` run out.

    `on_ready` is called once every connection is open and warmed; the phase starts when it
    returns (the benchmark reads the servers' CPU counters there).
    """
    host, port, path = loopback_target(url)
    shared = _Shared(
        host,
        port,
        path,
        body,
        warmup,
        requests,
        ready=threading.Barrier(concurrency + 1),
        go=threading.Event(),
        issued=itertools.count(),
    )
    per_thread: list[PhaseResult] = [PhaseResult() for _ in range(concurrency)]
    threads = [
        threading.Thread(target=_worker, args=(shared, mine), daemon=True, name=f"load-{i}")
        for i, mine in enumerate(per_thread)
    ]
    for thread in threads:
        thread.start()
    shared.ready.wait(timeout=120)
    if on_ready is not None:
        on_ready()
    cpu_before = _cpu_seconds()
    started = time.perf_counter()
    shared.deadline = started + seconds
    shared.go.set()
    for thread in threads:
        thread.join(seconds + 120)
    result = PhaseResult(wall=time.perf_counter() - started, cpu=_cpu_seconds() - cpu_before)
    totals: Counter[str] = Counter()
    for mine in per_thread:
        result.latencies.extend(mine.latencies)
        totals.update(mine.statuses)
        result.errors.extend(mine.errors[: MAX_ERRORS_KEPT - len(result.errors)])
    result.statuses = dict(totals)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="POST one body to a loopback URL from N keep-alive threads; bounded by a "
        "request count and a time limit. With --handshake, waits for 'go' on stdin."
    )
    parser.add_argument("--url", required=True, help="http://127.0.0.1:PORT/path")
    parser.add_argument("--body-file", required=True, type=Path, help="request body (JSON)")
    parser.add_argument("--concurrency", type=int, default=1, help="client threads (default 1)")
    parser.add_argument("--requests", type=int, default=1000, help="at most this many requests")
    parser.add_argument("--seconds", type=float, default=10.0, help="at most this long (s)")
    parser.add_argument("--warmup", type=int, default=2, help="warm-up requests per thread")
    parser.add_argument(
        "--handshake", action="store_true", help="print a ready line, start on 'go' from stdin"
    )
    args = parser.parse_args(argv)
    try:
        loopback_target(args.url)
        body = args.body_file.read_bytes()
    except (ValueError, OSError) as exc:
        print(f"loadgen: {exc}", file=sys.stderr)
        return 2

    def handshake() -> None:
        if args.handshake:
            print(json.dumps({"ready": True}), flush=True)
            if sys.stdin.readline().strip() != "go":
                raise SystemExit("loadgen: expected 'go' on stdin")

    result = run(
        args.url,
        body,
        concurrency=args.concurrency,
        requests=args.requests,
        seconds=args.seconds,
        warmup=args.warmup,
        on_ready=handshake,
    )
    print(
        json.dumps(
            {
                "latencies": result.latencies,
                "statuses": result.statuses,
                "errors": result.errors,
                "wall": result.wall,
                "cpu": result.cpu,
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

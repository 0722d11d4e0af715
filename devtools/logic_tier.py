"""The logic tier for tests and benchmarks: start `logic-service` (real gunicorn), a tiny graph tier."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from devtools.servers import ServerProcess, free_port, script, start_server


def start_logic_service(
    config: Path,
    log_path: Path,
    *,
    env: dict[str, str] | None = None,
    workers: int = 2,
    threads: int = 4,
    ready_path: str = "/health",
    timeout: float = 60,
) -> ServerProcess:
    """`logic-service --config FILE --bind ...` exactly as the container runs it, returned once
    `ready_path` answers 200."""
    port = free_port()
    argv = [
        script("logic-service"),
        "--config",
        str(config),
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--threads",
        str(threads),
    ]
    return start_server(
        argv,
        port,
        log_path,
        ready_path=ready_path,
        ready_status=[200],
        env={"LOGIC_JSON_LOGS": "1", **(env or {})},
        timeout=timeout,
    )


class TinyGraphTier:
    """A real HTTP server in a thread speaking just enough TF Serving REST for fault tests.

    Each model name has a behaviour: `slow` answers :predict after `delay` seconds, `reject`
    answers 400 with TF Serving's error body, `echo` sums each row, `picky` sums each row after
    `picky_delay` seconds but refuses the whole call (400) when any value exceeds 1000, as a
    graph refuses a batch for one bad row; `cut` announces a body and closes the connection
    a few bytes into it. `freeze()` holds every request (accepted, not answered) until
    `thaw()`, as a stopped process does, without stopping the test process. The real
    graph-service covers the happy path; this one exists because a real server cannot be made
    slow or wrong on demand.
    """

    def __init__(self, n_features: int, port: int | None = None, delay: float = 3.0) -> None:
        self.n_features = n_features
        self.delay = delay
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.request_ids: list[str] = []
        self.connections = 0
        self.predict_calls = 0
        self.metadata_calls = 0
        self.metadata_delay = 0.0  # seconds before GET .../metadata answers
        self.metadata_status = 200  # anything else: TF Serving's error body with that status
        self.picky_delay = 0.0
        # The next N requests arriving on an already used keep-alive connection are dropped
        # without an answer, as a server closing idle connections drops a request sent just
        # as it closes them.
        self.drop_reused = 0
        self.dropped = 0
        self._sockets: list[socket.socket] = []
        self._server: ThreadingHTTPServer | None = None
        self._thawed = threading.Event()
        self._thawed.set()

    def freeze(self) -> None:
        """Hold every request from now on (and those arriving) until `thaw()`."""
        self._thawed.clear()

    def thaw(self) -> None:
        self._thawed.set()

    def wait_thawed(self) -> None:
        self._thawed.wait()

    def start(self) -> TinyGraphTier:
        tier = self

        class Server(ThreadingHTTPServer):
            allow_reuse_address = True

            def handle_error(self, request, client_address) -> None:  # type: ignore[override]
                # A caller that gave up (the 504 case) closes its socket: not a test failure.
                return None

            def process_request(self, request, client_address) -> None:  # type: ignore[override]
                tier.connections += 1
                tier._sockets.append(request)
                super().process_request(request, client_address)

        self._server = Server(("127.0.0.1", self.port), _handler(self))
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop listening and drop open keep-alive connections, as a dead process would."""
        self.thaw()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._sockets.clear()


def _handler(tier: TinyGraphTier) -> Callable[..., BaseHTTPRequestHandler]:
    known = {"slow", "reject", "echo", "picky", "cut"}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            return None

        def _send(self, status: int, payload: object) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _model(self) -> str | None:
            parts = self.path.split("/")
            name = parts[3].split(":")[0] if len(parts) > 3 else None
            return name if name in known else None

        def do_GET(self) -> None:
            tier.wait_thawed()
            name = self._model()
            if name is None:
                self._send(404, {"error": f"Servable not found for request: Latest({self.path})"})
            elif self.path.endswith("/metadata"):
                tier.metadata_calls += 1
                time.sleep(tier.metadata_delay)
                if tier.metadata_status != 200:
                    self._send(tier.metadata_status, {"error": "metadata is broken today"})
                    return
                spec = {
                    "dtype": "DT_FLOAT",
                    "tensor_shape": {
                        "dim": [{"size": "-1"}, {"size": str(tier.n_features)}],
                        "unknown_rank": False,
                    },
                }
                signature = {"inputs": {"x": spec}, "outputs": {"score": spec}}
                self._send(
                    200,
                    {
                        "model_spec": {"name": name, "version": "1"},
                        "metadata": {
                            "signature_def": {"signature_def": {"serving_default": signature}}
                        },
                    },
                )
            else:
                status = {"error_code": "OK", "error_message": ""}
                self._send(
                    200,
                    {
                        "model_version_status": [
                            {"version": "1", "state": "AVAILABLE", "status": status}
                        ]
                    },
                )

        def do_POST(self) -> None:
            tier.wait_thawed()
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            served = getattr(self, "_served", 0)
            self._served = served + 1
            if served and tier.drop_reused > 0:
                tier.drop_reused -= 1
                tier.dropped += 1
                self.close_connection = True
                return
            tier.request_ids.append(self.headers.get("X-Request-ID", ""))
            tier.predict_calls += 1
            name = self._model()
            if name == "slow":
                time.sleep(tier.delay)
            if name == "cut":
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "100")
                self.end_headers()
                self.wfile.write(b'{"outputs": [[')
                self.wfile.flush()
                self.close_connection = True
                return
            if name == "reject":
                self._send(400, {"error": "input size does not match signature: 2!=8 [x]"})
                return
            rows = body["inputs"]["x"]
            if name == "picky":
                time.sleep(tier.picky_delay)
                if any(abs(value) > 1000 for row in rows for value in row):
                    self._send(400, {"error": "a value is out of range for this model"})
                    return
            self._send(200, {"outputs": [[sum(row)] for row in rows]})

    return Handler

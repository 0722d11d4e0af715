"""The benchmark's load generator counts what it is told to and never hides a failure.

A wrong count or a swallowed 500 would make every figure in the benchmark table a lie, so
these run it against a real HTTP server on a free loopback port. No timing is asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from benchmarks import loadgen

LOADGEN = Path(loadgen.__file__)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the servers under test
    seen: list[bytes]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append(body)
        failing = self.path == "/fail"
        answer = b'{"error": "boom"}' if failing else b'{"code": 200}'
        self.send_response(500 if failing else 200)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, list[bytes]]]:
    seen: list[bytes] = []
    handler = type("Handler", (_Handler,), {"seen": seen})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    httpd.shutdown()
    httpd.server_close()


def test_sends_exactly_the_requested_count_plus_warmups(server):
    url, seen = server
    result = loadgen.run(url + "/ok", b'{"data": []}', concurrency=4, requests=50, seconds=60)
    assert result.answered == 50
    assert result.statuses == {"200": 50}
    assert result.failed == 0
    assert len(seen) == 50 + 4 * 2  # two warm-up requests per thread are not counted
    assert set(seen) == {b'{"data": []}'}


def test_server_errors_are_counted_and_shown(server):
    url, _ = server
    result = loadgen.run(url + "/fail", b"{}", concurrency=2, requests=10, seconds=60)
    assert result.statuses == {"500": 10}
    assert result.failed == 10
    assert result.errors and result.errors[0].startswith("HTTP 500: ")
    assert "boom" in result.errors[0]


def test_a_refused_connection_is_an_error_not_a_fast_answer():
    from devtools.servers import free_port

    url = f"http://127.0.0.1:{free_port()}/nobody"
    result = loadgen.run(url, b"{}", concurrency=1, requests=5, seconds=60, warmup=0)
    assert result.answered == 0
    assert result.statuses == {"connection error": 5}
    assert result.failed == 5


def test_handshake_cli_reports_json_after_go(server, tmp_path):
    url, _ = server
    body = tmp_path / "body.json"
    body.write_text('{"data": [1]}')
    process = subprocess.run(
        [
            sys.executable,
            str(LOADGEN),
            f"--url={url}/ok",
            f"--body-file={body}",
            "--concurrency=2",
            "--requests=7",
            "--handshake",
        ],
        input="go\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert process.returncode == 0, process.stderr
    ready, result = (json.loads(line) for line in process.stdout.splitlines())
    assert ready == {"ready": True}
    assert len(result["latencies"]) == 7
    assert result["statuses"] == {"200": 7}
    assert result["cpu"] >= 0


@pytest.mark.parametrize(
    "url", ["http://192.0.2.10:5000/get_score", "https://127.0.0.1/x", "127.0.0.1:5000"]
)
def test_refuses_anything_but_http_on_loopback(url, tmp_path):
    body = tmp_path / "body.json"
    body.write_text("{}")
    process = subprocess.run(
        [sys.executable, str(LOADGEN), f"--url={url}", f"--body-file={body}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert process.returncode == 2
    assert process.stderr.startswith("loadgen: ")
    assert url in process.stderr

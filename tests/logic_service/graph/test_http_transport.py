"""GraphClient's own HTTP/1.1 transport against a raw-socket server that sends exactly the bytes
each test scripts: chunked bodies, Connection: close, HTTP/1.0, 100 Continue, responses split
across TCP segments or cut short, garbage, oversized headers, kept-alive connections the
server drops, and TLS asked of a plain-HTTP server. What is asserted is what a caller sees: the
bytes and status returned, the error class (its HTTP status) and text, and how many
connections the server had to accept.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from logic_service.errors import GraphRejectedError, GraphTimeoutError, GraphUnavailableError
from logic_service.graph.client import GraphCallTimeoutError, GraphClient, GraphConnectError

CLOSE = object()  # a script step: close the connection now
Step = bytes | float | object  # bytes are sent as they are, a float pauses that many seconds
Script = Callable[[int, int, bytes], list[Step]]


def ok(body: bytes, *extra: str, version: str = "1.1") -> bytes:
    headers = "".join(f"{line}\r\n" for line in extra)
    return (
        f"HTTP/{version} 200 OK\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{headers}\r\n"
    ).encode() + body


class RawServer:
    """A TCP server on 127.0.0.1 answering each request with what `script(connection number,
    request number on that connection, request bytes)` returns."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.requests: list[bytes] = []
        self.connections = 0
        self.answered = threading.Semaphore(0)  # released when a script has fully run
        self._open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._open.append(conn)
            number, self.connections = self.connections, self.connections + 1
            threading.Thread(target=self._serve, args=(conn, number), daemon=True).start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        with conn:
            buf = b""
            index = 0
            while True:
                request, buf = _read_request(conn, buf)
                if request is None:
                    return
                self.requests.append(request)
                try:
                    for step in self.script(number, index, request):
                        if step is CLOSE:
                            conn.close()
                            return
                        if isinstance(step, float):
                            time.sleep(step)
                        else:
                            conn.sendall(step)  # type: ignore[arg-type]
                except OSError:
                    return
                finally:
                    self.answered.release()
                index += 1

    def wait_answered(self, count: int = 1) -> None:
        for _ in range(count):
            assert self.answered.acquire(timeout=10), "the server never finished its script"

    def stop(self) -> None:
        self.listener.close()
        for conn in self._open:
            with contextlib.suppress(OSError):
                conn.close()


def _read_request(conn: socket.socket, buf: bytes) -> tuple[bytes | None, bytes]:
    """One request (head and Content-Length body) off `conn`; a TLS record as it came."""
    while b"\r\n\r\n" not in buf:
        if buf.startswith(b"\x16"):  # a TLS handshake record: not HTTP, hand it over raw
            return buf, b""
        try:
            chunk = conn.recv(65536)
        except OSError:
            return None, b""
        if not chunk:
            return None, b""
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return None, b""
        rest += chunk
    return head + b"\r\n\r\n" + rest[:length], rest[length:]


@pytest.fixture
def serve() -> Iterator[Callable[[Script], RawServer]]:
    servers: list[RawServer] = []

    def start(script: Script) -> RawServer:
        servers.append(RawServer(script))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def _get(client: GraphClient, path: str = "/v1/models/m/metadata") -> tuple[int, bytes]:
    response = client.call("GET", path, timeout=5)
    return response.status, response.body


def test_a_request_is_the_minimal_http_1_1_message_with_the_request_id(serve) -> None:
    server = serve(lambda n, i, request: [ok(b'{"outputs": [[1.0]]}')])
    client = GraphClient(server.url)
    body = b'{"inputs": {"x": [[1.0]]}}'
    assert client.predict("/v1/models/m", body, request_id="req-7", timeout=5) == (
        b'{"outputs": [[1.0]]}'
    )
    assert client.metadata("/v1/models/m", timeout=5) == {"outputs": [[1.0]]}
    host = server.url.removeprefix("http://")
    assert server.requests == [
        (
            f"POST /v1/models/m:predict HTTP/1.1\r\nHost: {host}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "X-Request-ID: req-7\r\n\r\n"
        ).encode()
        + body,
        f"GET /v1/models/m/metadata HTTP/1.1\r\nHost: {host}\r\n\r\n".encode(),
    ]
    assert server.connections == 1  # kept alive


def test_a_chunked_body_is_reassembled_and_the_connection_kept(serve) -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n"
        b'5\r\n{"out\r\n'
        b'0b;ext=1\r\nputs": [[2.\r\n',
        0.05,
        b"3\r\n5]]\r\n",
        0.05,
        b"1\r\n}\r\n0\r\nX-Trailer: yes\r\n\r\n",
    )
    server = serve(lambda n, i, request: list(chunked))
    client = GraphClient(server.url)
    for _ in range(3):
        assert _get(client) == (200, b'{"outputs": [[2.5]]}')
    assert server.connections == 1


def test_connection_close_is_honoured_by_opening_a_new_connection(serve) -> None:
    server = serve(lambda n, i, request: [ok(b'{"a": 1}', "Connection: close")])
    client = GraphClient(server.url)
    assert _get(client) == (200, b'{"a": 1}')
    assert _get(client) == (200, b'{"a": 1}')
    assert server.connections == 2


def test_http_1_0_without_length_is_read_to_eof_and_not_reused(serve) -> None:
    answer = [b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n", b'{"old": ', 0.05]
    server = serve(lambda n, i, request: [*answer, b"true}", CLOSE])
    client = GraphClient(server.url)
    assert _get(client) == (200, b'{"old": true}')
    assert _get(client) == (200, b'{"old": true}')
    assert server.connections == 2


def test_http_1_0_keep_alive_with_a_length_is_reused(serve) -> None:
    server = serve(lambda n, i, request: [ok(b"{}", "Connection: Keep-Alive", version="1.0")])
    client = GraphClient(server.url)
    assert _get(client) == (200, b"{}")
    assert _get(client) == (200, b"{}")
    assert server.connections == 1


def test_100_continue_is_skipped(serve) -> None:
    server = serve(lambda n, i, request: [b"HTTP/1.1 100 Continue\r\n\r\n", 0.05, ok(b'{"b": 2}')])
    client = GraphClient(server.url)
    assert _get(client) == (200, b'{"b": 2}')
    assert _get(client) == (200, b'{"b": 2}')
    assert server.connections == 1


def test_headers_and_body_split_across_segments(serve) -> None:
    whole = ok(b'{"outputs": [[3.0, 4.0]]}', "X-Long: " + "v" * 3000)
    body_at = len(whole) - 25
    cuts = [0, 7, 20, 21, 60, body_at - 2, body_at, body_at + 5, len(whole) - 1, len(whole)]
    steps: list[Step] = []
    for begin, end in itertools.pairwise(cuts):
        steps.extend([whole[begin:end], 0.02])
    server = serve(lambda n, i, request: steps)
    client = GraphClient(server.url)
    assert _get(client) == (200, b'{"outputs": [[3.0, 4.0]]}')
    assert _get(client) == (200, b'{"outputs": [[3.0, 4.0]]}')
    assert server.connections == 1


def test_error_statuses_keep_their_body_and_mapping(serve) -> None:
    error = b'{"error": "Missing named input \\"x\\" in signature_def"}'
    server = serve(
        lambda n, i, request: [
            (
                b"HTTP/1.1 400 Bad Request\r\ncontent-length: "
                + str(len(error)).encode()
                + b"\r\n\r\n"
                + error
            )
        ]
    )
    client = GraphClient(server.url)
    assert client.call("POST", "/v1/models/m:predict", body=b"{}", timeout=5).status == 400
    with pytest.raises(GraphRejectedError, match="Missing named input") as caught:
        client.predict("/v1/models/m", b"{}", timeout=5)
    assert type(caught.value).__name__ == "GraphContractError" and caught.value.status == 502
    assert server.connections == 1


def test_a_response_cut_mid_body_is_502_and_the_next_call_works(serve) -> None:
    def script(n: int, i: int, request: bytes) -> list[Step]:
        if n == 0:
            return [b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", b'{"outputs": [[', CLOSE]
        return [ok(b'{"c": 3}')]

    server = serve(script)
    client = GraphClient(server.url)
    with pytest.raises(GraphRejectedError) as caught:
        _get(client)
    assert caught.value.status == 502
    assert "broke off" in str(caught.value) and "IncompleteRead" in str(caught.value)
    assert _get(client) == (200, b'{"c": 3}')


def test_a_chunked_body_cut_off_is_502(serve) -> None:
    server = serve(
        lambda n, i, request: [
            b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n{"partial',
            CLOSE,
        ]
    )
    with pytest.raises(GraphRejectedError, match=r"broke off.*IncompleteRead"):
        _get(GraphClient(server.url))


def test_a_kept_alive_connection_dropped_at_the_next_request_is_retried_once(serve) -> None:
    """The server closes a reused connection as the request arrives (its keep-alive expired):
    nothing was served, so the call goes once more on a fresh connection and succeeds."""

    def script(n: int, i: int, request: bytes) -> list[Step]:
        return [CLOSE] if (n, i) == (0, 1) else [ok(b'{"d": 4}')]

    server = serve(script)
    client = GraphClient(server.url)
    assert _get(client) == (200, b'{"d": 4}')
    assert _get(client) == (200, b'{"d": 4}')
    assert server.connections == 2 and len(server.requests) == 3


def test_a_fresh_connection_dropped_without_an_answer_is_502_not_retried(serve) -> None:
    server = serve(lambda n, i, request: [CLOSE])
    client = GraphClient(server.url)
    with pytest.raises(GraphRejectedError, match="broke off") as caught:
        _get(client)
    assert caught.value.status == 502
    assert server.connections == 1


def test_a_connection_the_server_closed_while_idle_is_not_reused(serve) -> None:
    server = serve(lambda n, i, request: [ok(b'{"e": 5}'), CLOSE])  # closes without saying so
    client = GraphClient(server.url)
    assert _get(client) == (200, b'{"e": 5}')
    server.wait_answered()  # its FIN is on the way; the poll before reuse sees it
    assert _get(client) == (200, b'{"e": 5}')
    assert server.connections == 2 and len(server.requests) == 2


@pytest.mark.parametrize(
    "answer",
    [
        b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
        b"HTTP/1.1 2OO OK\r\nContent-Length: 2\r\n\r\n{}",
        b"HTTP/2 200\r\ncontent-length: 2\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nno colon here\r\nContent-Length: 2\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nContent-Length: two\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
    ],
    ids=["not-http", "bad-status", "http2", "bad-header", "bad-length", "bad-chunk"],
)
def test_garbage_is_a_502_protocol_error(serve, answer: bytes) -> None:
    server = serve(lambda n, i, request: [answer, CLOSE])
    with pytest.raises(GraphRejectedError, match=r"broke off.*ProtocolError") as caught:
        _get(GraphClient(server.url))
    assert caught.value.status == 502


def test_a_header_block_over_64_kib_is_refused(serve) -> None:
    server = serve(
        lambda n, i, request: [b"HTTP/1.1 200 OK\r\n", b"X-Big: " + b"a" * 70_000 + b"\r\n", 5.0]
    )
    with pytest.raises(GraphRejectedError, match="exceed 65536 bytes"):
        _get(GraphClient(server.url))


def test_extra_bytes_after_the_body_spoil_the_connection_not_the_answer(serve) -> None:
    server = serve(lambda n, i, request: [ok(b'{"f": 6}') + b"HTTP/1.1 200 OK\r\n"])
    client = GraphClient(server.url)
    assert _get(client) == (200, b'{"f": 6}')
    assert _get(client) == (200, b'{"f": 6}')
    assert server.connections == 2


def test_a_silent_server_is_a_timeout_with_the_allowance(serve) -> None:
    server = serve(lambda n, i, request: [5.0])
    client = GraphClient(server.url)
    with pytest.raises(GraphCallTimeoutError, match="did not answer") as caught:
        client.call("GET", "/v1/models/m/metadata", timeout=0.3)
    assert isinstance(caught.value, GraphTimeoutError) and caught.value.status == 504
    assert caught.value.allowed == 0.3


def test_https_speaks_tls_and_a_plain_http_server_is_a_clean_503(serve) -> None:
    """No certificate tooling here (the `cryptography` package is not installed): the client
    must open TLS (the server sees a handshake record, not an HTTP request) and, answered in
    plain HTTP, fail as unreachable after its bounded connect retries instead of hanging."""
    refusal = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    server = serve(lambda n, i, request: [refusal, CLOSE])
    client = GraphClient(server.url.replace("http://", "https://"), connect_retries=1)
    with pytest.raises(GraphConnectError, match="unreachable") as caught:
        _get(client)
    assert isinstance(caught.value, GraphUnavailableError) and caught.value.status == 503
    assert "SSL" in str(caught.value) and "2 attempt(s)" in str(caught.value)
    assert server.connections == 2
    assert all(request[:1] == b"\x16" for request in server.requests)  # TLS handshake records


def test_nothing_listening_is_503_after_bounded_retries() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    client = GraphClient(url, connect_retries=2)
    with pytest.raises(GraphConnectError, match=r"ConnectionRefusedError.*3 attempt\(s\)"):
        _get(client)

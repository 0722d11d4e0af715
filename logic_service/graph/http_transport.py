"""A minimal HTTP/1.1 keep-alive client connection: the graph client's wire, and nothing more.

Hand-made, in place of a library. What it replaces: `http.client` (and, before it, urllib3 and
`requests`), under our own pool in client.py.

Why: CPU per graph call, measured by `python benchmarks/bench_graph_client.py` (serial
`:predict` calls, CPU of the calling process only, medians of 3 x 2000; re-measured for issue
18 on 2 shared cores): 1 row: requests 700 us, urllib3's pool 260 us, http.client 162 us,
this connection under GraphClient 75 us (0.46x http.client, 0.29x urllib3); 20 rows: 847, 274,
183, 77 us. urllib3 is not within noise of it (3.5x), and the logic tier spends about 470 us
of CPU per request in all (`make bench-logic`), so the library would cost a third of it.
`http.client` sends headers and body in two `sendall`s and parses every response's headers
through the `email` package; here a request is one `sendall` and the response is parsed from
`recv` chunks with bytes methods.

What it does, because servers do it: Content-Length and chunked bodies, interim 1xx
responses skipped, `Connection: close` and HTTP/1.0 honoured (the connection is then not
reused), a body delimited by EOF, TLS (`https://`). What it does not do: HTTP/2, proxies,
redirects, cookies, compression, `Expect: 100-continue`, request bodies other than one bytes
object; a header block over 64 KiB or anything that is not HTTP is a ProtocolError. Pooling,
timeout policy, retries and error mapping live in the caller (client.py).

Pinned by tests/logic_service/graph/test_http_transport.py (raw-socket servers answering in
every framing above, cut-offs, garbage, TLS) and test_client.py (the pool against real
servers). If the graph tier ever needs more of HTTP, use urllib3 again rather than growing this.
"""

from __future__ import annotations

import re
import socket
import ssl

MAX_HEADER_BYTES = 64 * 1024
_RECV_SIZE = 64 * 1024
_MAX_CHUNK_LINE = 1024
_NO_BODY = frozenset((204, 304))
# A status line, then header lines as RFC 9110 allows them (a token, a colon, a value without
# CR or LF), each CRLF-ended: the whole head validated in one C call.
_HEAD_LINE = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+:[^\r\n]*")
_HEAD = re.compile(
    rb"HTTP/1\.([01]) (\d\d\d)(?: [^\r\n]*)?\r\n(?:[!#$%&'*+.^_`|~0-9A-Za-z-]+:[^\r\n]*\r\n)*"
)
# The only fields that decide how the body ends and whether the connection is kept (lowercased).
# Matched after a line's LF, so never inside the status line or a value.
_FIELDS_READ = re.compile(rb"\n(content-length|transfer-encoding|connection):([^\r]*)")


class ProtocolError(Exception):
    """The server's bytes are not an HTTP/1.x response we can read; the connection is spent."""


class IncompleteReadError(ProtocolError):
    """The server closed the connection before the body it announced was complete."""

    def __init__(self, got: int, expected: int | None) -> None:
        more = f", {expected - got} more expected" if expected is not None else ""
        super().__init__(f"IncompleteRead({got} bytes read{more})")


class ServerClosedError(ConnectionResetError):
    """EOF before the first byte of a response: a kept-alive connection the server had closed."""


class HTTPConnection:
    """One keep-alive connection to `host:port` (TLS when `tls_context` is given).

    Not thread-safe: the caller's pool hands it to one thread at a time. `sock` is None until
    `connect()` and again after `close()`.
    """

    __slots__ = ("_host_header", "host", "port", "sock", "tls_context")

    def __init__(self, host: str, port: int, *, tls_context: ssl.SSLContext | None = None) -> None:
        self.host = host.strip("[]")  # an IPv6 literal as the URL writes it: [::1]
        self.port = port
        self.tls_context = tls_context
        default = 443 if tls_context is not None else 80
        literal = f"[{self.host}]" if ":" in self.host else self.host
        self._host_header = literal if port == default else f"{literal}:{port}"
        self.sock: socket.socket | None = None

    def connect(self, timeout: float) -> None:
        """TCP connect (and TLS handshake) within `timeout`; OSError (SSLError included) if not."""
        sock = socket.create_connection((self.host, self.port), timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls_context is not None:
                sock = self.tls_context.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise
        self.sock = sock

    def close(self) -> None:
        sock, self.sock = self.sock, None
        if sock is not None:
            sock.close()

    def exchange(
        self, method: str, path: str, body: bytes | None = None, request_id: str | None = None
    ) -> tuple[int, bytes, bool]:
        """Send one request, read its response: (status, body, connection reusable).

        Raises OSError from the socket (TimeoutError on the socket's timeout), ServerClosedError
        when the server closed before answering, ProtocolError for anything unreadable.
        """
        sock = self.sock
        if sock is None:
            raise ServerClosedError("connection is not open")
        if _has_control(path) or (request_id and _has_control(request_id)):
            raise ValueError(f"CR/LF in request target or X-Request-ID: {path!r} {request_id!r}")
        head = f"{method} {path} HTTP/1.1\r\nHost: {self._host_header}\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        elif method in ("POST", "PUT", "PATCH"):
            head += "Content-Length: 0\r\n"
        if request_id:
            head += f"X-Request-ID: {request_id}\r\n"
        data = (head + "\r\n").encode("latin-1")
        sock.sendall(data + body if body else data)
        return self._read_response(method)

    # --- response ---------------------------------------------------------------------------

    def _recv(self) -> bytes:
        assert self.sock is not None
        return self.sock.recv(_RECV_SIZE)

    def _read_response(self, method: str) -> tuple[int, bytes, bool]:
        buf, answered = b"", False
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                buf, end = self._read_head(buf, answered)
            elif end > MAX_HEADER_BYTES:
                raise ProtocolError(f"response headers exceed {MAX_HEADER_BYTES} bytes")
            status, length, chunked, keep_alive = _parse_head(buf[: end + 2])
            buf = buf[end + 4 :]
            if status >= 200:
                break
            if status == 101:
                raise ProtocolError("server switched protocols (101) unasked")
            # An interim response (100 Continue, 103 Early Hints): headers only; the real one follows.
            answered = True
        if length is not None and len(buf) == length:  # the usual case: one recv held it all
            return status, buf, keep_alive
        if method == "HEAD" or status in _NO_BODY:
            body, rest = b"", buf
        elif chunked:
            body, rest = self._read_chunked(buf)
        elif length is not None:
            body, rest = self._read_length(buf, length)
        else:
            body, rest, keep_alive = self._read_to_eof(buf), b"", False
        if rest:  # bytes beyond the response we did not ask for: never trust this connection again
            keep_alive = False
        return status, body, keep_alive

    def _read_head(self, buf: bytes, answered: bool) -> tuple[bytes, int]:
        """Receive until `buf` holds a whole header block: (buf, offset of its CRLFCRLF)."""
        end = -1
        while end < 0:
            if len(buf) > MAX_HEADER_BYTES:
                raise ProtocolError(f"response headers exceed {MAX_HEADER_BYTES} bytes")
            chunk = self._recv()
            if not chunk:
                if buf or answered:
                    raise ProtocolError(f"connection closed inside response headers {buf[:80]!r}")
                raise ServerClosedError("server closed the connection without a response")
            searched = max(len(buf) - 3, 0)
            buf += chunk
            end = buf.find(b"\r\n\r\n", searched)
        if end > MAX_HEADER_BYTES:
            raise ProtocolError(f"response headers exceed {MAX_HEADER_BYTES} bytes")
        return buf, end

    def _read_length(self, buf: bytes, length: int) -> tuple[bytes, bytes]:
        if len(buf) >= length:
            return buf[:length], buf[length:]
        parts, got = [buf], len(buf)
        while got < length:
            chunk = self._recv()
            if not chunk:
                raise IncompleteReadError(got, length)
            parts.append(chunk)
            got += len(chunk)
        data = b"".join(parts)
        return data[:length], data[length:]

    def _read_to_eof(self, buf: bytes) -> bytes:
        parts = [buf]
        while chunk := self._recv():
            parts.append(chunk)
        return b"".join(parts)

    def _read_chunked(self, buf: bytes) -> tuple[bytes, bytes]:
        """A chunked body (RFC 9112 §7.1): `size[;ext]CRLF data CRLF`... `0CRLF [trailers] CRLF`."""
        parts: list[bytes] = []
        got = 0
        pos = 0
        while True:
            buf, pos, line_end = self._line(buf, pos, got, _MAX_CHUNK_LINE, "chunk size line")
            size_text = buf[pos:line_end].split(b";", 1)[0].strip()
            try:
                if not size_text or size_text[:1] in b"+-":
                    raise ValueError
                size = int(size_text, 16)
            except ValueError:
                raise ProtocolError(f"bad chunk size line {buf[pos:line_end][:40]!r}") from None
            pos = line_end + 2
            if size == 0:
                break
            while len(buf) - pos < size + 2:
                buf, pos = self._more(buf, pos, got + len(buf) - pos)
            if buf[pos + size : pos + size + 2] != b"\r\n":
                raise ProtocolError("chunk data not followed by CRLF")
            parts.append(buf[pos : pos + size])
            got += size
            pos += size + 2
        while True:  # trailer fields (ignored) up to the empty line
            buf, pos, line_end = self._line(buf, pos, got, MAX_HEADER_BYTES, "chunked trailer")
            if line_end == pos:
                return b"".join(parts), buf[pos + 2 :]
            pos = line_end + 2

    def _line(
        self, buf: bytes, pos: int, got: int, limit: int, what: str
    ) -> tuple[bytes, int, int]:
        """(buf, pos, end) of the CRLF-ended line at `pos`, reading more as needed; a line
        longer than `limit` bytes is a ProtocolError naming `what`."""
        line_end = buf.find(b"\r\n", pos)
        while line_end < 0:
            if len(buf) - pos > limit:
                raise ProtocolError(f"{what} over {limit} bytes {buf[pos : pos + 40]!r}")
            buf, pos = self._more(buf, pos, got)
            line_end = buf.find(b"\r\n", pos)
        return buf, pos, line_end

    def _more(self, buf: bytes, pos: int, got: int) -> tuple[bytes, int]:
        """The unread part of `buf` and one more recv; IncompleteReadError at EOF."""
        chunk = self._recv()
        if not chunk:
            raise IncompleteReadError(got, None)
        return buf[pos:] + chunk, 0


def _parse_head(head: bytes) -> tuple[int, int | None, bool, bool]:
    """(status, Content-Length or None, chunked, keep-alive) from a status line and header
    lines, each ending in CRLF. Two regex passes in C rather than a loop over lines: this runs
    on every call, right after a context switch, when every bytecode is expensive."""
    match = _HEAD.fullmatch(head)
    if match is None:
        line, _, fields = head.partition(b"\r\n")
        if _HEAD.fullmatch(line + b"\r\n") is None:
            raise ProtocolError(f"not an HTTP/1.x status line {line[:80]!r}")
        bad = next((x for x in fields.split(b"\r\n") if _HEAD_LINE.fullmatch(x) is None), fields)
        raise ProtocolError(f"bad response header line {bad[:80]!r}")
    version, code = match.groups()
    status = int(code)
    length: int | None = None
    chunked = coded = False
    keep_alive = version == b"1"
    for name, raw in _FIELDS_READ.findall(head.lower()):
        value = raw.strip()
        if name == b"content-length":
            if not value.isdigit() or (length is not None and int(value) != length):
                raise ProtocolError(f"bad Content-Length {value[:40]!r}")
            length = int(value)
        elif name == b"connection":
            tokens = {token.strip() for token in value.split(b",")}
            if b"close" in tokens:
                keep_alive = False
            elif b"keep-alive" in tokens and version == b"0":
                keep_alive = True
        else:  # transfer-encoding
            coded = True
            chunked = value.rsplit(b",", 1)[-1].strip() == b"chunked"
    if coded:
        # Transfer-Encoding overrides Content-Length, and both at once, or a last coding other
        # than chunked (body delimited by EOF), leave the connection unfit for reuse (RFC 9112 §6.3).
        if length is not None or not chunked:
            keep_alive = False
        length = None
    elif length is None and status >= 200 and status not in _NO_BODY:
        keep_alive = False  # body delimited by EOF
    return status, length, chunked, keep_alive


def _has_control(text: str) -> bool:
    return "\r" in text or "\n" in text or "\0" in text

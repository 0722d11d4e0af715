"""Read a request body under a size limit, gunzipping it when it says it is gzip.

The limit (--max_body_bytes) is our own guard: it holds whether the client sends
Content-Length or `Transfer-Encoding: chunked`, and it applies again to the gunzipped size,
so a small compressed body cannot expand into gigabytes. TF Serving's HTTP server gunzips any
body whose Content-Encoding mentions gzip (net_http/server/internal/evhttp_request.cc).
"""

from __future__ import annotations

import zlib
from typing import BinaryIO

from werkzeug.wrappers import Request

from graph_service.errors import InvalidArgumentError, PayloadTooLargeError

_CHUNK = 64 * 1024
_GZIP_WBITS = 16 + zlib.MAX_WBITS


def read_body(request: Request, limit: int) -> bytes:
    """The (decompressed) body; 413 past `limit` bytes, 400 for a corrupt gzip body."""
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)
    # Read the WSGI stream ourselves: werkzeug's limited stream would cut a chunked body
    # at the limit without telling us, and the truncated JSON would answer 400, not 413.
    body = _read_at_most(request.environ["wsgi.input"], request.content_length, limit)
    if "gzip" in request.headers.get("Content-Encoding", "").lower():
        return gunzip(body, limit)
    return body


def _read_at_most(stream: BinaryIO, content_length: int | None, limit: int) -> bytes:
    """Up to `limit` bytes of the stream; 413 as soon as there is one byte more."""
    # With Content-Length (already checked) read exactly that; chunked: one byte past the limit.
    wanted = content_length if content_length is not None else limit + 1
    parts, size = [], 0
    while size < wanted:
        chunk = stream.read(min(_CHUNK, wanted - size))
        if not chunk:
            break
        parts.append(chunk)
        size += len(chunk)
    if size > limit:
        raise _too_large(limit)
    return b"".join(parts)


def gunzip(data: bytes, limit: int) -> bytes:
    """Decompress gzip `data` (one or more members), never producing more than `limit` bytes."""
    out, size = [], 0
    while data:
        inflater = zlib.decompressobj(_GZIP_WBITS)
        try:
            while True:
                piece = inflater.decompress(data, limit + 1 - size)
                out.append(piece)
                size += len(piece)
                if size > limit:
                    raise _too_large(limit, decompressed=True)
                data = inflater.unconsumed_tail
                if inflater.eof or not data:
                    break
        except zlib.error as exc:
            raise _bad_gzip(str(exc)) from None
        if not inflater.eof:
            raise _bad_gzip("the compressed data ends early")
        data = inflater.unused_data
    return b"".join(out)


def _too_large(limit: int, *, decompressed: bool = False) -> PayloadTooLargeError:
    what = "Decompressed request body" if decompressed else "Request body"
    return PayloadTooLargeError(
        f"{what} larger than --max_body_bytes={limit}; send fewer instances per request "
        "or raise the limit"
    )


def _bad_gzip(reason: str) -> InvalidArgumentError:
    return InvalidArgumentError(
        f"Request body has Content-Encoding: gzip but is not valid gzip data ({reason}); "
        "send the whole JSON body gzipped, or drop the Content-Encoding header"
    )

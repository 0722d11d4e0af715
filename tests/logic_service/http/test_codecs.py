"""Our /get_score body: decoding the request, the success envelope."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from logic_service.errors import BadRequestError, UnsupportedMediaTypeError
from logic_service.http.codecs import decode_score_request, encode_score_response


def test_score_envelope_and_request_decoding() -> None:
    body = orjson.loads(encode_score_response(np.array([[0.25]], dtype=np.float32)))
    assert body == {"msg": "Successful!", "code": 200, "data": [[0.25]]}
    request = decode_score_request(b'{"model": "a", "data": [{"x": 1}]}', "application/json")
    assert request.model == "a" and request.data == [{"x": 1}]
    with pytest.raises(UnsupportedMediaTypeError):
        decode_score_request(b"{}", "text/csv")
    with pytest.raises(BadRequestError, match='"data" field'):
        decode_score_request(b'{"rows": []}', "application/json")
    with pytest.raises(BadRequestError, match="not valid JSON"):
        decode_score_request(b"{", None)

"""One place maps failures to TF Serving's `{"error": ...}` and status (http_server.cc ToHTTPStatusCode)."""

from __future__ import annotations

import orjson
import pytest
import tensorflow as tf
from werkzeug.exceptions import MethodNotAllowed

from graph_service.errors import (
    NotFoundError,
    PayloadTooLargeError,
    ServingError,
    from_tensorflow,
    status_and_body,
)
from tfs_protocol.errors import CodecError


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("INVALID_ARGUMENT", 400),
        ("FAILED_PRECONDITION", 400),
        ("NOT_FOUND", 404),
        ("RESOURCE_EXHAUSTED", 429),
        ("UNIMPLEMENTED", 501),
        ("UNAVAILABLE", 503),
        ("DEADLINE_EXCEEDED", 504),
        ("INTERNAL", 500),
    ],
)
def test_canonical_codes_map_like_tf_serving(code, status):
    """shared doc Errors: status follows the canonical error code."""
    got, body = status_and_body(ServingError("boom", code))
    assert got == status
    assert orjson.loads(body) == {"error": "boom"}


def test_codec_werkzeug_and_limit_errors_share_the_shape():
    assert status_and_body(CodecError("bad"))[0] == 400
    assert status_and_body(NotFoundError("gone"))[0] == 404
    assert status_and_body(PayloadTooLargeError("big"))[0] == 413
    status, body = status_and_body(MethodNotAllowed())
    assert status == 405 and "error" in orjson.loads(body)


def test_unexpected_exception_is_a_json_500():
    status, body = status_and_body(RuntimeError("surprise"))
    assert status == 500
    assert "surprise" in orjson.loads(body)["error"]


def test_tensorflow_errors_keep_their_code_and_cause():
    """A TF op error keeps its canonical code; the graph context is trimmed to the cause."""
    spec = tf.TensorSpec(None, tf.float32)
    matmul = tf.function(tf.matmul, input_signature=[spec, spec])
    try:
        matmul(tf.ones([1, 3]), tf.ones([4, 1]))
    except tf.errors.InvalidArgumentError as exc:
        error = from_tensorflow(exc)
    assert error.code == "INVALID_ARGUMENT"
    assert "\n" not in error.message
    assert "Graph execution error" not in error.message
    assert error.message

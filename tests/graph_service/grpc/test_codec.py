"""The gRPC wire codec and error map, in process: what a tensorflow-serving-api client reads.

Sources: tensor.proto (typed `*_val` fields), predict_util.cc (`AsProtoField` answers),
input_util.cc (examples with context), grpc_status_util.cc (canonical code -> gRPC code).
"""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.example import example_pb2
from tensorflow.core.framework import tensor_pb2
from tensorflow_serving.apis import input_pb2

from graph_service.errors import (
    CODE_NAMES,
    HTTP_STATUS_BY_CODE,
    InvalidArgumentError,
    NotFoundError,
    ServingError,
)
from graph_service.grpc import codec as grpc_codec
from graph_service.grpc.errors import CODE_NUMBERS, code_and_message, status_code
from graph_service.rest import example_codec
from tfs_protocol.errors import CodecError


@pytest.mark.parametrize(
    ("array", "field"),
    [
        (np.array([[1.5, -2.0]], np.float32), "float_val"),
        (np.array([1e300, np.nan, np.inf], np.float64), "double_val"),
        (np.array([-128, 127], np.int8), "int_val"),
        (np.array([0, 255], np.uint8), "int_val"),
        (np.array([-(2**31), 2**31 - 1], np.int32), "int_val"),
        (np.array([-(2**63), 2**63 - 1], np.int64), "int64_val"),
        (np.array([0, 2**32 - 1], np.uint32), "uint32_val"),
        (np.array([0, 2**64 - 1], np.uint64), "uint64_val"),
        (np.array([True, False, True]), "bool_val"),
        (np.array([0.5, -65504.0], np.float16), "half_val"),
        (np.array([1 + 2j, -3.5j], np.complex64), "scomplex_val"),
        (np.array([[1 - 1j]], np.complex128), "dcomplex_val"),
        (np.array([b"a", b"\x00\xff", "é".encode()], object), "string_val"),
    ],
)
def test_answers_use_typed_fields_and_round_trip(array, field):
    """TF Serving answers with Tensor::AsProtoField: values in the dtype's `*_val` field, no
    packed tensor_content; tf.make_ndarray reads back exactly what the model returned."""
    proto = tensor_pb2.TensorProto()
    grpc_codec.encode_tensor(array, proto)
    assert not proto.tensor_content
    assert len(getattr(proto, field)) >= array.size
    back = tf.make_ndarray(proto)
    assert back.dtype == array.dtype
    assert back.shape == array.shape
    np.testing.assert_array_equal(back, array)


def test_bfloat16_and_empty_and_scalar_tensors():
    bf16 = np.array([1.0, -2.5], dtype=tf.bfloat16.as_numpy_dtype)
    for array in (bf16, np.zeros((0, 3), np.float32), np.float32(7.0)):
        proto = tensor_pb2.TensorProto()
        grpc_codec.encode_tensor(np.asarray(array), proto)
        np.testing.assert_array_equal(tf.make_ndarray(proto), np.asarray(array))


class _Signature:
    """The two maps a SignatureDef offers the codec."""

    def __init__(self, inputs, outputs=()):
        self.inputs = {k: None for k in inputs}
        self.outputs = {k: None for k in outputs}


def test_request_decoding_reads_every_client_encoding():
    """A value list, packed tensor_content and one broadcast value all decode (tf.make_ndarray)."""
    listed = tf.make_tensor_proto([[1.0, 2.0]], dtype=tf.float32)
    packed = tensor_pb2.TensorProto()
    packed.CopyFrom(tf.make_tensor_proto(np.array([[1.0, 2.0]], np.float32)))
    assert packed.tensor_content
    broadcast = tf.make_tensor_proto(3.0, dtype=tf.float32, shape=[1, 2])
    decoded = grpc_codec.decode_inputs(
        {"a": listed, "b": packed, "c": broadcast}, _Signature(["a", "b", "c"])
    )
    np.testing.assert_array_equal(decoded["a"], [[1.0, 2.0]])
    np.testing.assert_array_equal(decoded["b"], [[1.0, 2.0]])
    np.testing.assert_array_equal(decoded["c"], [[3.0, 3.0]])


def test_request_decoding_errors_name_the_input():
    bad = tf.make_tensor_proto(np.ones((2, 3), np.float32))
    bad.tensor_shape.dim[0].size = 5
    with pytest.raises(InvalidArgumentError, match=r"^tensor parsing error: x"):
        grpc_codec.decode_inputs({"x": bad}, _Signature(["x"]))
    with pytest.raises(InvalidArgumentError, match=r"Missing but required: \{y\}\."):
        grpc_codec.decode_inputs({"x": bad}, _Signature(["x", "y"]))


def test_output_filter_order_and_errors():
    signature = _Signature([], ["b", "a", "c"])
    assert grpc_codec.output_aliases([], signature) == ["a", "b", "c"]
    assert grpc_codec.output_aliases(["c", "a"], signature) == ["c", "a"]
    with pytest.raises(InvalidArgumentError, match="duplicate output tensor alias: a"):
        grpc_codec.output_aliases(["a", "a"], signature)
    with pytest.raises(InvalidArgumentError, match=r"expected to be in the set \{a,b,c\}"):
        grpc_codec.output_aliases(["z"], signature)


def test_examples_with_context_match_the_rest_codec():
    """gRPC's example_list_with_context and REST's {"context", "examples"} give the same
    tf.Examples, so both fronts feed a classify/regress signature the same bytes' meaning."""
    input_proto = input_pb2.Input()
    with_context = input_proto.example_list_with_context
    with_context.context.features.feature["x"].float_list.value.extend([9.0])
    with_context.context.features.feature["tag"].bytes_list.value.append(b"ctx")
    with_context.examples.add().features.feature["x"].float_list.value.extend([1.0])
    with_context.examples.add()
    from_grpc = grpc_codec.serialized_examples(input_proto)
    from_rest = example_codec.decode_examples(
        {"context": {"x": 9.0, "tag": "ctx"}, "examples": [{"x": 1.0}, {}]}
    )
    for grpc_bytes, rest_bytes in zip(from_grpc, from_rest, strict=True):
        assert example_pb2.Example.FromString(grpc_bytes) == example_pb2.Example.FromString(
            rest_bytes
        )
    with pytest.raises(InvalidArgumentError, match=r"^Input is empty\.$"):
        grpc_codec.serialized_examples(input_pb2.Input())


def test_every_canonical_code_maps_to_the_grpc_code_of_that_name():
    """grpc_status_util.cc: the canonical code becomes the gRPC status code, one for one; the
    names come from errors.py's table (shared with REST), never a second copy."""
    for name in HTTP_STATUS_BY_CODE:
        assert status_code(name).name == name
        assert status_code(name).value[0] == CODE_NUMBERS[name]
    assert set(CODE_NAMES.values()) | {"OK"} == set(CODE_NUMBERS)
    assert status_code("NOT_A_CODE") == grpc.StatusCode.UNKNOWN


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (NotFoundError("Servable not found for request: Latest(x)"), "NOT_FOUND"),
        (InvalidArgumentError("bad"), "INVALID_ARGUMENT"),
        (ServingError("gone", "FAILED_PRECONDITION"), "FAILED_PRECONDITION"),
        (CodecError("JSON Value: ..."), "INVALID_ARGUMENT"),
        (RuntimeError("boom"), "INTERNAL"),
    ],
)
def test_exceptions_map_like_rest(exc, expected):
    code, message = code_and_message(exc)
    assert code == expected
    assert str(exc) in message

"""TF Serving JSON <-> numpy, in process (json_tensor.cc rules; messages as its tests expect)."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from tfs_protocol.errors import CodecError
from tfs_protocol.json_codec import (
    COLUMNAR,
    ROW,
    decode_predict_request,
    encode_classification,
    encode_predict_response,
    encode_regression,
    parse_json,
    tensor_json,
    to_array,
)


def test_row_format_single_input_stacks_instances():
    """api_rest.md row format: element i of instances is instance i."""
    fmt, arrays = decode_predict_request({"instances": [[1, 2], [3, 4]]}, {"x": "DT_FLOAT"})
    assert fmt == ROW
    assert arrays["x"].dtype == np.float32
    np.testing.assert_array_equal(arrays["x"], [[1, 2], [3, 4]])


def test_row_format_named_inputs_become_columns():
    doc = {"instances": [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]}
    _, arrays = decode_predict_request(doc, {"a": "DT_INT64", "b": "DT_STRING"})
    np.testing.assert_array_equal(arrays["a"], np.array([1, 2], np.int64))
    assert arrays["b"].tolist() == [b"x", b"y"]


def test_columnar_named_inputs_keep_their_own_batch_sizes():
    """api_rest.md columnar: each named input may have its own batch size."""
    fmt, arrays = decode_predict_request(
        {"inputs": {"a": [1.0], "b": [[1.0], [2.0]]}}, {"a": "DT_FLOAT", "b": "DT_FLOAT"}
    )
    assert fmt == COLUMNAR
    assert arrays["a"].shape == (1,) and arrays["b"].shape == (2, 1)


@pytest.mark.parametrize(
    ("value", "dtype", "fragment"),
    [
        ([[1, 2], [3]], "DT_FLOAT", "rectangular"),
        (["a"], "DT_FLOAT", "not of expected type: float"),
        ([1.5], "DT_INT32", "not of expected type: int32"),
        ([2**40], "DT_INT32", "not of expected type: int32"),
        ([True], "DT_FLOAT", "not of expected type: float"),
        ([1], "DT_BOOL", "not of expected type: bool"),
        ([{"b64": "!!"}], "DT_STRING", "Unable to base64 decode"),
        ([1], "DT_STRING", "not of expected type: string"),
        ([2**25], "DT_FLOAT", "without loss of precision"),
    ],
)
def test_bad_values_name_the_problem(value, dtype, fragment):
    """json_tensor tests: type and shape errors are INVALID_ARGUMENT with a specific message."""
    with pytest.raises(CodecError, match=None) as info:
        to_array(value, dtype)
    assert fragment in str(info.value)
    assert info.value.code == "INVALID_ARGUMENT"


def test_nan_literals_parse_and_encode_back():
    """shared doc Numbers: NaN/Infinity/-Infinity in, and out, as bare literals."""
    doc = parse_json(b'{"instances": [NaN, Infinity, -Infinity, 1.5]}')
    array = to_array(doc["instances"], "DT_FLOAT")
    assert np.isnan(array[0]) and array[1] == np.inf and array[2] == -np.inf
    assert tensor_json(array) == b"[NaN,Infinity,-Infinity,1.5]"


def test_row_response_several_outputs_one_object_per_instance():
    """api_rest.md: several outputs in row format -> predictions is a list of objects."""
    body = encode_predict_response(
        {"p": np.array([[0.5], [0.25]], np.float32), "k_bytes": np.array([b"\x00", b"a"], object)},
        ROW,
    )
    assert orjson.loads(body) == {
        "predictions": [
            {"p": [0.5], "k_bytes": {"b64": "AA=="}},
            {"p": [0.25], "k_bytes": {"b64": "YQ=="}},
        ]
    }


def test_row_response_rejects_inconsistent_batch_sizes():
    """json_tensor: row-format outputs must share the batch size."""
    with pytest.raises(CodecError, match="inconsistent batch size"):
        encode_predict_response({"a": np.zeros(2), "b": np.zeros(3)}, ROW)


def test_float32_outputs_keep_float32_digits():
    """TF Serving prints float32 values with float32 precision (0.1 stays 0.1)."""
    assert tensor_json(np.array([0.1], np.float32)) == b"[0.1]"


def test_classification_and_regression_results():
    """handler tests: classify {"results": [[["", 12]]]} pairs, regress {"results": [42]}."""
    body = encode_classification(None, np.array([[12.0]], np.float32))
    assert orjson.loads(body) == {"results": [[["", 12.0]]]}
    assert orjson.loads(encode_regression(np.array([[42.0]], np.float32))) == {"results": [42.0]}


def test_deep_nesting_is_a_parse_error_not_a_crash():
    with pytest.raises(CodecError, match="JSON Parse error"):
        parse_json(b"[" * 50_000 + b"]" * 50_000)

"""TF Serving's wire format as the logic tier speaks it: columnar body, answers, metadata."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from logic_service.errors import BadRequestError, GraphRejectedError
from logic_service.graph.codecs import (
    decode_predict_response,
    decode_signature,
    encode_predict_request,
)


def test_predict_request_is_columnar_and_keeps_float32() -> None:
    array = np.array([[0.5, 1.25], [2.0, -3.0]], dtype=np.float32)
    body = orjson.loads(encode_predict_request("serving_default", {"x": array}))
    assert body == {"signature_name": "serving_default", "inputs": {"x": array.tolist()}}


def test_nan_features_are_refused_before_the_graph_call() -> None:
    with pytest.raises(BadRequestError, match="NaN"):
        encode_predict_request("s", {"x": np.array([[np.nan]])})


def test_predict_response_single_and_named_outputs() -> None:
    assert decode_predict_response(b'{"outputs": [[0.1], [0.2]]}', None).shape == (2, 1)
    named = b'{"outputs": {"a": [1], "b": [2]}}'
    assert decode_predict_response(named, "b").tolist() == [2]
    with pytest.raises(GraphRejectedError, match="'c' not in the response"):
        decode_predict_response(named, "c")


def test_signature_from_metadata() -> None:
    dims = {"dim": [{"size": "-1"}, {"size": "8"}], "unknown_rank": False}
    payload = {
        "metadata": {
            "signature_def": {
                "signature_def": {
                    "serving_default": {
                        "inputs": {"x": {"dtype": "DT_FLOAT", "tensor_shape": dims}},
                        "outputs": {"y": {"dtype": "DT_DOUBLE", "tensor_shape": dims}},
                    }
                }
            }
        }
    }
    signature = decode_signature(payload, "serving_default")
    assert signature.inputs["x"].dtype == np.float32
    assert signature.inputs["x"].shape == (-1, 8)
    with pytest.raises(GraphRejectedError, match="no signature 'other'"):
        decode_signature(payload, "other")


def test_string_inputs_are_sent_not_crashed_on() -> None:
    """Issue 11: object arrays (DT_STRING) used to reach orjson and end in a 500."""
    body = orjson.loads(
        encode_predict_request("s", {"city": np.array([["Paris"], ["Zürich"]], dtype=object)})
    )
    assert body["inputs"]["city"] == [["Paris"], ["Zürich"]]


def test_nan_and_infinity_in_graph_answers_are_read() -> None:
    """TF Serving writes non-finite outputs as bare literals; that is an answer, not a 502."""
    out = decode_predict_response(b'{"outputs": [[NaN], [Infinity], [-Infinity]]}', None)
    assert np.isnan(out[0, 0]) and out[1, 0] == np.inf and out[2, 0] == -np.inf


def _metadata(dtype: str) -> dict:
    dims = {"dim": [{"size": "-1"}], "unknown_rank": False}
    spec = {"dtype": dtype, "tensor_shape": dims, "name": "n:0"}
    sig = {"inputs": {"n": spec}, "outputs": {"y": {**spec, "dtype": "DT_FLOAT"}}}
    return {"metadata": {"signature_def": {"signature_def": {"serving_default": sig}}}}


@pytest.mark.parametrize(
    ("tf_name", "numpy_type"), [("DT_UINT32", np.uint32), ("DT_UINT64", np.uint64)]
)
def test_unsigned_inputs_keep_their_dtype(tf_name: str, numpy_type: type) -> None:
    """Unknown types used to become float32, which the graph then refused on every request."""
    assert decode_signature(_metadata(tf_name), "serving_default").inputs["n"].dtype == numpy_type


def test_an_input_dtype_json_cannot_carry_is_named() -> None:
    with pytest.raises(GraphRejectedError, match="DT_COMPLEX64"):
        decode_signature(_metadata("DT_COMPLEX64"), "serving_default")


def test_output_dtypes_from_the_signature_are_applied() -> None:
    body = b'{"outputs": {"n": [4294967295], "s": ["a"]}}'
    out = decode_predict_response(body, None, {"n": "DT_UINT32", "s": "DT_STRING"})
    assert out["n"].dtype == np.uint32 and out["s"].tolist() == [b"a"]
    with pytest.raises(GraphRejectedError, match="does not fit its signature"):
        decode_predict_response(b'{"outputs": {"n": [-1]}}', "n", {"n": "DT_UINT32"})

"""The shared codec both ways: what the logic tier sends is what graph-service decodes, and back.

Rules from tensorflow_serving/util/json_tensor.cc and api_rest.md (shared doc
tf-serving-rest.md, "Predict"): `{"b64": ...}` for binary strings, `*_bytes` outputs as b64,
NaN/Infinity/-Infinity as bare literals, every dtype TF Serving accepts.
"""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from tfs_protocol import json_codec
from tfs_protocol.dtypes import NUMPY_DTYPES, numpy_dtype
from tfs_protocol.errors import CodecError
from tfs_protocol.signature import decode_signature


def _round_trip(inputs: dict[str, np.ndarray], dtypes: dict[str, str]) -> dict[str, np.ndarray]:
    """Client encodes, server decodes: the arrays the graph would be fed."""
    body = json_codec.encode_predict_request(inputs, "sig")
    doc = json_codec.parse_json(body)
    assert json_codec.signature_name(doc) == "sig"
    fmt, arrays = json_codec.decode_predict_request(doc, dtypes)
    assert fmt == json_codec.COLUMNAR
    return arrays


def test_strings_and_bytes_reach_the_graph_as_bytes() -> None:
    text = np.array(["plain", "naïve"], dtype=object)
    raw = np.array([b"\x00\xff\xfe", b"ok"], dtype=object)
    body = json_codec.encode_predict_request({"text": text, "raw": raw})
    doc = orjson.loads(body)
    assert doc["inputs"]["text"] == ["plain", "naïve"]
    # Invalid UTF-8 cannot be JSON text: it travels as {"b64": ...}; valid bytes as text.
    assert doc["inputs"]["raw"][0] == {"b64": "AP/+"} and doc["inputs"]["raw"][1] == "ok"
    arrays = _round_trip({"text": text, "raw": raw}, {"text": "DT_STRING", "raw": "DT_STRING"})
    assert arrays["text"].tolist() == [b"plain", "naïve".encode()]
    assert arrays["raw"].tolist() == [b"\x00\xff\xfe", b"ok"]


def test_bytes_suffix_inputs_always_go_as_b64() -> None:
    doc = orjson.loads(json_codec.encode_predict_request({"img_bytes": np.array([b"ab"])}))
    assert doc["inputs"]["img_bytes"] == [{"b64": "YWI="}]


def test_a_non_string_in_a_string_tensor_is_named() -> None:
    with pytest.raises(CodecError, match=r"input 'text' is a string tensor but holds int"):
        json_codec.encode_predict_request({"text": np.array(["a", 3], dtype=object)})


@pytest.mark.parametrize("dtype", ["DT_UINT32", "DT_UINT64", "DT_INT64", "DT_INT8", "DT_UINT8"])
def test_integer_dtypes_keep_their_type_and_range(dtype: str) -> None:
    target = numpy_dtype(dtype)
    top = np.iinfo(target).max
    arrays = _round_trip({"n": np.array([0, top], dtype=target)}, {"n": dtype})
    assert arrays["n"].dtype == target
    assert arrays["n"].tolist() == [0, int(top)]


def test_uint64_beyond_int64_is_not_turned_into_float() -> None:
    value = 2**64 - 1
    arrays = _round_trip({"n": np.array([value], dtype=np.uint64)}, {"n": "DT_UINT64"})
    assert arrays["n"].dtype == np.uint64 and int(arrays["n"][0]) == value


def test_non_finite_floats_both_ways() -> None:
    values = np.array([[np.nan, np.inf], [-np.inf, 1.5]], dtype=np.float32)
    body = json_codec.encode_predict_request({"x": values})
    assert b"[[NaN,Infinity],[-Infinity,1.5]]" in body
    arrays = _round_trip({"x": values}, {"x": "DT_FLOAT"})
    np.testing.assert_array_equal(arrays["x"], values)
    answer = json_codec.encode_predict_response({"y": values}, json_codec.COLUMNAR)
    assert answer == b'{"outputs":[[NaN,Infinity],[-Infinity,1.5]]}'
    decoded = json_codec.decode_predict_response(answer, {"y": "DT_FLOAT"})
    np.testing.assert_array_equal(decoded, values)


def test_response_strings_and_bytes_outputs_decode_to_bytes() -> None:
    outputs = {
        "label": np.array([b"yes", b"no"], dtype=object),
        "blob_bytes": np.array([b"\x01\x02", b""], dtype=object),
        "score": np.array([0.5, np.nan], dtype=np.float32),
    }
    body = json_codec.encode_predict_response(outputs, json_codec.COLUMNAR)
    doc = orjson.loads(body.replace(b"NaN", b"null"))
    assert doc["outputs"]["blob_bytes"] == [{"b64": "AQI="}, {"b64": ""}]
    decoded = json_codec.decode_predict_response(body)
    assert decoded["label"].tolist() == [b"yes", b"no"]
    assert decoded["blob_bytes"].tolist() == [b"\x01\x02", b""]
    assert decoded["score"][0] == 0.5 and np.isnan(decoded["score"][1])


def test_row_answers_decode_too() -> None:
    assert json_codec.decode_predict_response(b'{"predictions": [3.0, 3.5]}').tolist() == [3.0, 3.5]
    with pytest.raises(CodecError, match="neither 'outputs' nor 'predictions'"):
        json_codec.decode_predict_response(b'{"error": "x"}')


def test_every_tf_serving_json_dtype_has_a_numpy_dtype_and_others_are_named() -> None:
    assert {"DT_UINT32", "DT_UINT64", "DT_HALF", "DT_STRING", "DT_BOOL"} <= set(NUMPY_DTYPES)
    with pytest.raises(CodecError, match="DT_COMPLEX64 has no JSON form") as info:
        numpy_dtype("DT_COMPLEX64")
    assert info.value.code == "UNIMPLEMENTED"
    with pytest.raises(CodecError, match="DT_BFLOAT16"):
        json_codec.to_array([1.0], "DT_BFLOAT16")


def test_signature_from_metadata_keeps_dtype_names_and_tensor_names() -> None:
    dims = {"dim": [{"size": "-1"}, {"size": "1"}], "unknown_rank": False}
    payload = {
        "metadata": {
            "signature_def": {
                "signature_def": {
                    "serving_default": {
                        "inputs": {
                            "n": {"dtype": "DT_UINT32", "tensor_shape": dims, "name": "n:0"}
                        },
                        "outputs": {
                            "c": {"dtype": "DT_COMPLEX64", "tensor_shape": {"unknown_rank": True}}
                        },
                        "method_name": "tensorflow/serving/predict",
                    }
                }
            }
        }
    }
    signature = decode_signature(payload, "serving_default")
    spec = signature.inputs["n"]
    assert (spec.dtype, spec.tf_dtype, spec.shape, spec.tensor_name) == (
        np.dtype(np.uint32),
        "DT_UINT32",
        (-1, 1),
        "n:0",
    )
    assert signature.outputs["c"].shape is None
    with pytest.raises(CodecError, match="DT_COMPLEX64"):
        signature.outputs["c"].require_dtype()
    with pytest.raises(CodecError, match="no signature 'other'"):
        decode_signature(payload, "other")


def test_integer_answers_past_int64_stay_exact_without_dtypes() -> None:
    """numpy alone would read 2**64-1 as a float (18446744073709551616)."""
    decoded = json_codec.decode_predict_response(b'{"outputs": [1, 18446744073709551615]}')
    assert decoded.dtype == np.uint64 and int(decoded[1]) == 2**64 - 1
    mixed = json_codec.decode_predict_response(b'{"outputs": [1, 2.5]}')
    assert mixed.dtype == np.float64 and mixed.tolist() == [1.0, 2.5]

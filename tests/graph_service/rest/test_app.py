"""TF Serving REST compatibility of the real `graph-service` process, fact by fact.

One server for the module, over a models folder with the toolbox model (versions 1 and 2,
labels stable=1 / canary=2) and a dense model. Sources cited in each docstring:
api_rest.md = tensorflow_serving/g3doc/api_rest.md; handler tests =
tensorflow_serving/model_servers/http_rest_api_handler_test.cc; json_tensor =
tensorflow_serving/util/json_tensor.cc and its tests; shared doc = shared/docs/tf-serving-rest.md.
"""

from __future__ import annotations

import base64
import gzip
import http.client
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import requests

from devtools.savedmodels import (
    dense_reference,
    start_graph_service,
    write_dense_savedmodel,
    write_models_config,
)

MAX_BODY = 200_000
TOOL_POLICY = (
    "    model_version_policy { all {} }\n"
    '    version_labels { key: "stable" value: 1 }\n'
    '    version_labels { key: "canary" value: 2 }\n'
)


@pytest.fixture(scope="module")
def server(tmp_path_factory, toolbox_savedmodel_versions):
    root = tmp_path_factory.mktemp("graph_app")
    models = root / "models"
    for version in ("1", "2"):
        shutil.copytree(toolbox_savedmodel_versions / version, models / "tool" / version)
    write_dense_savedmodel(models / "dense" / "1", 4)
    write_models_config(models / "models.config", {"tool": TOOL_POLICY, "dense": ""})
    process = start_graph_service(
        models / "models.config", root / "logs", extra_args=[f"--max_body_bytes={MAX_BODY}"]
    )
    yield process
    process.stop()


def post(server, path: str, body) -> requests.Response:
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    return requests.post(server.url + path, data=data, timeout=30)


def raw(server, method: str, path: str, body: bytes = b"") -> tuple[int, dict]:
    """Send `path` byte for byte (requests would normalise `..`)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request(method, path, body=body)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def assert_error(response: requests.Response, status: int, fragment: str = "") -> str:
    """TF Serving's error shape: JSON `{"error": "<message>"}` with the mapped status."""
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert list(body) == ["error"]
    assert fragment in body["error"]
    return body["error"]


# ----------------------------------------------------------------------------- status


def test_status_lists_every_version_as_strings(server):
    """handler tests GetStatus + shared doc: version is a string, state AVAILABLE, status OK."""
    body = requests.get(server.url + "/v1/models/tool", timeout=10).json()
    statuses = body["model_version_status"]
    assert sorted(s["version"] for s in statuses) == ["1", "2"]
    for status in statuses:
        assert status["state"] == "AVAILABLE"
        assert status["status"] == {"error_code": "OK", "error_message": ""}


def test_status_of_one_version_and_of_a_label(server):
    """handler tests GetStatus: /versions/N and /labels/L answer that version only."""
    by_version = requests.get(server.url + "/v1/models/tool/versions/2", timeout=10).json()
    by_label = requests.get(server.url + "/v1/models/tool/labels/stable", timeout=10).json()
    assert [s["version"] for s in by_version["model_version_status"]] == ["2"]
    assert [s["version"] for s in by_label["model_version_status"]] == ["1"]


def test_status_of_unknown_model_or_version_is_404(server):
    """shared doc Status: unknown model is HTTP 404 with {"error": ...}."""
    assert_error(requests.get(server.url + "/v1/models/nope", timeout=10), 404, "nope")
    assert_error(requests.get(server.url + "/v1/models/tool/versions/9", timeout=10), 404, "9")


def test_status_without_model_name_is_400(server):
    """handler tests UnsupportedApiCalls: GET /v1/models -> 'Missing model name' (400)."""
    assert_error(requests.get(server.url + "/v1/models", timeout=10), 400, "Missing model name")


# ----------------------------------------------------------------------------- metadata


def test_metadata_has_tf_serving_shape(server):
    """api_rest.md Model metadata API + shared doc: model_spec, signature_def, DT_ dtypes, sizes as strings."""
    body = requests.get(server.url + "/v1/models/dense/metadata", timeout=10).json()
    assert body["model_spec"] == {"name": "dense", "signature_name": "", "version": "1"}
    sig = body["metadata"]["signature_def"]["signature_def"]["serving_default"]
    x = sig["inputs"]["x"]
    assert x["dtype"] == "DT_FLOAT"
    assert x["tensor_shape"] == {
        "dim": [{"size": "-1", "name": ""}, {"size": "4", "name": ""}],
        "unknown_rank": False,
    }
    assert x["name"].startswith("serving_default_x")
    assert set(sig["outputs"]) == {"score"}
    assert sig["method_name"] == "tensorflow/serving/predict"
    assert sig["defaults"] == {}


def test_metadata_lists_every_signature_with_its_method(server):
    """shared doc Metadata: every signature is listed, classify/regress with their method_name."""
    body = requests.get(server.url + "/v1/models/tool/versions/1/metadata", timeout=10).json()
    assert body["model_spec"]["version"] == "1"
    sigs = body["metadata"]["signature_def"]["signature_def"]
    assert {"serving_default", "multi", "strings", "classify", "regress"} <= set(sigs)
    assert sigs["classify"]["method_name"] == "tensorflow/serving/classify"
    assert sigs["regress"]["method_name"] == "tensorflow/serving/regress"


# ----------------------------------------------------------------------------- predict


def test_row_format_single_output_is_the_tensor(server):
    """api_rest.md Predict (row format): one output -> predictions is a list of its rows."""
    x = np.array([[0.5, -1.0, 2.0, 0.0], [1.0, 1.0, 1.0, 1.0]], np.float32)
    response = post(server, "/v1/models/dense:predict", {"instances": x.tolist()})
    assert response.status_code == 200, response.text
    assert list(response.json()) == ["predictions"]
    np.testing.assert_allclose(response.json()["predictions"], dense_reference(x), rtol=1e-5)


def test_columnar_format_single_output_is_the_tensor(server):
    """api_rest.md Predict (columnar): one output -> "outputs" holds the tensor itself."""
    x = np.array([[0.1, 0.2, 0.3, 0.4]], np.float32)
    response = post(server, "/v1/models/dense:predict", {"inputs": x.tolist()})
    assert list(response.json()) == ["outputs"]
    np.testing.assert_allclose(response.json()["outputs"], dense_reference(x), rtol=1e-5)


def test_named_inputs_row_format_several_outputs_are_objects(server):
    """api_rest.md row format: named inputs as objects; several outputs -> one object per instance."""
    body = {
        "signature_name": "multi",
        "instances": [{"a": [1.0, 2.0], "b": 10.0}, {"a": [3.0, 4.0], "b": 20.0}],
    }
    response = post(server, "/v1/models/tool/versions/1:predict", body)
    assert response.json() == {
        "predictions": [
            {"double": [2.0, 4.0], "total": 13.0},
            {"double": [6.0, 8.0], "total": 27.0},
        ]
    }


def test_named_inputs_columnar_several_outputs_are_an_object(server):
    """api_rest.md columnar: inputs as an object of tensors; several outputs -> object of tensors."""
    body = {"signature_name": "multi", "inputs": {"a": [[1.0, 2.0]], "b": [10.0]}}
    response = post(server, "/v1/models/tool/versions/1:predict", body)
    assert response.json() == {"outputs": {"double": [[2.0, 4.0]], "total": [13.0]}}


def test_b64_strings_in_and_bytes_outputs_out(server):
    """api_rest.md Encoding binary values: {"b64": ...} in; outputs ending in _bytes come back as b64."""
    raw_bytes = bytes([0, 255, 10])
    body = {
        "signature_name": "strings",
        "instances": [{"b64": base64.b64encode(raw_bytes).decode()}, "héllo"],
    }
    response = post(server, "/v1/models/tool:predict", body)
    predictions = response.json()["predictions"]
    assert predictions[0] == {
        "echo_bytes": {"b64": base64.b64encode(raw_bytes).decode()},
        "length": 3,
    }
    assert base64.b64decode(predictions[1]["echo_bytes"]["b64"]).decode() == "héllo"
    assert predictions[1]["length"] == len("héllo".encode())


def test_nan_and_infinity_literals_round_trip(server):
    """shared doc Numbers + json_tensor tests: NaN/Infinity accepted as bare literals and written back."""
    body = '{"inputs": [[NaN, 0, 0], [Infinity, 1, 1], [-Infinity, 0, 0]]}'
    response = post(server, "/v1/models/tool/versions/1:predict", body)
    assert response.status_code == 200, response.text
    assert response.text.replace(" ", "").startswith('{"outputs":[[NaN],[Infinity],[-Infinity]]')


def test_latest_version_versions_and_labels_route(server):
    """api_rest.md URLs: no version -> latest; /versions/N and /labels/L pick that version."""
    body = {"instances": [[1.0, 2.0, 3.0]]}
    assert post(server, "/v1/models/tool:predict", body).json() == {"predictions": [[106.0]]}
    assert post(server, "/v1/models/tool/versions/1:predict", body).json() == {
        "predictions": [[6.0]]
    }
    assert post(server, "/v1/models/tool/labels/stable:predict", body).json() == {
        "predictions": [[6.0]]
    }
    assert post(server, "/v1/models/tool/labels/canary:predict", body).json() == {
        "predictions": [[106.0]]
    }


def test_explicit_serving_default_signature(server):
    """handler tests Predict: signature_name "serving_default" equals leaving it out."""
    body = {"signature_name": "serving_default", "instances": [[1.0, 1.0, 1.0]]}
    assert post(server, "/v1/models/tool/versions/1:predict", body).json() == {
        "predictions": [[3.0]]
    }


# ----------------------------------------------------------------------------- classify / regress


def test_classify_returns_label_score_pairs(server):
    """handler tests Classify / shared doc: {"results": [[[label, score], ...]]} per example."""
    body = {"signature_name": "classify", "examples": [{"x": [1.0, 2.0, -3.0]}]}
    response = post(server, "/v1/models/tool/versions/1:classify", body)
    assert response.status_code == 200, response.text
    ((neg, pos),) = response.json()["results"]
    assert neg[0] == "neg" and pos[0] == "pos"
    assert neg[1] == pytest.approx(0.5) and pos[1] == pytest.approx(0.5)


def test_regress_merges_context_into_examples(server):
    """api_rest.md Classify and Regress: context features join every example; results one value each."""
    body = {
        "signature_name": "regress",
        "context": {"x": [0.0, 0.0, 0.0]},
        "examples": [{"x": [1.0, 2.0, 3.5]}, {}],
    }
    response = post(server, "/v1/models/tool/labels/stable:regress", body)
    assert response.json() == {"results": [6.5, 0.0]}


def test_classify_on_a_predict_signature_is_400(server):
    """TF Serving checks the signature's method_name before classifying (INVALID_ARGUMENT)."""
    body = {"examples": [{"x": [1.0, 2.0, 3.0]}]}
    assert_error(post(server, "/v1/models/tool:classify", body), 400, "method_name")


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ("", "JSON Parse error"),
        ("instances = [1, 2]", "JSON Parse error"),
        ('{"instances": [[1.0, 2.0, 3.0, 4.0]', "JSON Parse error"),
        ("[1, 2]", "Is not object"),
        (
            '{"signature_name": 100, "instances": [[1,2,3,4]]}',
            "'signature_name' key must be a string",
        ),
        ('{"instances": [[1,2,3,4]], "inputs": [[1,2,3,4]]}', "only one of"),
        ('{"rows": [[1,2,3,4]]}', "Missing 'inputs' or 'instances'"),
        ('{"instances": []}', "No values"),
        ('{"instances": [[1,2,3,4], [1,2]]}', "Expecting shape"),
        ('{"instances": [["a","b","c","d"]]}', "not of expected type: float"),
        # No shape check of our own: the graph's MatMul refuses, with the runtime's message.
        ('{"instances": [[1,2,3]]}', "Matrix size-incompatible: In[0]: [1,3]"),
        (
            '{"instances": [[1,2,3,4]], "signature_name": "nope"}',
            'Serving signature name: "nope" not found',
        ),
        ("[" * 100_000 + "]" * 100_000, "JSON Parse error"),
    ],
)
def test_malformed_predict_bodies_are_400(server, body, fragment):
    """handler tests PredictRequestErrors + json_tensor tests: each is INVALID_ARGUMENT, HTTP 400."""
    assert_error(post(server, "/v1/models/dense:predict", body), 400, fragment)
    assert server.alive()


def test_wrong_dtype_for_integer_input_is_400(server):
    """json_tensor: a fractional number for an int64 input is not of expected type: int64."""
    body = {"signature_name": "ints", "instances": [1, 2.5]}
    assert_error(post(server, "/v1/models/tool:predict", body), 400, "int64")
    ok = post(server, "/v1/models/tool:predict", {"signature_name": "ints", "instances": [1, 2]})
    assert ok.json() == {"predictions": [2, 4]}


def test_batch_size_mismatch_is_400(server):
    """shared doc Predict: row objects need every named input; columnar batch sizes must fit the graph."""
    row = {"signature_name": "multi", "instances": [{"a": [1.0, 2.0], "b": 1.0}, {"a": [1.0, 2.0]}]}
    assert_error(post(server, "/v1/models/tool:predict", row), 400, "keys must be equal")
    columnar = {"signature_name": "multi", "inputs": {"a": [[1.0, 2.0]] * 2, "b": [1.0, 2.0, 3.0]}}
    assert_error(post(server, "/v1/models/tool:predict", columnar), 400)


def test_unknown_model_version_and_label(server):
    """handler tests PredictModelNameVersionErrors: unknown model/version NOT_FOUND (404); unknown label INVALID_ARGUMENT (400)."""
    body = {"instances": [[1.0, 2.0, 3.0]]}
    assert_error(post(server, "/v1/models/nope:predict", body), 404, "Servable not found")
    assert_error(
        post(server, "/v1/models/tool/versions/7:predict", body), 404, "Servable not found"
    )
    assert_error(
        post(server, "/v1/models/tool/labels/nope:predict", body),
        400,
        "Unrecognized servable version label",
    )


def test_body_over_the_limit_is_413(server):
    """Issue 3 bad input: a configurable body limit answers 413 in the JSON error shape."""
    rows = [[0.25, 0.25, 0.25, 0.25]] * (MAX_BODY // 20)
    response = post(server, "/v1/models/dense:predict", {"instances": rows})
    assert_error(response, 413, "--max_body_bytes")
    assert post(server, "/v1/models/dense:predict", {"instances": rows[:10]}).status_code == 200


def chunks(data: bytes, size: int = 16_384):
    """A generator body, so requests sends it with Transfer-Encoding: chunked (no Content-Length)."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


def test_chunked_body_over_the_limit_is_413_not_truncated(server):
    """Our --max_body_bytes guard holds without Content-Length: a chunked body past it is 413.

    TF Serving itself has no such limit (shared doc; its evhttp server reads the whole body),
    so a chunked body under the limit must be read whole and answered normally.
    """
    rows = [[0.25, 0.25, 0.25, 0.25]] * (MAX_BODY // 20)
    big = json.dumps({"instances": rows}).encode()
    assert len(big) > MAX_BODY
    response = requests.post(server.url + "/v1/models/dense:predict", data=chunks(big), timeout=30)
    assert "Content-Length" not in response.request.headers
    assert_error(response, 413, "--max_body_bytes")
    small = json.dumps({"instances": rows[:50]}).encode()
    ok = requests.post(server.url + "/v1/models/dense:predict", data=chunks(small, 100), timeout=30)
    assert ok.status_code == 200, ok.text
    assert len(ok.json()["predictions"]) == 50
    assert server.alive()


def test_gzip_request_body_is_decompressed(server):
    """net_http evhttp_request.cc: a body whose Content-Encoding contains "gzip" is gunzipped
    (auto_uncompress_input defaults to true) before the handler parses the JSON."""
    x = np.array([[0.5, -1.0, 2.0, 0.0]], np.float32)
    body = gzip.compress(json.dumps({"instances": x.tolist()}).encode())
    response = requests.post(
        server.url + "/v1/models/dense:predict",
        data=body,
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    np.testing.assert_allclose(response.json()["predictions"], dense_reference(x), rtol=1e-5)


def test_gzip_bomb_is_413_and_corrupt_gzip_is_400(server):
    """evhttp_request.cc caps gunzipped size (auto_uncompress_max_size); ours is --max_body_bytes.

    A corrupt gzip body makes TF Serving's reader return no body at all; we answer 400 naming
    the Content-Encoding so the client knows what to fix.
    """
    doc = b'{"instances": [[1, 2, 3, 4]]' + b" " * (MAX_BODY * 50) + b"}"
    bomb = gzip.compress(doc)
    assert len(bomb) < MAX_BODY
    headers = {"Content-Encoding": "gzip"}
    url = server.url + "/v1/models/dense:predict"
    assert_error(requests.post(url, data=bomb, headers=headers, timeout=30), 413, "Decompressed")
    plain = json.dumps({"instances": [[1, 2, 3, 4]]}).encode()
    for corrupt in (b"not gzip at all", gzip.compress(plain)[:-12]):
        response = requests.post(url, data=corrupt, headers=headers, timeout=30)
        assert_error(response, 400, "not valid gzip")
    assert server.alive()


def test_unknown_named_columnar_input_is_ignored_like_tf_serving(server):
    """json_tensor.cc FillTensorMapFromInputsMap looks up each signature input in the "inputs"
    object and never looks at other keys, so {"x": ..., "zz": [1]} predicts from x alone (200).
    predict_util.cc's "input tensor alias not found in signature" check sees only the
    PredictRequest built from the JSON, which no longer holds zz (it fires for gRPC callers)."""
    body = {"signature_name": "multi", "inputs": {"a": [[1.0, 2.0]], "b": [10.0]}}
    expected = {"outputs": {"double": [[2.0, 4.0]], "total": [13.0]}}
    extra = {**body, "inputs": {**body["inputs"], "zz": [1]}}
    response = post(server, "/v1/models/tool/versions/1:predict", extra)
    assert response.status_code == 200, response.text
    assert response.json() == expected
    # A missing signature input is still an error: only extra keys are ignored.
    missing = {"signature_name": "multi", "inputs": {"a": [[1.0, 2.0]], "zz": [1]}}
    assert_error(
        post(server, "/v1/models/tool/versions/1:predict", missing), 400, "Missing named input: b"
    )


@pytest.mark.parametrize("literal", ["1e400", "-1e400", "1" + "0" * 400])
def test_number_beyond_double_range_is_400(server, literal):
    """json_tensor.cc ParseJson uses rapidjson with kParseNanAndInfFlag only: a number literal
    that overflows a double is kParseErrorNumberTooBig ("Number too big to be stored in
    double."), a 400, while the bare literals NaN/Infinity stay accepted (shared doc Numbers)."""
    body = '{"instances": [[' + literal + ", 1, 1]]}"
    message = assert_error(post(server, "/v1/models/tool/versions/1:predict", body), 400)
    assert "Number too big to be stored in double" in message
    ok = post(server, "/v1/models/tool/versions/1:predict", '{"instances": [[Infinity, 1, 1]]}')
    assert ok.status_code == 200, ok.text
    assert ok.text.replace(" ", "") == '{"predictions":[[Infinity]]}'


@pytest.mark.parametrize(
    ("method", "path", "status", "fragment"),
    [
        ("POST", "/v1/models/..:predict", 404, "Servable not found"),
        ("POST", "/v1/models/%2e%2e:predict", 404, "Servable not found"),
        ("POST", "/v1/models/../dense:predict", 400, "Malformed request"),
        ("GET", "/v1/models/dense/../../etc/passwd", 400, "Malformed request"),
        ("GET", "/v1/models/dense:predict", 400, "Malformed request"),
        ("POST", "/v1/models/dense/metadata", 400, "Malformed request"),
        ("POST", "/v1/models/dense/versions/HELLO:predict", 400, "Malformed request"),
        (
            "POST",
            "/v1/models/dense/versions/99999999999999999999:predict",
            400,
            "Failed to convert version",
        ),
        ("GET", "/v1/foo", 400, "Malformed request"),
        ("GET", "/index.html", 404, "No such path"),
    ],
)
def test_unknown_and_tricky_paths(server, method, path, status, fragment):
    """handler tests UnsupportedApiCalls: unmatched /v1/ paths are 400 'Malformed request'; names are never file paths."""
    got, body = raw(
        server, method, path, b'{"instances": [[1,2,3,4]]}' if method == "POST" else b""
    )
    assert got == status
    assert fragment in body["error"]
    assert server.alive()


def test_server_survives_every_bad_request(server):
    """Issue 3: nothing a client sends yields a 500 or kills the server."""
    assert requests.get(server.url + "/v1/models/dense", timeout=10).status_code == 200
    assert server.alive()


def test_config_with_container_base_paths_is_served_unchanged(server):
    """shared doc models.config: base_path "/models/NAME" is the container path; read unchanged locally."""
    text = Path(server.argv[1].split("=", 1)[1]).read_text()
    assert 'base_path: "/models/tool"' in text
    assert requests.get(server.url + "/v1/models/tool", timeout=10).status_code == 200

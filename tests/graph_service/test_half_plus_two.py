"""TF Serving's own REST tests, run against graph-service serving TF Serving's own test model.

The model is `half_plus_two`, generated in devtools/savedmodels.py the way
tensorflow_serving/servables/tensorflow/testdata/saved_model_half_plus_two.py generates it
(`x` is tf.identity of a parse_example output, not a placeholder). Request bodies and expected
answers are those of tensorflow_serving/model_servers/tensorflow_model_server_test.py:
testPredictREST, testPredictColumnarREST, testClassifyREST, testRegressREST,
testGetStatusREST, testGetModelMetadataREST (expected body: half_plus_two_model_metadata.json
beside the generator) and testPrometheusEndpoint. The model is served as `default`, version
folder 00000123, as there.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from devtools.savedmodels import start_graph_service
from devtools.servers import ServerProcess


@pytest.fixture(scope="module")
def server(half_plus_two_models: Path, tmp_path_factory) -> Iterator[ServerProcess]:
    process = start_graph_service(
        half_plus_two_models / "models.config", tmp_path_factory.mktemp("hp2_logs")
    )
    try:
        yield process
    finally:
        process.stop()


def _post(server: ServerProcess, verb: str, body: dict) -> requests.Response:
    return requests.post(f"{server.url}/v1/models/default:{verb}", json=body, timeout=30)


def test_predict_rest(server: ServerProcess) -> None:
    """testPredictREST: a flat list although the signature declares x as [-1, 1]."""
    response = _post(server, "predict", {"instances": [2.0, 3.0, 4.0]})
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": [3.0, 3.5, 4.0]}


def test_predict_columnar_rest(server: ServerProcess) -> None:
    """testPredictColumnarREST."""
    response = _post(server, "predict", {"inputs": [2.0, 3.0, 4.0]})
    assert response.status_code == 200, response.text
    assert response.json() == {"outputs": [3.0, 3.5, 4.0]}


def test_predict_with_the_declared_shape_too(server: ServerProcess) -> None:
    """The declared [-1, 1] shape works as well and keeps its rank in the answer."""
    response = _post(server, "predict", {"instances": [[2.0], [3.0]]})
    assert response.json() == {"predictions": [[3.0], [3.5]]}


def test_classify_rest(server: ServerProcess) -> None:
    """testClassifyREST: no classes output, so the label is ""."""
    response = _post(
        server, "classify", {"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]}
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"results": [[["", 3.0]]]}


def test_regress_rest(server: ServerProcess) -> None:
    """testRegressREST, and the other regress signatures of the model."""
    response = _post(
        server, "regress", {"signature_name": "regress_x_to_y", "examples": [{"x": 2.0}]}
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"results": [3.0]}
    y2 = _post(server, "regress", {"signature_name": "regress_x_to_y2", "examples": [{"x": 2.0}]})
    assert y2.json() == {"results": [4.0]}


def test_get_status_rest(server: ServerProcess) -> None:
    """testGetStatusREST: version "123" from folder 00000123."""
    response = requests.get(f"{server.url}/v1/models/default", timeout=10)
    assert response.json() == {
        "model_version_status": [
            {
                "version": "123",
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }
        ]
    }


def _dims(*sizes: str) -> dict:
    return {"dim": [{"size": s, "name": ""} for s in sizes], "unknown_rank": False}


def _tensor(dtype: str, shape: dict, name: str) -> dict:
    return {"dtype": dtype, "tensor_shape": shape, "name": name}


def test_get_model_metadata_rest(server: ServerProcess) -> None:
    """testGetModelMetadataREST against half_plus_two_model_metadata.json.

    Newer TF Serving releases add `"defaults": {}` to every signature (the shared doc's
    metadata example); the checked-in JSON predates it, so it is compared without it. The
    string placeholder is written with its declared shape [-1] by today's saver, where the
    2017 file says unknown rank; dtype and tensor name agree.
    """
    body = requests.get(f"{server.url}/v1/models/default/metadata", timeout=10).json()
    assert body["model_spec"] == {"name": "default", "signature_name": "", "version": "123"}
    signatures = body["metadata"]["signature_def"]["signature_def"]
    for signature in signatures.values():
        assert signature.pop("defaults") == {}
    column = _dims("-1", "1")
    example = signatures["classify_x_to_y"]["inputs"]["inputs"]
    assert (example["dtype"], example["name"]) == ("DT_STRING", "tf_example:0")

    def regress(inputs: dict, output: str) -> dict:
        return {
            "inputs": {"inputs": inputs},
            "outputs": {"outputs": _tensor("DT_FLOAT", column, output)},
            "method_name": "tensorflow/serving/regress",
        }

    assert signatures == {
        "serving_default": {
            "inputs": {"x": _tensor("DT_FLOAT", column, "x:0")},
            "outputs": {"y": _tensor("DT_FLOAT", column, "y:0")},
            "method_name": "tensorflow/serving/predict",
        },
        "classify_x_to_y": {
            "inputs": {"inputs": example},
            "outputs": {"scores": _tensor("DT_FLOAT", column, "y:0")},
            "method_name": "tensorflow/serving/classify",
        },
        "regress_x_to_y": regress(example, "y:0"),
        "regress_x_to_y2": regress(example, "y2:0"),
        "regress_x2_to_y3": regress(_tensor("DT_FLOAT", column, "x2:0"), "y3:0"),
    }


def test_prometheus_endpoint(server: ServerProcess) -> None:
    """testPrometheusEndpoint: the body carries metric type information, TF Serving's names."""
    _post(server, "predict", {"instances": [2.0]})
    response = requests.get(f"{server.url}/monitoring/prometheus/metrics", timeout=10)
    assert response.status_code == 200
    assert "# TYPE" in response.text
    assert ':tensorflow:serving:request_count{model_name="default",status="OK"}' in response.text
    labels = 'model_name="default",API="predict",entrypoint="REST"'
    assert f":tensorflow:serving:request_latency_count{{{labels}}}" in response.text
    assert f':tensorflow:serving:request_latency_bucket{{{labels},le="+Inf"}}' in response.text

"""TF Serving's own gRPC tests, run against graph-service serving TF Serving's own test model.

The model is `half_plus_two` (devtools/savedmodels.py builds it the way
tensorflow_serving/servables/tensorflow/testdata/saved_model_half_plus_two.py does), served
as `default` from version folder 00000123, as in
tensorflow_serving/model_servers/tensorflow_model_server_test.py. Requests and expected
answers are that file's: VerifyPredictRequest (x = [2.0] -> y = [3.0], with and without
output_filter), testClassify, testRegress, testMultiInference, testGetModelStatus and
testGetModelMetadata, each spoken through tensorflow-serving-api's generated stubs to the
real process on a free gRPC port. The last test checks that those calls are counted in TF
Serving's metrics the way its gRPC server counts them (prediction_service_impl.cc:
request_count per model and status, request_latency with API "Predict"/"Classify"/"Regress"
and entrypoint "GRPC").
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import requests
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from devtools.savedmodels import start_graph_service
from devtools.servers import ServerProcess, free_port

RPC_TIMEOUT = 5.0  # tensorflow_model_server_test.py's RPC_TIMEOUT
VERSION = 123  # the version folder 00000123


@pytest.fixture(scope="module")
def server(half_plus_two_models: Path, tmp_path_factory) -> Iterator[ServerProcess]:
    grpc_port = free_port()
    process = start_graph_service(
        half_plus_two_models / "models.config",
        tmp_path_factory.mktemp("hp2_grpc_logs"),
        extra_args=[f"--port={grpc_port}"],
    )
    process.grpc_address = f"127.0.0.1:{grpc_port}"
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def channel(server: ServerProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.grpc_address) as chan:
        grpc.channel_ready_future(chan).result(timeout=30)
        yield chan


@pytest.fixture(scope="module")
def predictions(channel: grpc.Channel):
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


def verify_model_spec(spec, name: str, signature_name: str, version: int) -> None:
    """_VerifyModelSpec: the answer echoes model name, signature name and served version."""
    assert spec.name == name
    assert spec.signature_name == signature_name
    assert spec.version.value == version


def x_request(*, specify_output: bool) -> predict_pb2.PredictRequest:
    """VerifyPredictRequest's request: x = [2.0] as DT_FLOAT float_val, shape [1]."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "default"
    request.inputs["x"].dtype = types_pb2.DT_FLOAT
    request.inputs["x"].float_val.append(2.0)
    request.inputs["x"].tensor_shape.dim.add().size = 1
    if specify_output:
        request.output_filter.append("y")
    return request


def x_examples(input_proto) -> None:
    """One tf.Example with feature x = [2.0], as testClassify/testRegress build it."""
    example = input_proto.example_list.examples.add()
    example.features.feature["x"].float_list.value.extend([2.0])


@pytest.mark.parametrize("specify_output", [True, False])
def test_predict(predictions, specify_output: bool) -> None:
    """testPredictSavedModel (_TestPredict -> VerifyPredictRequest, with and without
    output_filter): y = 0.5 * 2.0 + 2 = 3.0 in float_val, DT_FLOAT, model_spec echoed."""
    result = predictions.Predict(x_request(specify_output=specify_output), RPC_TIMEOUT)
    assert "y" in result.outputs
    assert result.outputs["y"].dtype == types_pb2.DT_FLOAT
    assert len(result.outputs["y"].float_val) == 1
    assert result.outputs["y"].float_val[0] == 3.0
    verify_model_spec(result.model_spec, "default", "serving_default", VERSION)


def test_classify(predictions) -> None:
    """testClassify: classify_x_to_y has only a scores output, one class whose score is y."""
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "default"
    request.model_spec.signature_name = "classify_x_to_y"
    x_examples(request.input)
    result = predictions.Classify(request, RPC_TIMEOUT)
    assert len(result.result.classifications) == 1
    assert len(result.result.classifications[0].classes) == 1
    assert result.result.classifications[0].classes[0].score == 3.0
    assert result.result.classifications[0].classes[0].label == ""  # no classes output
    verify_model_spec(result.model_spec, "default", "classify_x_to_y", VERSION)


def test_regress(predictions) -> None:
    """testRegress: regress_x_to_y over one example x = 2.0 -> 3.0."""
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = "default"
    request.model_spec.signature_name = "regress_x_to_y"
    x_examples(request.input)
    result = predictions.Regress(request, RPC_TIMEOUT)
    assert len(result.result.regressions) == 1
    assert result.result.regressions[0].value == 3.0
    verify_model_spec(result.model_spec, "default", "regress_x_to_y", VERSION)


def test_multi_inference(predictions) -> None:
    """testMultiInference: regress_x_to_y and classify_x_to_y over one input, in task order."""
    request = inference_pb2.MultiInferenceRequest()
    request.tasks.add().model_spec.name = "default"
    request.tasks[0].model_spec.signature_name = "regress_x_to_y"
    request.tasks[0].method_name = "tensorflow/serving/regress"
    request.tasks.add().model_spec.name = "default"
    request.tasks[1].model_spec.signature_name = "classify_x_to_y"
    request.tasks[1].method_name = "tensorflow/serving/classify"
    x_examples(request.input)
    result = predictions.MultiInference(request, RPC_TIMEOUT)
    assert len(result.results) == 2
    assert result.results[0].regression_result.regressions[0].value == 3.0
    assert result.results[1].classification_result.classifications[0].classes[0].score == 3.0
    for task, answer in zip(request.tasks, result.results, strict=True):
        verify_model_spec(
            answer.model_spec, task.model_spec.name, task.model_spec.signature_name, VERSION
        )


def test_get_model_status(channel: grpc.Channel) -> None:
    """testGetModelStatus: one version, 123, error_code 0 (OK); state AVAILABLE (30)."""
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "default"
    stub = model_service_pb2_grpc.ModelServiceStub(channel)
    result = stub.GetModelStatus(request, RPC_TIMEOUT)
    assert len(result.model_version_status) == 1
    assert result.model_version_status[0].version == VERSION
    assert result.model_version_status[0].status.error_code == 0
    assert result.model_version_status[0].state == get_model_status_pb2.ModelVersionStatus.AVAILABLE


def test_get_model_metadata(predictions) -> None:
    """testGetModelMetadata: name, version and exactly one metadata entry, signature_def.

    Beyond the original test, the packed SignatureDefMap is unpacked and checked against the
    model's five signatures and serving_default's x -> y tensors.
    """
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "default"
    request.metadata_field.append("signature_def")
    result = predictions.GetModelMetadata(request, RPC_TIMEOUT)
    assert result.model_spec.name == "default"
    assert result.model_spec.version.value == VERSION
    assert len(result.metadata) == 1
    assert "signature_def" in result.metadata
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    assert result.metadata["signature_def"].Unpack(signature_map)
    assert sorted(signature_map.signature_def) == [
        "classify_x_to_y",
        "regress_x2_to_y3",
        "regress_x_to_y",
        "regress_x_to_y2",
        "serving_default",
    ]
    default = signature_map.signature_def["serving_default"]
    assert (default.inputs["x"].name, default.inputs["x"].dtype) == ("x:0", types_pb2.DT_FLOAT)
    assert (default.outputs["y"].name, default.outputs["y"].dtype) == ("y:0", types_pb2.DT_FLOAT)
    assert default.method_name == "tensorflow/serving/predict"


def _metric(server: ServerProcess, series: str) -> float:
    text = requests.get(f"{server.url}/monitoring/prometheus/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.parametrize(
    ("api", "call"),
    [
        ("Predict", lambda stub: stub.Predict(x_request(specify_output=True), RPC_TIMEOUT)),
        (
            "Regress",
            lambda stub: stub.Regress(
                _with_examples(regression_pb2.RegressionRequest(), "regress_x_to_y"),
                RPC_TIMEOUT,
            ),
        ),
        (
            "Classify",
            lambda stub: stub.Classify(
                _with_examples(classification_pb2.ClassificationRequest(), "classify_x_to_y"),
                RPC_TIMEOUT,
            ),
        ),
    ],
)
def test_grpc_calls_are_counted_with_entrypoint_grpc(server, predictions, api, call) -> None:
    """One gRPC call adds one to request_count{model_name,status="OK"} (shared with REST) and
    one to request_latency{API=<TF Serving's gRPC name>,entrypoint="GRPC"}; REST's own
    latency series (entrypoint="REST") does not move."""
    count = ':tensorflow:serving:request_count{model_name="default",status="OK"}'
    grpc_latency = (
        ":tensorflow:serving:request_latency_count"
        f'{{model_name="default",API="{api}",entrypoint="GRPC"}}'
    )
    rest_latency = (
        ":tensorflow:serving:request_latency_count"
        '{model_name="default",API="predict",entrypoint="REST"}'
    )
    before = [_metric(server, s) for s in (count, grpc_latency, rest_latency)]
    call(predictions)
    after = [_metric(server, s) for s in (count, grpc_latency, rest_latency)]
    assert [b - a for a, b in zip(before, after, strict=True)] == [1, 1, 0]


def _with_examples(request, signature_name: str):
    request.model_spec.name = "default"
    request.model_spec.signature_name = signature_name
    x_examples(request.input)
    return request


def test_failed_grpc_call_is_counted_with_its_code(server, predictions) -> None:
    """A refused call counts under its canonical code, as RecordModelRequestCount does."""
    series = ':tensorflow:serving:request_count{model_name="default",status="INVALID_ARGUMENT"}'
    before = _metric(server, series)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "default"
    request.inputs["nope"].dtype = types_pb2.DT_FLOAT
    request.inputs["nope"].float_val.append(2.0)
    with pytest.raises(grpc.RpcError) as caught:
        predictions.Predict(request, RPC_TIMEOUT)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _metric(server, series) == before + 1

"""TF Serving's gRPC API on `--port`, through tensorflow-serving-api's own client stubs.

One real `graph-service` process for the module (REST and gRPC on free ports) over the
toolbox model (versions 1 and 2 serve, version 3 is broken; labels stable=1, canary=2) and
a dense model. Sources: server test = tensorflow_serving/model_servers/
tensorflow_model_server_test.py; predict_util = tensorflow_serving/servables/tensorflow/
predict_util.cc; shared doc = shared/docs/tf-serving-rest.md (gRPC section).
"""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import grpc
import numpy as np
import pytest
import requests
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)
from tensorflow_serving.config import model_server_config_pb2

from devtools.savedmodels import (
    dense_reference,
    start_graph_service,
    write_dense_savedmodel,
    write_models_config,
    write_spin_savedmodel,
)
from devtools.servers import free_port, script
from graph_service.bootstrap import build_service
from graph_service.cli import build_parser, main, settings_from_args

TIMEOUT = 30
TOOL_POLICY = (
    "    model_version_policy { all {} }\n"
    '    version_labels { key: "stable" value: 1 }\n'
    '    version_labels { key: "canary" value: 2 }\n'
)
X = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], np.float32)


def write_broken_version(version_dir: Path) -> None:
    """A version folder whose saved_model.pb is not a protobuf: it fails to load."""
    version_dir.mkdir(parents=True)
    (version_dir / "saved_model.pb").write_bytes(b"\x08garbage, not a protobuf")


@pytest.fixture(scope="module")
def server(tmp_path_factory, toolbox_savedmodel_versions):
    root = tmp_path_factory.mktemp("graph_grpc")
    models = root / "models"
    for version in ("1", "2"):
        shutil.copytree(toolbox_savedmodel_versions / version, models / "tool" / version)
    write_broken_version(models / "tool" / "3")
    write_dense_savedmodel(models / "dense" / "1", 4)
    write_dense_savedmodel(models / "spare" / "1", 4, seed=7)
    write_broken_version(models / "bad" / "1")
    write_dense_savedmodel(models / "credit" / "1", 3)  # the client example in the docs
    credit = '    version_labels { key: "stable" value: 1 }\n'
    write_models_config(
        models / "models.config", {"tool": TOOL_POLICY, "dense": "", "credit": credit}
    )
    grpc_port = free_port()
    process = start_graph_service(
        models / "models.config",
        root / "logs",
        # Config polling off: HandleReloadConfigRequest's config must not be replaced by the
        # file's at the next poll (TF Serving re-applies the file when polling too).
        extra_args=[f"--port={grpc_port}", "--model_config_file_poll_wait_seconds=0"],
    )
    process.grpc_address = f"127.0.0.1:{grpc_port}"
    process.models = models
    yield process
    process.stop()


@pytest.fixture(scope="module")
def channel(server):
    with grpc.insecure_channel(server.grpc_address) as chan:
        grpc.channel_ready_future(chan).result(timeout=TIMEOUT)
        yield chan


@pytest.fixture(scope="module")
def predictions(channel):
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


@pytest.fixture(scope="module")
def models(channel):
    return model_service_pb2_grpc.ModelServiceStub(channel)


def predict_request(
    name: str = "tool",
    inputs: dict | None = None,
    *,
    signature: str = "",
    version: int | None = None,
    label: str | None = None,
) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    if signature:
        request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    if label is not None:
        request.model_spec.version_label = label
    for key, value in (inputs if inputs is not None else {"x": X}).items():
        request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
    return request


def examples_input(input_proto, rows: list[list[float]], context: dict | None = None) -> None:
    """Fill a tensorflow.serving.Input with tf.Examples holding feature `x`."""
    if context is None:
        target = input_proto.example_list.examples
    else:
        with_context = input_proto.example_list_with_context
        for key, values in context.items():
            with_context.context.features.feature[key].float_list.value.extend(values)
        target = with_context.examples
    for row in rows:
        target.add().features.feature["x"].float_list.value.extend(row)


def rpc_error(call, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call(request, timeout=TIMEOUT)
    return caught.value


def assert_spec(spec, name: str, version: int, signature: str | None = None) -> None:
    """server test _VerifyModelSpec: name, signature_name and version.value echoed."""
    assert spec.name == name
    assert spec.version.value == version
    if signature is not None:
        assert spec.signature_name == signature


# ----------------------------------------------------------------------------- Predict


def test_predict_answers_like_tf_serving(server, predictions):
    """server test VerifyPredictRequest: outputs in the typed field (float_val, not packed
    tensor_content, predict_util AsProtoField), model_spec echoed with the served (latest)
    version and the resolved signature name; same numbers as REST."""
    result = predictions.Predict(predict_request(), timeout=TIMEOUT)
    assert list(result.outputs) == ["score"]
    score = result.outputs["score"]
    assert score.dtype == types_pb2.DT_FLOAT
    assert not score.tensor_content
    assert list(score.float_val) == [106.0, 115.0]  # version 2 adds 100
    assert [d.size for d in score.tensor_shape.dim] == [2, 1]
    assert_spec(result.model_spec, "tool", 2, "serving_default")
    rest = requests.post(
        server.url + "/v1/models/tool:predict", json={"instances": X.tolist()}, timeout=TIMEOUT
    ).json()
    np.testing.assert_allclose(tf.make_ndarray(score), rest["predictions"])


@pytest.mark.parametrize(
    ("route", "version", "offset"),
    [({"version": 1}, 1, 0.0), ({"label": "stable"}, 1, 0.0), ({"label": "canary"}, 2, 100.0)],
)
def test_version_and_label_routing(predictions, route, version, offset):
    """shared doc: model_spec.version / version_label pick the servable; the answer names it."""
    result = predictions.Predict(predict_request(**route), timeout=TIMEOUT)
    np.testing.assert_allclose(
        tf.make_ndarray(result.outputs["score"]), X.sum(axis=1, keepdims=True) + offset
    )
    assert_spec(result.model_spec, "tool", version, "serving_default")


def test_output_filter_and_named_inputs(predictions):
    """predict_util PreProcessPrediction: output_filter returns only the named outputs."""
    request = predict_request(
        inputs={"a": np.array([[1.0, 2.0]], np.float32), "b": np.array([10.0], np.float32)},
        signature="multi",
        version=1,
    )
    full = predictions.Predict(request, timeout=TIMEOUT)
    assert sorted(full.outputs) == ["double", "total"]
    request.output_filter.append("total")
    filtered = predictions.Predict(request, timeout=TIMEOUT)
    assert list(filtered.outputs) == ["total"]
    assert list(filtered.outputs["total"].float_val) == [13.0]
    assert filtered.model_spec.signature_name == "multi"


def test_strings_and_int64_round_trip(predictions):
    """DT_STRING in string_val and DT_INT64 in int64_val, both ways."""
    text = predictions.Predict(
        predict_request(
            inputs={"text": np.array([b"abc", b"\xff\x00"], object)}, signature="strings"
        ),
        timeout=TIMEOUT,
    )
    assert list(text.outputs["length"].int_val) == [3, 2]
    assert list(text.outputs["echo_bytes"].string_val) == [b"abc", b"\xff\x00"]
    ints = predictions.Predict(
        predict_request(inputs={"n": np.array([2**40, -3], np.int64)}, signature="ints"),
        timeout=TIMEOUT,
    )
    assert ints.outputs["twice"].dtype == types_pb2.DT_INT64
    assert list(ints.outputs["twice"].int64_val) == [2**41, -6]


# ----------------------------------------------------------------------------- Classify / Regress


def test_classify(server, predictions):
    """server test testClassify: one Classifications per example, labels and scores."""
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "tool"
    request.model_spec.signature_name = "classify"
    request.model_spec.version.value = 1
    examples_input(request.input, [[0.5, 0.5, -3.0], [1.0, 1.0, 1.0]])
    result = predictions.Classify(request, timeout=TIMEOUT)
    assert len(result.result.classifications) == 2
    first = result.result.classifications[0].classes
    assert [c.label for c in first] == ["neg", "pos"]
    positive = 1 / (1 + np.exp(2.0))
    assert first[1].score == pytest.approx(positive, rel=1e-5)
    assert first[0].score == pytest.approx(1 - positive, rel=1e-5)
    assert_spec(result.model_spec, "tool", 1, "classify")
    rest = requests.post(
        server.url + "/v1/models/tool/versions/1:classify",
        json={"signature_name": "classify", "examples": [{"x": [0.5, 0.5, -3.0]}]},
        timeout=TIMEOUT,
    ).json()
    assert rest["results"][0] == [
        ["neg", pytest.approx(first[0].score)],
        ["pos", pytest.approx(first[1].score)],
    ]


def test_regress_with_context(predictions):
    """server test testRegress; example_list_with_context merges the context into each
    example and the example wins on a shared feature."""
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = "tool"
    request.model_spec.signature_name = "regress"
    request.model_spec.version_label = "stable"
    examples_input(request.input, [[1.0, 2.0, 3.0], [0.0, 0.0, 1.0]])
    result = predictions.Regress(request, timeout=TIMEOUT)
    assert [r.value for r in result.result.regressions] == [6.0, 1.0]
    assert_spec(result.model_spec, "tool", 1, "regress")

    with_context = regression_pb2.RegressionRequest()
    with_context.model_spec.name = "tool"
    with_context.model_spec.signature_name = "regress"
    input_proto = with_context.input.example_list_with_context
    input_proto.context.features.feature["x"].float_list.value.extend([9.0, 9.0, 9.0])
    input_proto.examples.add()  # takes x from the context
    input_proto.examples.add().features.feature["x"].float_list.value.extend([1.0, 1.0, 1.0])
    result = predictions.Regress(with_context, timeout=TIMEOUT)
    assert [r.value for r in result.result.regressions] == [127.0, 103.0]  # version 2: +100


def test_multi_inference(predictions):
    """server test testMultiInference: regress and classify over one input, one result per
    task in task order, each echoing its model_spec."""
    request = inference_pb2.MultiInferenceRequest()
    for signature, method in (
        ("regress", "tensorflow/serving/regress"),
        ("classify", "tensorflow/serving/classify"),
    ):
        task = request.tasks.add()
        task.model_spec.name = "tool"
        task.model_spec.signature_name = signature
        task.model_spec.version.value = 1
        task.method_name = method
    examples_input(request.input, [[1.0, 1.0, 1.0]])
    result = predictions.MultiInference(request, timeout=TIMEOUT)
    assert len(result.results) == 2
    assert result.results[0].regression_result.regressions[0].value == 3.0
    classes = result.results[1].classification_result.classifications[0].classes
    assert classes[1].score == pytest.approx(1 / (1 + np.exp(-3.0)), rel=1e-5)
    assert_spec(result.results[0].model_spec, "tool", 1, "regress")
    assert_spec(result.results[1].model_spec, "tool", 1, "classify")

    request.tasks[1].model_spec.signature_name = "regress"
    error = rpc_error(predictions.MultiInference, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "Duplicate evaluation of signature: regress"


# ----------------------------------------------------------------------------- metadata and status


def test_get_model_metadata(server, predictions):
    """shared doc: metadata_field "signature_def" answers a packed SignatureDefMap with every
    signature, and model_spec carries the name and the served version."""
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "tool"
    request.model_spec.version_label = "stable"
    request.metadata_field.append("signature_def")
    result = predictions.GetModelMetadata(request, timeout=TIMEOUT)
    assert_spec(result.model_spec, "tool", 1)
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    assert result.metadata["signature_def"].Unpack(signature_map)
    signatures = signature_map.signature_def
    rest = requests.get(server.url + "/v1/models/tool/versions/1/metadata", timeout=TIMEOUT)
    rest_signatures = rest.json()["metadata"]["signature_def"]["signature_def"]
    assert sorted(signatures) == sorted(rest_signatures)
    assert signatures["classify"].method_name == "tensorflow/serving/classify"
    assert signatures["serving_default"].inputs["x"].dtype == types_pb2.DT_FLOAT

    request.ClearField("metadata_field")
    error = rpc_error(predictions.GetModelMetadata, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "at least one metadata_field" in error.details()


def test_get_model_status(models):
    """server test testGetModelStatus + get_model_status.proto: every tracked version, states
    as ModelVersionStatus.State numbers (AVAILABLE=30, END=50), StatusProto error codes."""
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "tool"
    result = models.GetModelStatus(request, timeout=TIMEOUT)
    by_version = {s.version: s for s in result.model_version_status}
    assert sorted(by_version) == [1, 2, 3]
    assert by_version[1].state == get_model_status_pb2.ModelVersionStatus.AVAILABLE == 30
    assert by_version[1].status.error_code == 0
    assert by_version[3].state == get_model_status_pb2.ModelVersionStatus.END == 50
    assert by_version[3].status.error_code != 0
    assert "saved_model.pb" in by_version[3].status.error_message

    request.model_spec.version_label = "canary"
    labelled = models.GetModelStatus(request, timeout=TIMEOUT)
    assert [s.version for s in labelled.model_version_status] == [2]


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("request_args", "code", "details"),
    [
        ({"name": "nope"}, "NOT_FOUND", "Servable not found for request: Latest(nope)"),
        ({"version": 9}, "NOT_FOUND", "Servable not found for request: Specific(tool, 9)"),
        ({"label": "beta"}, "INVALID_ARGUMENT", "Unrecognized servable version label: beta"),
        ({"version": 3}, "FAILED_PRECONDITION", "version 3 failed to load"),
        ({"signature": "nope"}, "FAILED_PRECONDITION", 'Serving signature key "nope" not found.'),
        (
            {"inputs": {"y": X}},
            "INVALID_ARGUMENT",
            "input tensor alias not found in signature: y. Inputs expected to be in the set {x}.",
        ),
        (
            {"inputs": {"x": X, "y": X}},
            "INVALID_ARGUMENT",
            "input size does not match signature: 2!=1 len({x,y}) != len({x}). "
            "Sent extra: {y}. Missing but required: {}.",
        ),
        ({"inputs": {"x": np.array([b"a", b"b"])}}, "INVALID_ARGUMENT", ""),
        # The graph, not the server, decides shapes (TF Serving feeds by tensor name): a
        # rank-1 x breaks reduce_sum over axis 1, so TensorFlow itself refuses it.
        ({"inputs": {"x": np.ones(5, np.float32)}}, "INVALID_ARGUMENT", "reduction dim"),
    ],
)
def test_predict_errors_carry_tf_serving_codes(predictions, request_args, code, details):
    """shared doc Errors + predict_util: NOT_FOUND unknown model/version, INVALID_ARGUMENT bad
    request, FAILED_PRECONDITION a version that failed to load or a missing signature."""
    error = rpc_error(predictions.Predict, predict_request(**request_args))
    assert error.code() == grpc.StatusCode[code], error.details()
    assert details in error.details()


def test_missing_model_spec_and_unknown_status(predictions, models):
    error = rpc_error(predictions.Predict, predict_pb2.PredictRequest())
    assert (error.code(), error.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "Missing ModelSpec",
    )
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "nope"
    error = rpc_error(models.GetModelStatus, request)
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert error.details() == "Could not find any versions of model nope"


def test_grpc_errors_never_harm_rest_or_the_server(server, predictions):
    """issue 11: a gRPC error never kills the server or a REST request in flight."""
    bad_requests = [
        predict_request("nope"),
        predict_request(inputs={"x": np.array([b"x"])}),
        predict_request(version=3),
        predict_pb2.PredictRequest(),
    ]
    stop = threading.Event()
    failures: list[str] = []

    def hammer() -> None:
        with grpc.insecure_channel(server.grpc_address) as chan:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(chan)
            while not stop.is_set():
                for request in bad_requests:
                    try:
                        stub.Predict(request, timeout=TIMEOUT)
                        failures.append("a bad request succeeded")
                    except grpc.RpcError as exc:
                        if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL):
                            failures.append(f"{exc.code()}: {exc.details()}")

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(20):
            response = requests.post(
                server.url + "/v1/models/dense:predict",
                json={"instances": [[1.0, 2.0, 3.0, 4.0]]},
                timeout=TIMEOUT,
            )
            assert response.status_code == 200, response.text
            np.testing.assert_allclose(
                response.json()["predictions"],
                dense_reference(np.array([[1.0, 2.0, 3.0, 4.0]])),
                rtol=1e-5,
            )
    finally:
        stop.set()
        for thread in threads:
            thread.join(TIMEOUT)
    assert failures == []
    assert server.alive()
    good = predictions.Predict(predict_request(version=1), timeout=TIMEOUT)
    assert list(good.outputs["score"].float_val) == [6.0, 15.0]


# ----------------------------------------------------------------------------- model slots


def _metric(server, series: str) -> float:
    text = requests.get(server.url + "/monitoring/prometheus/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _wait_until(check, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def one_slot(tmp_path_factory):
    """`spin` (the request sets its cost) with one call slot, REST and gRPC on free ports."""
    root = tmp_path_factory.mktemp("grpc_slots")
    write_spin_savedmodel(root / "models" / "spin" / "1")
    write_models_config(root / "models" / "models.config", {"spin": ""})
    grpc_port = free_port()
    process = start_graph_service(
        root / "models" / "models.config",
        root / "logs",
        extra_args=[f"--port={grpc_port}", "--model_max_inflight=1"],
    )
    process.grpc_address = f"127.0.0.1:{grpc_port}"
    try:
        with grpc.insecure_channel(process.grpc_address) as chan:
            process.stub = prediction_service_pb2_grpc.PredictionServiceStub(chan)
            process.stub.Predict(_spin_request(1), timeout=TIMEOUT)  # warm the graph
            yield process
    finally:
        process.stop()


def _spin_request(iterations: int) -> predict_pb2.PredictRequest:
    return predict_request("spin", {"iterations": np.array([iterations], np.int32)})


def _rest_spin(server, iterations: int) -> requests.Response:
    return requests.post(
        server.url + "/v1/models/spin:predict", json={"instances": [iterations]}, timeout=120
    )


def test_grpc_call_on_a_full_model_is_resource_exhausted(one_slot):
    """REST and gRPC share a model's slots: while a REST call holds spin's only slot, a gRPC
    call is refused RESOURCE_EXHAUSTED (REST's 429) with the limit named, and is counted."""
    refused_series = (
        ':tensorflow:serving:request_count{model_name="spin",status="RESOURCE_EXHAUSTED"}'
    )
    before = _metric(one_slot, refused_series)
    with ThreadPoolExecutor(1) as pool:
        long_call = pool.submit(_rest_spin, one_slot, 6000)
        _wait_until(lambda: _metric(one_slot, 'graph_model_inflight_calls{model_name="spin"}') == 1)
        error = rpc_error(one_slot.stub.Predict, _spin_request(1))
        assert not long_call.done(), "the REST call ended before the gRPC call was refused"
        assert long_call.result().status_code == 200
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error.details()
    assert "limit (--model_max_inflight=1)" in error.details()
    assert _metric(one_slot, refused_series) == before + 1
    answer = one_slot.stub.Predict(_spin_request(1), timeout=TIMEOUT)  # the slot came back
    assert list(answer.outputs["iterations_run"].int_val) == [1]


def test_rest_call_on_a_model_full_of_grpc_calls_is_429(one_slot):
    """The other way round: a gRPC call in the slot makes REST answer 429."""
    with ThreadPoolExecutor(1) as pool:
        long_call = pool.submit(one_slot.stub.Predict, _spin_request(6000), timeout=120)
        _wait_until(lambda: _metric(one_slot, 'graph_model_inflight_calls{model_name="spin"}') == 1)
        refused = _rest_spin(one_slot, 1)
        assert not long_call.done(), "the gRPC call ended before the REST call was refused"
        assert list(long_call.result().outputs["iterations_run"].int_val) == [6000]
    assert refused.status_code == 429, refused.text
    assert "limit (--model_max_inflight=1)" in refused.json()["error"]


def test_a_grpc_deadline_cancels_the_model_run_and_frees_its_slot(one_slot):
    """TF Serving runs a gRPC call under the caller's deadline (RunOptions.timeout_in_ms):
    past it the runtime cancels the loop, so the model's only slot is free again at once, and
    the call is counted DEADLINE_EXCEEDED. (Before, the loop ran on for seconds after the
    caller had given up, holding the slot.)"""
    inflight = 'graph_model_inflight_calls{model_name="spin"}'
    expired = ':tensorflow:serving:request_count{model_name="spin",status="DEADLINE_EXCEEDED"}'
    before = _metric(one_slot, expired)
    with pytest.raises(grpc.RpcError) as caught:
        # About 0.4 ms per iteration on a 2-core box: ~12 s of work if nobody stops it.
        one_slot.stub.Predict(_spin_request(30_000), timeout=0.5)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    _wait_until(lambda: _metric(one_slot, inflight) == 0, timeout=3.0)
    _wait_until(lambda: _metric(one_slot, expired) == before + 1, timeout=3.0)
    answer = one_slot.stub.Predict(_spin_request(1), timeout=TIMEOUT)
    assert list(answer.outputs["iterations_run"].int_val) == [1]


# ----------------------------------------------------------------------------- reload


def reload_request(
    models_dir: Path, names: dict[str, str]
) -> model_management_pb2.ReloadConfigRequest:
    request = model_management_pb2.ReloadConfigRequest()
    for name, policy in names.items():
        config = request.config.model_config_list.config.add()
        config.name = name
        config.base_path = str(models_dir / name)
        config.model_platform = "tensorflow"
        if policy == "all":
            config.model_version_policy.all.SetInParent()
            config.version_labels["stable"] = 1
            config.version_labels["canary"] = 2
        elif policy == "stable":
            config.version_labels["stable"] = 1
    return request


def test_handle_reload_config_request(server, predictions, models):
    """model_service.proto HandleReloadConfigRequest: the new ModelServerConfig is served
    once the call returns; a model that cannot load answers UNKNOWN ("did not become
    available", as ServerCore does) and requests to it then answer FAILED_PRECONDITION."""
    keep = {"tool": "all", "dense": "", "credit": "stable"}
    try:
        answer = models.HandleReloadConfigRequest(
            reload_request(server.models, {**keep, "spare": ""}), timeout=120
        )
        assert answer.status.error_code == 0
        spare = predictions.Predict(
            predict_request("spare", {"x": np.array([[1.0, 2.0, 3.0, 4.0]], np.float32)}),
            timeout=TIMEOUT,
        )
        np.testing.assert_allclose(
            tf.make_ndarray(spare.outputs["score"]),
            dense_reference(np.array([[1.0, 2.0, 3.0, 4.0]]), seed=7),
            rtol=1e-5,
        )
        rest = requests.get(server.url + "/v1/models/spare", timeout=TIMEOUT)
        assert rest.json()["model_version_status"][0]["state"] == "AVAILABLE"

        error = rpc_error(
            models.HandleReloadConfigRequest, reload_request(server.models, {**keep, "bad": ""})
        )
        assert error.code() == grpc.StatusCode.UNKNOWN
        assert "1 model(s) did not become available: {{bad: version 1:" in error.details()
        error = rpc_error(predictions.Predict, predict_request("bad"))
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        # "spare" left the config: no longer served; the others still are.
        error = rpc_error(predictions.Predict, predict_request("spare"))
        assert error.code() == grpc.StatusCode.NOT_FOUND
        assert predictions.Predict(predict_request(), timeout=TIMEOUT).outputs["score"].float_val

        custom = model_management_pb2.ReloadConfigRequest()
        custom.config.custom_model_config.Pack(model_server_config_pb2.ModelConfig())
        error = rpc_error(models.HandleReloadConfigRequest, custom)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "Only ModelConfigList is currently supported" in error.details()
    finally:
        models.HandleReloadConfigRequest(reload_request(server.models, keep), timeout=120)


# ----------------------------------------------------------------------------- process


def test_docs_client_example_runs(server):
    """docs/graph-service.md's gRPC client, run as written (only the port changed) in its own
    process."""
    page = (Path(__file__).parents[3] / "docs" / "graph-service.md").read_text(encoding="utf-8")
    snippet = page.split("\n## gRPC\n", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    port = server.grpc_address.rsplit(":", 1)[1]
    result = subprocess.run(
        [sys.executable, "-c", snippet.replace("localhost:8500", f"localhost:{port}")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    expected = dense_reference(np.array([[0.1, 0.2, 0.3]]))[0, 0]
    version, printed = result.stdout.split(" ", 1)
    assert version == "1"  # the label "stable" resolved to version 1
    match = re.fullmatch(r"\{'score': array\(\[\[([0-9.e+-]+)\]\], dtype=float32\)\}\n", printed)
    assert match, result.stdout
    assert float(match.group(1)) == pytest.approx(expected, rel=1e-5)


def test_port_in_use_stops_startup_with_exit_4(server, tmp_path):
    """A gRPC port another server holds is a startup failure naming the port and the fix,
    never a second server silently sharing it (grpc's SO_REUSEPORT is turned off)."""
    port = server.grpc_address.rsplit(":", 1)[1]
    result = subprocess.run(
        [
            script("graph-service"),
            "--model_name=dense",
            f"--model_base_path={server.models / 'dense'}",
            f"--rest_api_port={free_port()}",
            f"--port={port}",
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 4, result.stderr
    assert f"cannot open the gRPC port 0.0.0.0:{port}" in result.stderr
    assert "--port=0" in result.stderr


def wait_for_refusal(address: str, call, timeout: float = 3.0) -> grpc.StatusCode | None:
    """Call on fresh channels until the server refuses (the signal takes a moment to land)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with grpc.insecure_channel(address) as chan:
            try:
                call(prediction_service_pb2_grpc.PredictionServiceStub(chan))
            except grpc.RpcError as exc:
                return exc.code()
        time.sleep(0.05)
    return None


def test_sigterm_lets_a_call_in_flight_finish_then_frees_the_port(tmp_path):
    """SIGTERM: new gRPC calls are refused at once, a call already running gets the grace
    period and its answer, the process exits 0 and the port is free again. The "spin" model
    lets the request choose its cost, so "in flight" holds on any machine."""
    write_spin_savedmodel(tmp_path / "models" / "spin" / "1")
    write_models_config(tmp_path / "models" / "models.config", {"spin": ""})
    grpc_port = free_port()
    process = start_graph_service(
        tmp_path / "models" / "models.config", tmp_path / "logs", extra_args=[f"--port={grpc_port}"]
    )
    address = f"127.0.0.1:{grpc_port}"

    def spin(stub, iterations: int):
        request = predict_request("spin", {"iterations": np.array([iterations], np.int32)})
        return stub.Predict(request, timeout=60)

    try:
        with grpc.insecure_channel(address) as chan:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(chan)
            spin(stub, 1)  # warm up: the first call pays a one-time graph optimisation
            started = time.monotonic()
            spin(stub, 200)
            per_iteration = (time.monotonic() - started) / 200
            # About 2 s of work: well inside the 5 s grace, well past the SIGTERM below.
            iterations = int(min(max(2.0 / per_iteration, 200), 50_000))
            with ThreadPoolExecutor(1) as pool:
                in_flight = pool.submit(spin, stub, iterations)
                time.sleep(0.5)
                assert not in_flight.done()
                process.process.send_signal(signal.SIGTERM)
                refused = wait_for_refusal(address, lambda stub: spin(stub, 1))
                # UNAVAILABLE once the port is closed; a call that reached the server in the
                # instant it began stopping, before a handler took it, is CANCELLED by gRPC.
                assert refused in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
                assert not in_flight.done()  # refused while the earlier call still runs
                answer = in_flight.result(timeout=60)
        assert list(answer.outputs["iterations_run"].int_val) == [iterations]
    finally:
        code = process.stop()
    assert code == 0, process.log()
    assert "gRPC server stopping" in process.log()
    with socket.socket() as sock:
        # Nobody listens any more (SO_REUSEADDR only tolerates the closed connections'
        # TIME_WAIT, as a restarted server would): raises OSError if still held.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("0.0.0.0", grpc_port))
        sock.listen()


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (["--port=70000"], "--port 70000: use a port between 1 and 65535, or 0 for no gRPC"),
        (["--port=8501", "--rest_api_port=8501"], "give gRPC its own port"),
        (["--grpc_max_threads=0"], "--grpc_max_threads must be at least 1"),
    ],
)
def test_bad_port_flags_exit_2_with_one_line(tmp_path, capsys, flags, fragment):
    (tmp_path / "models.config").write_text(
        'model_config_list { config { name: "m" base_path: "/models/m" } }'
    )
    assert main([f"--model_config_file={tmp_path / 'models.config'}", *flags]) == 2
    assert fragment in capsys.readouterr().err


def test_port_defaults_to_8500_and_zero_turns_grpc_off(tmp_path):
    """tensorflow_model_server's --port (8500 by convention); --port=0 is our REST-only switch."""
    write_dense_savedmodel(tmp_path / "m" / "1", 2)
    parser = build_parser()
    single = ["--model_name=m", f"--model_base_path={tmp_path / 'm'}"]
    assert settings_from_args(parser.parse_args(single)).grpc_port == 8500
    off = settings_from_args(parser.parse_args([*single, "--port=0"]))
    assert off.grpc_port == 0
    service = build_service(replace(off, file_system_poll_wait_seconds=0))
    try:
        assert service.grpc is None
    finally:
        service.close()
    assert "--port" in parser.format_help()

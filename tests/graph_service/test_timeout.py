"""--rest_api_timeout_in_ms on the real server: a request past its deadline gets 504, not a hang.

TF Serving answers a call that outlives the deadline with DEADLINE_EXCEEDED, which its HTTP
server maps to 504 (`ToHTTPStatusCode` in tensorflow_serving/model_servers/http_server.cc;
shared doc tf-serving-rest.md, "Status codes"), body `{"error": "<message>"}`. The model is the
"spin" SavedModel whose cost the request chooses (a tf.while_loop of 256x256 matmuls), so the
cheap and the expensive case are far apart on any machine, however loaded.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import numpy as np
import pytest
import requests
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from devtools.savedmodels import (
    start_graph_service,
    write_models_config,
    write_spin_savedmodel,
)
from devtools.servers import ServerProcess

DEADLINE_MS = 200
CHEAP = 1
# About 0.4 ms per iteration on a 2-core dev box: ~4 s here, still far past 200 ms on a machine
# ten times faster; small enough that the abandoned loop ends soon after the test.
EXPENSIVE = 10_000
# Far past the 200 ms REST deadline here (~1 s), short enough to run to its end in a test.
LONGER_THAN_REST = 2_500


@pytest.fixture(scope="module")
def spin_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """graph-service serving `spin` with a 200 ms deadline, warmed up."""
    models = tmp_path_factory.mktemp("spin_models")
    write_spin_savedmodel(models / "spin" / "1")
    write_models_config(models / "models.config", {"spin": ""})
    server = start_graph_service(
        models / "models.config",
        models,
        extra_args=[f"--rest_api_timeout_in_ms={DEADLINE_MS}"],
    )
    try:
        # The first call of a loaded signature pays a one-time graph optimisation (TF Serving
        # has warmup files for this); on a busy machine that alone can outlast 200 ms.
        for _ in range(10):
            if _predict(server, [CHEAP]).status_code == 200:
                break
        yield server
    finally:
        server.stop()


def _predict(server: ServerProcess, iterations: list[int]) -> requests.Response:
    return requests.post(
        server.url + "/v1/models/spin:predict",
        json={"signature_name": "serving_default", "instances": iterations},
        timeout=60,
    )


def test_cheap_request_answers_200_within_the_deadline(spin_server):
    response = _predict(spin_server, [CHEAP, CHEAP])
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert [row["iterations_run"] for row in predictions] == [CHEAP, CHEAP]


def test_request_past_the_deadline_gets_504_and_the_server_keeps_serving(spin_server):
    response = _predict(spin_server, [EXPENSIVE])
    assert response.status_code == 504, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert "deadline" in error.lower()

    # TensorFlow cancelled the loop at the deadline (RunOptions.timeout_in_ms); the next call runs.
    after = _predict(spin_server, [CHEAP])
    assert after.status_code == 200, after.text
    assert after.json()["predictions"][0]["iterations_run"] == CHEAP

    status = requests.get(spin_server.url + "/v1/models/spin", timeout=10)
    assert status.status_code == 200
    assert status.json()["model_version_status"][0]["state"] == "AVAILABLE"
    assert spin_server.alive()


def test_the_rest_deadline_is_rest_s_alone_grpc_runs_under_the_caller_s(spin_server):
    """--rest_api_timeout_in_ms bounds REST calls only: over gRPC TF Serving runs a call under
    the caller's own deadline, and without one the run has no limit. The call REST answers
    504 is answered over gRPC, with no deadline and with a generous one."""
    assert _predict(spin_server, [LONGER_THAN_REST]).status_code == 504
    (port,) = [arg.split("=", 1)[1] for arg in spin_server.argv if arg.startswith("--port=")]
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "spin"
    request.inputs["iterations"].CopyFrom(
        tf.make_tensor_proto(np.array([LONGER_THAN_REST], np.int32))
    )
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        for deadline in (None, 120):
            answer = stub.Predict(request, timeout=deadline)
            assert list(answer.outputs["iterations_run"].int_val) == [LONGER_THAN_REST]

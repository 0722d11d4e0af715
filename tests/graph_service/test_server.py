"""The server process: single-model form, startup failure, graceful stop (real processes)."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
import requests

from devtools.savedmodels import dense_reference, write_dense_savedmodel
from devtools.servers import free_port, script, start_server


def test_single_model_form_serves_and_stops_cleanly(tmp_path):
    """shared doc: --model_name NAME --model_base_path PATH serves one model; SIGTERM exits 0."""
    write_dense_savedmodel(tmp_path / "solo" / "3", 2, seed=3)
    port, grpc_port = free_port(), free_port()
    server = start_server(
        [
            script("graph-service"),
            "--model_name",
            "solo",
            "--model_base_path",
            str(tmp_path / "solo"),
            "--rest_api_port",
            str(port),
            "--port",
            str(grpc_port),
        ],
        port,
        tmp_path / "solo.log",
        ready_path="/v1/models/solo",
        ready_status=(200,),
    )
    try:
        response = requests.post(
            server.url + "/v1/models/solo:predict", json={"instances": [[1.0, 2.0]]}, timeout=30
        )
        expected = dense_reference(np.array([[1.0, 2.0]], np.float32), seed=3)
        np.testing.assert_allclose(response.json()["predictions"], expected, rtol=1e-5)
        status = requests.get(server.url + "/v1/models/solo", timeout=10).json()
        assert status["model_version_status"][0]["version"] == "3"
        assert f"gRPC API (PredictionService, ModelService) on 0.0.0.0:{grpc_port}" in server.log()
    finally:
        code = server.stop()
    assert code == 0


@pytest.mark.parametrize(
    ("layout", "reason"), [(["1"], "no saved_model.pb"), ([], "no version folders")]
)
def test_no_loadable_version_exits_4_with_the_reason(tmp_path, layout, reason):
    """Like TF Serving, the service does not start without a loadable version; it says why."""
    (tmp_path / "models" / "broken").mkdir(parents=True)
    for name in layout:
        (tmp_path / "models" / "broken" / name).mkdir()
    config = tmp_path / "models" / "models.config"
    config.write_text('model_config_list { config { name: "broken" base_path: "/models/broken" } }')
    result = subprocess.run(
        [
            script("graph-service"),
            f"--model_config_file={config}",
            f"--rest_api_port={free_port()}",
            f"--port={free_port()}",
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 4
    assert "no loadable version for model(s) broken" in result.stderr
    assert reason in result.stderr

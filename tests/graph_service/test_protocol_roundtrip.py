"""The logic tier's client codec against the real graph-service: both sides use tfs_protocol.

Issue 11 done-when: string, bytes, unsigned integer and float tensors go from the logic
tier's encoder (logic_service.graph.codecs.encode_predict_request) through graph-service and come
back through its decoder, including NaN and infinities written as TF Serving's bare literals
(shared doc tf-serving-rest.md, "Predict": `{"b64": ...}`, `*_bytes` outputs, NaN/Infinity).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests

from devtools.savedmodels import (
    start_graph_service,
    write_models_config,
    write_protocol_savedmodel,
)
from devtools.servers import ServerProcess
from logic_service.graph.codecs import decode_predict_response, encode_predict_request


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    models = tmp_path_factory.mktemp("protocol_models")
    write_protocol_savedmodel(models / "proto" / "1")
    write_models_config(models / "models.config", {"proto": ""})
    process = start_graph_service(models / "models.config", models / "logs")
    try:
        yield process
    finally:
        process.stop()


def _call(server: ServerProcess, signature: str, inputs: dict[str, np.ndarray]) -> dict:
    body = encode_predict_request(signature, inputs)
    response = requests.post(
        f"{server.url}/v1/models/proto:predict",
        data=body,
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return decode_predict_response(response.content, None)


def test_unsigned_integers_round_trip_at_their_extremes(server: ServerProcess) -> None:
    u32 = np.array([0, 2**32 - 1], dtype=np.uint32)
    u64 = np.array([1, 2**64 - 1], dtype=np.uint64)
    out = _call(server, "unsigned", {"u32": u32, "u64": u64})
    assert [int(v) for v in out["u32_out"]] == [0, 2**32 - 1]
    assert [int(v) for v in out["u64_out"]] == [1, 2**64 - 1]


def test_strings_and_bytes_round_trip(server: ServerProcess) -> None:
    text = np.array(["straße", "abc"], dtype=object)
    raw = np.array([b"\x00\xff\x10", b"plain"], dtype=object)
    out = _call(server, "text", {"text": text, "raw_bytes": raw})
    # tf.strings.upper maps ASCII only: the UTF-8 "ß" must come back byte for byte.
    assert out["upper"].tolist() == ["STRAßE".encode(), b"ABC"]
    assert out["length"].tolist() == [6, 3]
    assert out["echo_bytes"].tolist() == [b"\x00\xff\x10", b"plain"]


def test_nan_and_infinities_come_back_as_floats(server: ServerProcess) -> None:
    x = np.array([1.0, 0.0, -1.0], dtype=np.float32)
    body = encode_predict_request("floats", {"x": x})
    raw = requests.post(f"{server.url}/v1/models/proto:predict", data=body, timeout=30)
    assert raw.status_code == 200, raw.text
    assert b"-Infinity" in raw.content and b"NaN" in raw.content
    out = decode_predict_response(raw.content, None)
    assert out["log"][0] == 0.0 and out["log"][1] == -np.inf and np.isnan(out["log"][2])
    assert out["inverse"].tolist() == [1.0, np.inf, -1.0]


def test_a_string_where_the_graph_wants_uint32_is_a_400(server: ServerProcess) -> None:
    body = b'{"signature_name": "unsigned", "inputs": {"u32": ["x"], "u64": [1]}}'
    response = requests.post(f"{server.url}/v1/models/proto:predict", data=body, timeout=30)
    assert response.status_code == 400
    assert "is not of expected type: uint32" in response.json()["error"]


def test_protocol_model_exists(tmp_path: Path) -> None:
    """The fixture writes a loadable SavedModel with the three signatures."""
    from graph_service.models.servable import load_servable

    write_protocol_savedmodel(tmp_path / "1")
    servable = load_servable("proto", 1, tmp_path / "1")
    assert servable.input_dtypes("unsigned") == {"u32": "DT_UINT32", "u64": "DT_UINT64"}

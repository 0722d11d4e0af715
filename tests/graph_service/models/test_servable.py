"""A version folder written by `convert-h5` loads and answers like the Keras model it came from."""

from __future__ import annotations

import numpy as np
import pytest

from converters.cli.convert_h5 import main as convert_h5
from converters.models_config import ModelsConfig, resolve_base_path
from graph_service.errors import ServingError
from graph_service.models.metadata import model_metadata
from graph_service.models.servable import LoadError, deadline_bucket, load_servable


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """A two-layer Keras model saved as .h5 and converted into models/credit/1."""
    import keras

    root = tmp_path_factory.mktemp("converted")
    keras.utils.set_random_seed(0)
    inputs = keras.Input((5,), name="features")
    hidden = keras.layers.Dense(8, activation="relu")(inputs)
    outputs = keras.layers.Dense(1, activation="sigmoid", name="prediction")(hidden)
    model = keras.Model(inputs, outputs)
    model.save(root / "credit.h5")
    models = root / "models"
    assert (
        convert_h5([str(root / "credit.h5"), "--name", "credit", "--models-dir", str(models)]) == 0
    )
    return model, models


def test_converted_model_serves_its_keras_predictions(converted):
    """Issue 3 done-when: graph-service serves models produced by the converters."""
    model, models = converted
    config = ModelsConfig.load(models / "models.config")
    (entry,) = config.entries
    base = resolve_base_path(entry.base_path, models)
    servable = load_servable("credit", 1, base / "1")
    dtypes = servable.input_dtypes("serving_default")
    (key,) = dtypes
    x = np.random.default_rng(1).normal(size=(3, 5)).astype(np.float32)
    (out,) = servable.run("serving_default", {key: x}).values()
    np.testing.assert_allclose(out, model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    meta = model_metadata(servable)["metadata"]["signature_def"]["signature_def"]
    assert meta["serving_default"]["inputs"][key]["tensor_shape"]["dim"][0]["size"] == "-1"


def test_shape_the_graph_refuses_is_the_runtimes_invalid_argument(converted):
    """Issue 11.3: no shape check of our own; the graph decides, and its message is kept."""
    _, models = converted
    servable = load_servable("credit", 1, models / "credit" / "1")
    (key,) = servable.input_dtypes("serving_default")
    with pytest.raises(ServingError, match=r"Matrix size-incompatible: In\[0\]: \[2,4\]") as info:
        servable.run("serving_default", {key: np.zeros((2, 4), np.float32)})
    assert info.value.code == "INVALID_ARGUMENT" and info.value.http_status == 400


def test_garbage_saved_model_is_a_load_error(tmp_path):
    (tmp_path / "saved_model.pb").write_bytes(b"\x0a\xff not a proto")
    with pytest.raises(LoadError) as info:
        load_servable("m", 1, tmp_path)
    assert info.value.code in {"DATA_LOSS", "NOT_FOUND"}
    assert str(tmp_path) in str(info.value)


def test_a_grpc_deadline_is_rounded_up_to_a_power_of_two_milliseconds() -> None:
    """One callable per bucket: never cancelled before the caller's deadline, at most 2x after."""
    assert [deadline_bucket(ms) for ms in (0, 1, 2, 3, 499, 512, 513)] == [
        0,
        1,
        2,
        4,
        512,
        512,
        1024,
    ]

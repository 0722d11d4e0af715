"""keras_source: what a file says about itself, read before any loader runs its config."""

from __future__ import annotations

import pytest

from converters.errors import ConversionError, UsageError
from converters.keras.source import code_layers, read_source


def test_kinds_are_told_apart_by_content(keras3_files, tf_keras_files):
    assert read_source(keras3_files["no_suffix"]).kind == "h5"
    assert read_source(keras3_files["multi_keras"]).kind == "keras"
    legacy = read_source(tf_keras_files["weights"], tf_keras_files["architecture"])
    assert legacy.kind == "json+weights"
    modern = read_source(keras3_files["weights"], keras3_files["architecture"])
    assert modern.kind == "keras3-weights"


def test_old_byte_string_attributes_are_read(tf_keras_files):
    source = read_source(tf_keras_files["old_224_h5"])
    assert source.keras_version == "2.2.4"
    assert source.backend == "tensorflow"
    assert source.model_config["class_name"] == "Model"
    assert source.has_training_config
    assert "written by Keras 2.2.4, backend tensorflow" in source.describe()


def test_code_layers_found_in_both_keras_dialects(keras3_files, tf_keras_files):
    assert code_layers(read_source(keras3_files["lambda_h5"]).model_config) == ["double (Lambda)"]
    assert code_layers(read_source(tf_keras_files["lambda_h5"]).model_config) == ["shift (Lambda)"]
    assert code_layers(read_source(keras3_files["multi_h5"]).model_config) == []


def test_code_in_a_custom_layer_field_and_nested_model_is_found():
    activation = {"function_type": "lambda", "items": ["x"]}
    marshalled = {"class_name": "Dense", "config": {"name": "d", "activation": activation}}
    inner = {"class_name": "Sequential", "config": {"name": "inner", "layers": [marshalled]}}
    nested = {"class_name": "Functional", "config": {"layers": [inner]}}
    assert code_layers(nested) == ["d (Dense)"]


@pytest.mark.parametrize(
    ("name", "error", "words"),
    [
        ("multi.json", UsageError, "--architecture"),
        ("multi.weights.h5", UsageError, "--architecture"),
        ("custom_pkg", UsageError, "is a folder"),
    ],
)
def test_wrong_file_errors_say_what_to_pass(keras3_files, name, error, words):
    with pytest.raises(error, match=words.replace("-", r"\-")):
        read_source(keras3_files.root / name)


def test_truncated_h5_is_a_conversion_error(keras3_files, tmp_path):
    data = keras3_files["multi_h5"].read_bytes()
    (tmp_path / "cut.h5").write_bytes(data[:2000])
    with pytest.raises(ConversionError, match="truncated or corrupt"):
        read_source(tmp_path / "cut.h5")

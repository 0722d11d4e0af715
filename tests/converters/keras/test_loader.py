"""keras_loader: Keras 3 first, tf-keras on its own when Keras 3 cannot, code never run unasked."""

from __future__ import annotations

import pytest

from converters.errors import ConversionError
from converters.keras.loader import KERAS3, TF_KERAS, load_model
from converters.keras.source import read_source


def test_keras3_reads_its_own_files(keras3_files):
    loaded = load_model(read_source(keras3_files["multi_keras"]))
    assert loaded.loader == KERAS3
    assert loaded.fallback_reason is None
    assert "not compiled" in loaded.describe()


def test_fallback_to_tf_keras_records_why(tf_keras_files):
    loaded = load_model(read_source(tf_keras_files["old_224_h5"]))
    assert loaded.loader == TF_KERAS
    assert "groups" in loaded.fallback_reason
    assert type(loaded.model).__module__.startswith("tf_keras")


def test_code_refused_before_any_loader_runs(tf_keras_files):
    marker = tf_keras_files.extra["lambda_marker"]
    marker.unlink(missing_ok=True)
    with pytest.raises(ConversionError, match=r"shift \(Lambda\).*--unsafe"):
        load_model(read_source(tf_keras_files["lambda_h5"]))
    assert not marker.exists()


def test_missing_custom_class_named_once(keras3_files):
    with pytest.raises(ConversionError) as info:
        load_model(read_source(keras3_files["custom_h5"]))
    message = str(info.value)
    assert "ScaledDense" in message and "--custom-objects" in message
    assert "Functional" not in message

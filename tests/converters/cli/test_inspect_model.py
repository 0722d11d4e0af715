"""inspect-model prints signatures the way saved_model_cli does, compactly."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import tensorflow as tf

from converters.cli.inspect_model import main
from devtools.servers import script


def _save(path):
    class Two(tf.Module):
        @tf.function(
            input_signature=[
                tf.TensorSpec([None, 4], tf.float32, name="features"),
                tf.TensorSpec([None], tf.string, name="region"),
            ]
        )
        def serve(self, features, region):
            return {
                "score": tf.reduce_sum(features, axis=1),
                "region_len": tf.strings.length(region),
            }

    module = Two()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})


def test_text_and_json(tmp_path, capsys):
    _save(tmp_path / "credit" / "3")
    assert main([str(tmp_path / "credit")]) == 0
    text = capsys.readouterr().out
    assert f"SavedModel {tmp_path / 'credit' / '3'}" in text
    assert "signature 'serving_default'  method tensorflow/serving/predict" in text
    rows = {line.split()[0]: line.split() for line in text.splitlines() if line.startswith("    ")}
    assert rows["features"][1:3] == ["DT_FLOAT", "[-1,4]"]
    assert rows["region"][1:3] == ["DT_STRING", "[-1]"]
    assert rows["region_len"][1] == "DT_INT32"

    assert main([str(tmp_path / "credit" / "3"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    (sig,) = data["signatures"]
    assert [i["key"] for i in sig["inputs"]] == ["features", "region"]
    assert sig["outputs"][1]["shape"] == [-1]
    assert np.array(sig["inputs"][0]["shape"]).tolist() == [-1, 4]


def test_not_a_savedmodel(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty")]) == 2
    assert "no saved_model.pb here" in capsys.readouterr().err
    assert main([str(tmp_path / "missing")]) == 2


def test_console_script_errors_are_one_line(tmp_path):
    """TensorFlow logs on import whatever TF_CPP_MIN_LOG_LEVEL says; the user sees our line only."""
    (tmp_path / "empty").mkdir()
    for target in (tmp_path / "empty", tmp_path / "missing"):
        result = subprocess.run(
            [script("inspect-model"), str(target)], capture_output=True, text=True
        )
        assert result.returncode == 2
        assert len(result.stderr.splitlines()) == 1, result.stderr
        assert result.stderr.startswith("inspect-model: error: ")

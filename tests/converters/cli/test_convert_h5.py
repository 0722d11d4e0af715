"""convert-h5 end to end: real Keras files in, TF Serving version folders and models.config out."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from converters.cli import convert_h5
from converters.models_config import ModelsConfig
from converters.signatures import read_signatures

CONVERT_H5 = Path(sys.executable).with_name("convert-h5")


def run(capsys, *argv) -> tuple[int, str, str]:
    code = convert_h5.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def predict(export_dir: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Call serving_default the way a client would: by signature keys."""
    import tensorflow as tf

    fn = tf.saved_model.load(str(export_dir)).signatures["serving_default"]
    return {k: v.numpy() for k, v in fn(**{k: tf.constant(v) for k, v in feeds.items()}).items()}


def signature(export_dir: Path) -> tuple[dict, dict]:
    _, sigs = read_signatures(export_dir)
    (sig,) = [s for s in sigs if s.key == "serving_default"]
    return {t.key: t.shape for t in sig.inputs}, {t.key: t.shape for t in sig.outputs}


def assert_close(actual: dict, expected: dict) -> None:
    assert set(actual) == set(expected)
    for key, value in expected.items():
        np.testing.assert_allclose(actual[key], value, atol=1e-5, err_msg=key)


def assert_nothing_written(models: Path, config_before: str | None) -> None:
    versions = [p for p in models.rglob("*") if p.is_dir() and p.name.isdigit()]
    assert versions == []
    assert not list(models.rglob(".staging-*"))
    config = models / "models.config"
    assert (config.read_text() if config.exists() else None) == config_before


@pytest.fixture(scope="module")
def multi_export(keras3_files, tmp_path_factory):
    """The Keras 3 multi-input/multi-output .h5 converted once, with the CLI's output."""
    models = tmp_path_factory.mktemp("multi_models")
    code = convert_h5.main(
        [str(keras3_files["multi_h5"]), "--name", "multi", "--models-dir", str(models)]
    )
    assert code == 0
    return models


# --- what users hand over -------------------------------------------------------------


def test_keras3_h5_multi_io_keys_are_input_names_and_output_layers(keras3_files, multi_export):
    inputs, outputs = signature(multi_export / "multi" / "1")
    assert inputs == {"age": [-1, 3], "income": [-1, 2]}
    assert outputs == {"score": [-1, 1], "probs": [-1, 3]}
    got = predict(multi_export / "multi" / "1", keras3_files.samples["multi"])
    assert_close(got, keras3_files.expected["multi"])
    entry = ModelsConfig.load(multi_export / "models.config").get("multi")
    assert entry is not None and entry.base_path == "/models/multi"


def test_keras_archive_converts_with_keras3_and_prints_summary(keras3_files, tmp_path, capsys):
    code, out, _ = run(capsys, keras3_files["multi_keras"], "--name", "m", "--models-dir", tmp_path)
    assert code == 0
    assert ".keras archive written by Keras 3." in out
    assert "loaded with keras 3" in out
    assert "parity at batch sizes 1, 3" in out
    assert "score" in out and "max |diff|" in out
    assert_close(
        predict(tmp_path / "m" / "1", keras3_files.samples["multi"]), keras3_files.expected["multi"]
    )


def test_file_without_suffix_is_recognised_by_content(keras3_files, tmp_path, capsys):
    code, out, _ = run(capsys, keras3_files["no_suffix"], "--name", "m", "--models-dir", tmp_path)
    assert code == 0, out
    assert "full-model HDF5" in out
    assert_close(
        predict(tmp_path / "m" / "1", keras3_files.samples["multi"]), keras3_files.expected["multi"]
    )


def test_tf_keras_h5_with_unnamed_inputs_renamed(tf_keras_files, tmp_path, capsys):
    code, out, _ = run(
        capsys, tf_keras_files["two_input_h5"], "--name", "m", "--models-dir", tmp_path,
        "--input-names", "a,b", "--output-name", "risk",
    )  # fmt: skip
    assert code == 0, out
    assert "written by Keras 2." in out
    inputs, outputs = signature(tmp_path / "m" / "1")
    assert inputs == {"a": [-1, 3], "b": [-1, 2]}
    assert outputs == {"risk": [-1, 1]}
    sample = dict(zip("ab", tf_keras_files.samples["two_input"].values(), strict=True))
    got = predict(tmp_path / "m" / "1", sample)
    np.testing.assert_allclose(
        got["risk"], tf_keras_files.expected["two_input"]["score"], atol=1e-5
    )


def test_tf_keras_default_keys_keep_keras2_names(tf_keras_files, tmp_path, capsys):
    code, out, _ = run(
        capsys, tf_keras_files["two_input_h5"], "--name", "m", "--models-dir", tmp_path
    )
    assert code == 0, out
    inputs, outputs = signature(tmp_path / "m" / "1")
    assert list(inputs) == sorted(tf_keras_files.extra["input_names"])
    assert list(outputs) == ["score"]


def test_architecture_json_plus_weights(tf_keras_files, tmp_path, capsys):
    code, out, _ = run(
        capsys, tf_keras_files["weights"], "--architecture", tf_keras_files["architecture"],
        "--name", "m", "--models-dir", tmp_path, "--input-names", "a,b",
    )  # fmt: skip
    assert code == 0, out
    assert "architecture JSON" in out
    sample = dict(zip("ab", tf_keras_files.samples["two_input"].values(), strict=True))
    got = predict(tmp_path / "m" / "1", sample)
    np.testing.assert_allclose(
        got["score"], tf_keras_files.expected["two_input"]["score"], atol=1e-5
    )


def test_keras3_architecture_json_plus_weights_h5(keras3_files, tmp_path, capsys):
    code, out, _ = run(
        capsys, keras3_files["weights"], "--architecture", keras3_files["architecture"],
        "--name", "m", "--models-dir", tmp_path,
    )  # fmt: skip
    assert code == 0, out
    assert "loaded with keras 3" in out
    assert signature(tmp_path / "m" / "1")[0] == {"age": [-1, 3], "income": [-1, 2]}
    assert_close(
        predict(tmp_path / "m" / "1", keras3_files.samples["multi"]), keras3_files.expected["multi"]
    )


# --- old-file traps ---------------------------------------------------------------------


def test_old_keras_224_file_falls_back_to_tf_keras(tf_keras_files, tmp_path, capsys):
    """DepthwiseConv2D `groups`, batch fixed to 1, unknown loss/optimizer, class `Model`."""
    code, out, _ = run(
        capsys, tf_keras_files["old_224_h5"], "--name", "old", "--models-dir", tmp_path
    )
    assert code == 0, out
    assert "written by Keras 2.2.4, backend tensorflow" in out
    assert "loaded with tf-keras" in out
    assert "Keras 3 could not read it" in out and "groups" in out
    assert "parity at batch sizes 1, 3" in out
    inputs, _ = signature(tmp_path / "old" / "1")
    assert list(inputs.values()) == [[-1, 4, 4, 2]]
    (key,) = inputs
    got = predict(tmp_path / "old" / "1", {key: tf_keras_files.samples["old_224"]["input"]})
    np.testing.assert_allclose(got["score"], tf_keras_files.expected["old_224"]["score"], atol=1e-5)


def test_keras_21_sequential_with_layer_list_config(tf_keras_files, tmp_path, capsys):
    src = tf_keras_files["old_sequential_h5"]
    code, out, _ = run(capsys, src, "--name", "seq", "--models-dir", tmp_path)
    assert code == 0, out
    assert "written by Keras 2.1.6" in out
    assert "loaded with tf-keras" in out
    inputs, outputs = signature(tmp_path / "seq" / "1")
    assert list(inputs.values()) == [[-1, 3]] and outputs == {"prob": [-1, 1]}
    (key,) = inputs
    got = predict(tmp_path / "seq" / "1", {key: tf_keras_files.samples["old_sequential"]["x"]})
    assert_close(got, tf_keras_files.expected["old_sequential"])


def test_compile_state_keras3_cannot_rebuild_is_ignored(keras3_files, tmp_path, capsys):
    code, out, _ = run(
        capsys, keras3_files["bad_compile_h5"], "--name", "m", "--models-dir", tmp_path
    )
    assert code == 0, out
    assert "loaded with keras 3" in out
    assert_close(
        predict(tmp_path / "m" / "1", keras3_files.samples["multi"]), keras3_files.expected["multi"]
    )


def test_batch_fixed_to_one_is_exported_dynamic(keras3_files, tmp_path, capsys):
    code, out, _ = run(capsys, keras3_files["batch1_h5"], "--name", "m", "--models-dir", tmp_path)
    assert code == 0, out
    assert "parity at batch sizes 1, 3" in out
    inputs, outputs = signature(tmp_path / "m" / "1")
    assert inputs == {"features": [-1, 3]} and outputs == {"out": [-1, 2]}
    got = predict(tmp_path / "m" / "1", keras3_files.samples["batch1"])  # 3 rows
    assert_close(got, keras3_files.expected["batch1"])


def test_static_batch_keeps_the_recorded_batch(keras3_files, tmp_path, capsys):
    code, out, _ = run(
        capsys, keras3_files["batch1_h5"], "--name", "m", "--models-dir", tmp_path, "--static-batch"
    )
    assert code == 0, out
    assert signature(tmp_path / "m" / "1")[0] == {"features": [1, 3]}


def test_batchnorm_and_dropout_run_in_inference_mode(keras3_files, tmp_path, capsys):
    code, out, _ = run(
        capsys, keras3_files["bn_dropout_h5"], "--name", "m", "--models-dir", tmp_path
    )
    assert code == 0, out
    feeds = keras3_files.samples["bn_dropout"]
    (key,) = signature(tmp_path / "m" / "1")[0]
    first = predict(tmp_path / "m" / "1", {key: feeds["x"]})
    second = predict(tmp_path / "m" / "1", {key: feeds["x"]})
    np.testing.assert_array_equal(first["logits"], second["logits"])  # no dropout noise
    np.testing.assert_allclose(
        first["logits"], keras3_files.expected["bn_dropout"]["logits"], atol=1e-5
    )


def test_string_lookup_table_is_initialised_by_the_export(keras3_files, tmp_path, capsys):
    """The TF1-session check in verification fails if TF Serving would find the table empty."""
    code, out, _ = run(
        capsys, keras3_files["lookup_keras"], "--name", "m", "--models-dir", tmp_path
    )
    assert code == 0, out
    assert "tf1 session loader" in out
    assert signature(tmp_path / "m" / "1")[0] == {"city": [-1, 1]}
    got = predict(tmp_path / "m" / "1", keras3_files.samples["lookup"])
    assert_close(got, keras3_files.expected["lookup"])
    assert len(np.unique(got["score"])) == 3  # known cities and the unknown one differ


# --- custom code --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("file", "missing"), [("custom_h5", "ScaledDense"), ("custom_fn_h5", "bent_relu")]
)
def test_custom_object_missing_is_named_with_the_flag(
    file, missing, keras3_files, tmp_path, capsys
):
    models = tmp_path / "models"
    code, _, err = run(capsys, keras3_files[file], "--name", "m", "--models-dir", models)
    assert code == 1
    assert len(err.strip().splitlines()) == 1
    assert f"custom object(s) {missing} " in err and "--custom-objects" in err
    assert_nothing_written(models, None)


CUSTOM_CASES = {  # file -> (--custom-objects spec, output key, expected-prediction key)
    "custom_h5": ("kit_custom_layers:ScaledDense", "scaled", "custom"),
    "custom_fn_h5": ("kit_custom_layers", "bent", "custom_fn"),
}


@pytest.mark.parametrize("file", list(CUSTOM_CASES))
def test_custom_objects_flag_makes_it_convert(file, keras3_files, tmp_path, capsys, monkeypatch):
    spec, output, expected = CUSTOM_CASES[file]
    monkeypatch.syspath_prepend(str(keras3_files.extra["custom_dir"]))
    code, out, _ = run(
        capsys,
        keras3_files[file],
        "--name",
        "m",
        "--models-dir",
        tmp_path,
        "--custom-objects",
        spec,
    )
    assert code == 0, out
    assert "custom:    " in out
    (key,) = signature(tmp_path / "m" / "1")[0]
    got = predict(tmp_path / "m" / "1", {key: keras3_files.samples["custom"]["x"]})
    np.testing.assert_allclose(got[output], keras3_files.expected[expected][output], atol=1e-5)


@pytest.mark.parametrize("family", ["keras3_files", "tf_keras_files"])
def test_lambda_refused_without_unsafe_and_never_executed(family, request, tmp_path, capsys):
    files = request.getfixturevalue(family)
    marker = files.extra["lambda_marker"]
    marker.unlink(missing_ok=True)
    code, _, err = run(capsys, files["lambda_h5"], "--name", "m", "--models-dir", tmp_path)
    assert code == 1
    assert len(err.strip().splitlines()) == 1
    assert "Lambda" in err and "--unsafe" in err
    assert not marker.exists()
    assert_nothing_written(tmp_path, None)


@pytest.mark.parametrize(
    ("family", "loader"), [("keras3_files", "keras 3"), ("tf_keras_files", "tf-keras")]
)
def test_lambda_converts_with_unsafe(family, loader, request, tmp_path, capsys):
    files = request.getfixturevalue(family)
    files.extra["lambda_marker"].unlink(missing_ok=True)
    code, out, _ = run(
        capsys, files["lambda_h5"], "--name", "m", "--models-dir", tmp_path, "--unsafe"
    )
    assert code == 0, out
    assert f"loaded with {loader}" in out
    assert files.extra["lambda_marker"].exists()
    assert (tmp_path / "m" / "1" / "saved_model.pb").is_file()


def test_export_that_cannot_reproduce_the_model_is_not_published(
    keras3_files, existing_models, capsys, monkeypatch
):
    monkeypatch.syspath_prepend(str(keras3_files.extra["custom_dir"]))
    before = (existing_models / "models.config").read_text()
    code, out, err = run(
        capsys, keras3_files["jitter_h5"], "--name", "m", "--models-dir", existing_models,
        "--custom-objects", "kit_custom_layers",
    )  # fmt: skip
    assert code == 1, out
    assert len(err.strip().splitlines()) == 1
    assert "does not reproduce the source model" in err and "jitter" in err
    assert not (existing_models / "m").exists()
    assert (existing_models / "models.config").read_text() == before


def test_sample_file_drives_verification(keras3_files, tmp_path, capsys):
    sample = tmp_path / "sample.npz"
    np.savez(sample, **keras3_files.samples["multi"])
    code, out, _ = run(
        capsys, keras3_files["multi_h5"], "--name", "m", "--models-dir", tmp_path / "models",
        "--sample", sample,
    )  # fmt: skip
    assert code == 0, out
    assert "parity at batch sizes 1, 3" in out
    code, _, err = run(
        capsys, keras3_files["multi_h5"], "--name", "m", "--models-dir", tmp_path / "models",
        "--sample", tmp_path / "nope.npz",
    )  # fmt: skip
    assert code == 2 and "--sample" in err


# --- versions -----------------------------------------------------------------------------


def test_versions_increment_and_overwrite_needs_flag(keras3_files, tmp_path, capsys):
    src = keras3_files["batch1_h5"]
    common = ["--name", "m", "--models-dir", tmp_path, "--no-verify"]
    assert run(capsys, src, *common)[0] == 0
    assert run(capsys, src, *common)[0] == 0
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["1", "2"]
    config_before = (tmp_path / "models.config").read_text()
    stamp = (tmp_path / "m" / "1" / "saved_model.pb").stat().st_mtime_ns

    code, _, err = run(capsys, src, *common, "--version", "1")
    assert code == 2
    assert "already exists" in err and "--overwrite" in err
    assert (tmp_path / "m" / "1" / "saved_model.pb").stat().st_mtime_ns == stamp
    assert (tmp_path / "models.config").read_text() == config_before

    code, out, _ = run(capsys, src, *common, "--version", "1", "--overwrite")
    assert code == 0, out
    assert (tmp_path / "m" / "1" / "saved_model.pb").stat().st_mtime_ns != stamp
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["1", "2"]
    assert run(capsys, src, *common)[0] == 0
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["1", "2", "3"]


# --- bad input ----------------------------------------------------------------------------


@pytest.fixture
def existing_models(keras3_files, tmp_path):
    """A models folder that already serves another model: bad input must leave it alone."""
    models = tmp_path / "models"
    (models / "other" / "1").mkdir(parents=True)
    (models / "models.config").write_text(
        'model_config_list {\n  config {\n    name: "other"\n    base_path: "/models/other"\n'
        '    model_platform: "tensorflow"\n  }\n}\n'
    )
    return models


# case -> (SRC, extra flags, exit code, words the one-line error must hold)
BAD_INPUT = {
    "missing": ("nope.h5", [], 2, ["no such file"]),
    "text": ("notes.h5", [], 2, ["not a Keras model", ".keras"]),
    "truncated": ("truncated.h5", [], 1, ["truncated or corrupt"]),
    "json_as_src": ("multi.json", [], 2, ["--architecture"]),
    "weights_only": ("multi.weights.h5", [], 2, ["no model config", "--architecture"]),
    "no_architecture": ("multi.weights.h5", ["--architecture", "gone.json"], 2, ["no such file"]),
    "input_names": ("multi.h5", ["--input-names", "a,b,c"], 2, ["3 name(s) for 2 input(s)"]),
    "output_name": ("multi.h5", ["--output-name", "y"], 2, ["single-output"]),
    "bad_name": ("multi.h5", ["--name", "no/slash"], 2, ["invalid model name"]),
    "bad_module": ("multi.h5", ["--custom-objects", "no_such_mod_xyz"], 2, ["cannot import"]),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_one_line_error_and_nothing_written(
    case, keras3_files, existing_models, tmp_path, capsys
):
    name, extra, code, words = BAD_INPUT[case]
    (tmp_path / "notes.h5").write_text("not a model\n")
    data = keras3_files["multi_h5"].read_bytes()
    (tmp_path / "truncated.h5").write_bytes(data[: len(data) // 3])
    src = keras3_files.root / name if (keras3_files.root / name).exists() else tmp_path / name
    before = (existing_models / "models.config").read_text()
    name_flag = [] if "--name" in extra else ["--name", "m"]
    got, out, err = run(capsys, src, *name_flag, "--models-dir", existing_models, *extra)
    assert got == code, out + err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    for word in words:
        assert word in err
    assert not (existing_models / "m").exists()
    assert sorted(p.name for p in existing_models.iterdir()) == ["models.config", "other"]
    assert (existing_models / "models.config").read_text() == before


# --- the real console script --------------------------------------------------------------


def _script(*argv, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run(
        [str(CONVERT_H5), *map(str, argv)], capture_output=True, text=True, env=env, timeout=300
    )


def test_console_script_usage_error_exit_2(tmp_path):
    result = _script(tmp_path / "missing.h5", "--name", "m", "--models-dir", tmp_path / "models")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"convert-h5: error: model file {tmp_path / 'missing.h5'}: no such file; check the path"
    ]
    assert not (tmp_path / "models").exists()


def test_console_script_custom_objects_from_pythonpath(keras3_files, tmp_path):
    models = tmp_path / "models"
    refused = _script(keras3_files["custom_h5"], "--name", "m", "--models-dir", models)
    assert refused.returncode == 1
    (line,) = refused.stderr.strip().splitlines()
    assert "ScaledDense" in line and "--custom-objects" in line
    assert_nothing_written(models, None)

    env = {"PYTHONPATH": str(keras3_files.extra["custom_dir"])}
    done = _script(
        keras3_files["custom_h5"], "--name", "m", "--models-dir", models,
        "--custom-objects", "kit_custom_layers", env_extra=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # TensorFlow's and Keras's chatter stays out of a clean run
    assert "loaded with keras 3" in done.stdout
    assert "max |diff|" in done.stdout
    assert (models / "m" / "1" / "saved_model.pb").is_file()

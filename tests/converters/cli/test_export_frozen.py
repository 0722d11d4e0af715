"""export-frozen: SavedModels from both converters -> one GraphDef a C or Go program can run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from converters import frozen as frozen_module
from converters.cli import convert_ckpt, convert_h5, export_frozen

v1 = tf.compat.v1
CLI = Path(sys.executable).with_name("export-frozen")


def _run_graph_def(path: Path, feeds: dict[str, np.ndarray], fetches: list[str]) -> list:
    """What a libtensorflow client does: import the bytes, feed and fetch by tensor name."""
    graph_def = v1.GraphDef()
    graph_def.ParseFromString(path.read_bytes())
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(graph_def, name="")
    with v1.Session(graph=graph) as session:
        return session.run(fetches, feeds)


def _node_types(path: Path) -> set[str]:
    graph_def = v1.GraphDef()
    graph_def.ParseFromString(path.read_bytes())
    types = {n.op for n in graph_def.node}
    for function in graph_def.library.function:
        types |= {n.op for n in function.node_def}
    return types


STATEFUL = {"VariableV2", "VarHandleOp", "ReadVariableOp", "SaveV2", "RestoreV2", "Assign"}


@pytest.fixture(scope="module")
def models(tmp_path_factory, keras3_files, regression_ckpt, table_ckpt) -> Path:
    """A Keras model, the issue's TF1 notebook checkpoint and a table model, converted."""
    folder = tmp_path_factory.mktemp("frozen_models")
    common = ["--models-dir", str(folder)]
    assert convert_h5.main([str(keras3_files["multi_h5"]), "--name", "multi", *common]) == 0
    argv = [str(regression_ckpt.folder), "--name", "reg", "--fixed", "training=false"]
    assert convert_ckpt.main([*argv, *common]) == 0
    assert convert_ckpt.main([str(table_ckpt.folder), "--name", "words", *common]) == 0
    return folder


def test_keras_model_round_trips_through_one_graphdef(models, keras3_files, tmp_path, capsys):
    capsys.readouterr()
    target = tmp_path / "multi.pb"
    assert export_frozen.main([str(models / "multi" / "1"), "--output", str(target)]) == 0
    out = capsys.readouterr().out
    assert "input  age:0  float32  [-1,3]" in out
    assert "input  income:0  float32  [-1,2]" in out
    assert "output probs:0  float32  [-1,3]" in out  # named after the signature key
    assert "output score:0  float32  [-1,1]" in out
    assert "loaders: frozen GraphDef in a fresh tf.Graph" in out
    assert f"wrote:     {target}" in out
    assert not _node_types(target) & STATEFUL  # variables are constants, no saver

    sample = keras3_files.samples["multi"]
    probs, score = _run_graph_def(
        target, {"age:0": sample["age"], "income:0": sample["income"]}, ["probs:0", "score:0"]
    )
    np.testing.assert_allclose(probs, keras3_files.expected["multi"]["probs"], atol=1e-5)
    np.testing.assert_allclose(score, keras3_files.expected["multi"]["score"], atol=1e-5)
    assert [p.name for p in tmp_path.iterdir()] == ["multi.pb"]  # no temp file left


def test_tf1_checkpoint_round_trips_and_matches_the_checkpoint(
    models, regression_ckpt, tmp_path, capsys
):
    capsys.readouterr()
    target = tmp_path / "reg.pb"
    # A model folder means its highest version.
    assert export_frozen.main([str(models / "reg"), "--output", str(target)]) == 0
    out = capsys.readouterr().out
    assert "input  serving/features:0  float32  [-1,8]" in out
    assert "output prediction:0  float32  [-1]" in out
    assert not _node_types(target) & STATEFUL

    t = regression_ckpt.tensors
    rows = np.random.default_rng(11).standard_normal((5, 8)).astype(np.float32)
    with v1.Session(graph=tf.Graph()) as session:
        v1.train.import_meta_graph(f"{regression_ckpt.prefix}.meta").restore(
            session, str(regression_ckpt.prefix)
        )
        expected = session.run(t["prediction"], {t["features"]: rows, t["training"]: False})
    (served,) = _run_graph_def(target, {"serving/features:0": rows}, ["prediction:0"])
    np.testing.assert_allclose(served, expected, atol=1e-5)


def test_table_model_is_refused_naming_the_op_and_nothing_is_left(models, tmp_path, capsys):
    capsys.readouterr()
    target = tmp_path / "words.pb"
    assert export_frozen.main([str(models / "words" / "1"), "--output", str(target)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("export-frozen: error: cannot freeze")
    assert "(HashTableV2) is a lookup table" in err[0] or "(LookupTableFindV2)" in err[0]
    assert "serve the SavedModel" in err[0]
    assert list(tmp_path.iterdir()) == []


def test_bad_arguments_exit_2_and_leave_files_alone(models, tmp_path, capsys):
    existing = tmp_path / "old.pb"
    existing.write_bytes(b"keep me")
    version = str(models / "multi" / "1")
    cases = {
        (version, "--output", str(existing)): "already exists; pass --overwrite",
        (version, "--output", str(tmp_path / "absent" / "m.pb")): "create it first",
        (version, "--output", str(tmp_path / "m.pb"), "--signature", "nope"): (
            "no signature 'nope' (has: serving_default); pass --signature NAME"
        ),
        (str(tmp_path), "--output", str(tmp_path / "m.pb")): "no saved_model.pb here",
    }
    for argv, message in cases.items():
        assert export_frozen.main(list(argv)) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    assert existing.read_bytes() == b"keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.pb"]


def test_overwrite_replaces_the_file(models, tmp_path):
    target = tmp_path / "multi.pb"
    target.write_bytes(b"stale")
    version = str(models / "multi" / "1")
    assert export_frozen.main([version, "--output", str(target), "--overwrite"]) == 0
    assert target.read_bytes() != b"stale" and len(target.read_bytes()) > 1000


def test_a_failed_write_leaves_no_file_and_no_temp(tmp_path, monkeypatch):
    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(frozen_module.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        frozen_module.write_atomically(b"graph", tmp_path / "m.pb")
    assert list(tmp_path.iterdir()) == []


def test_console_script_help_teaches_the_names():
    result = subprocess.run([CLI, "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    assert "libtensorflow" in result.stdout and "TF_GraphOperationByName" in result.stdout
    assert "--signature NAME" in result.stdout and "--output FILE.pb" in result.stdout

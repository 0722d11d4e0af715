"""convert-ckpt end to end: TF1 checkpoints in, TF Serving version folders out."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import requests
import tensorflow as tf

from converters.cli import convert_ckpt
from converters.models_config import ModelsConfig
from converters.signatures import read_signatures
from devtools.ckpt_models import VOCAB
from devtools.savedmodels import start_graph_service

v1 = tf.compat.v1
CLI = Path(sys.executable).with_name("convert-ckpt")


def _serve_tf1(export_dir: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run serving_default the way TF Serving does: restore, run the main op, nothing else."""
    with v1.Session(graph=tf.Graph()) as session:
        meta = v1.saved_model.loader.load(session, ["serve"], str(export_dir))
        sig = meta.signature_def["serving_default"]
        feed = {sig.inputs[k].name: v for k, v in feeds.items()}
        return session.run({k: t.name for k, t in sig.outputs.items()}, feed)


def _run_checkpoint(prefix: Path, feeds: dict[str, object], fetch: str) -> np.ndarray:
    """The original training graph in a plain v1 Session, fed through its own tensors."""
    with v1.Session(graph=tf.Graph()) as session:
        saver = v1.train.import_meta_graph(str(prefix) + ".meta")
        saver.restore(session, str(prefix))
        session.run(v1.tables_initializer())
        return session.run(fetch, feeds)


def _signature(export_dir: Path):
    _, sigs = read_signatures(export_dir)
    (sig,) = [s for s in sigs if s.key == "serving_default"]
    return (
        {t.key: (t.dtype, t.shape) for t in sig.inputs},
        {t.key: (t.dtype, t.shape) for t in sig.outputs},
    )


@pytest.fixture
def models_dir(tmp_path) -> Path:
    """A models folder that already serves another model: conversions must keep it."""
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "models.config").write_text(
        'model_config_list { config { name: "other" base_path: "/models/other" '
        'model_platform: "tensorflow" } }\n'
    )
    return folder


def _untouched(models_dir: Path, name: str) -> None:
    assert not (models_dir / name).exists()
    assert ModelsConfig.load(models_dir / "models.config").names() == ["other"]


def test_training_checkpoint_with_flags_matches_the_checkpoint(training_ckpt, models_dir, capsys):
    t = training_ckpt.tensors
    code = convert_ckpt.main(
        [
            str(training_ckpt.prefix),
            "--name",
            "clf",
            "--models-dir",
            str(models_dir),
            "--input",
            f"x={t['x']}",
            "--output",
            f"probs={t['probs']}",
            "--fixed",
            "is_training=false",
            "--shape",
            "x=?,4",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "probs" in out and "max |diff|" in out and "tf1 session loader" in out
    export = models_dir / "clf" / "1"
    assert _signature(export) == (
        {"x": ("DT_FLOAT", [-1, 4])},
        {"probs": ("DT_FLOAT", [-1, 3])},
    )
    config = ModelsConfig.load(models_dir / "models.config")
    assert config.names() == ["other", "clf"]
    assert config.get("clf").base_path == "/models/clf"

    rows = np.random.default_rng(7).standard_normal((5, 4)).astype(np.float32)
    expected = _run_checkpoint(
        training_ckpt.prefix, {t["x"]: rows, t["is_training"]: False}, t["probs"]
    )
    served = _serve_tf1(export, {"x": rows})["probs"]
    np.testing.assert_allclose(served, expected, atol=1e-6)

    # Only what serving reads is kept: Adam's slots and the step counter stay behind.
    saved = {name for name, _ in tf.train.list_variables(str(export / "variables" / "variables"))}
    assert "dense/kernel" in saved and "bn/moving_mean" in saved
    assert not [n for n in saved if "Adam" in n or n == "global_step"]


@pytest.mark.parametrize("control_flow", ["v2 If", "v1 Switch/Merge"])
def test_folder_source_detects_the_prediction_once_the_switch_is_fixed(
    request, control_flow, models_dir, capsys
):
    fixture = "training_ckpt" if control_flow == "v2 If" else "training_ckpt_v1_cond"
    ckpt = request.getfixturevalue(fixture)
    listing = convert_ckpt.main([str(ckpt.folder), "--list"])
    out = capsys.readouterr().out
    assert listing == 0
    assert "suggested flags: --input Placeholder=Placeholder:0 --fixed is_training:0=false " in out
    code = convert_ckpt.main(
        [
            str(ckpt.folder),
            "--name",
            "clf",
            "--models-dir",
            str(models_dir),
            "--fixed",
            "is_training=false",
            "--shape",
            "Placeholder=?,4",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "detected" in out
    inputs, outputs = _signature(models_dir / "clf" / "1")
    assert inputs == {"Placeholder": ("DT_FLOAT", [-1, 4])}
    assert list(outputs) == ["probs"]  # not the loss, which also needs the labels


def test_ambiguous_graph_stops_with_candidates_and_flags(training_ckpt, models_dir, capsys):
    code = convert_ckpt.main(
        [str(training_ckpt.folder), "--name", "clf", "--models-dir", str(models_dir)]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "Placeholder_1:0              int64    [?]" in err
    assert "probs:0                      float32  [?,3]" in err
    assert "is_training:0" in err and "mode flag" in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("convert-ckpt: error: cannot pick the signature")
    assert "--fixed is_training:0=false" in last and "--output probs=probs:0" in last
    _untouched(models_dir, "clf")


def test_list_offers_the_prediction_sets_the_loss_aside_and_writes_nothing(
    training_ckpt, tmp_path, capsys
):
    models = tmp_path / "never"
    code = convert_ckpt.main([str(training_ckpt.prefix), "--list", "--models-dir", str(models)])
    out = capsys.readouterr().out
    assert code == 0
    offered = out.split("candidate outputs")[1].split("set aside")[0]
    names = [
        line.split()[0]
        for line in offered.splitlines()
        if line.startswith("  ") and ":0" in line.split()[0]
    ]
    assert names == ["probs:0"]
    assert "vars 8" in offered  # dense, batch norm (4) and output layer variables
    aside = out.split("set aside (never offered as a prediction):")[1]
    assert "loss:0" in aside and "a loss (needs the labels Placeholder_1:0)" in aside
    assert "Placeholder:0                float32  unknown shape" in out
    assert not models.exists()


def test_dataset_iterator_input_gets_a_placeholder(dataset_ckpt, models_dir, capsys):
    t = dataset_ckpt.tensors
    code = convert_ckpt.main(
        [
            str(dataset_ckpt.prefix),
            "--name",
            "reg",
            "--models-dir",
            str(models_dir),
            "--input",
            f"x={t['features']}",
            "--output",
            f"y={t['prediction']}",
            "--fixed",
            "keep_prob=1.0",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "rewired IteratorGetNext:0 -> new placeholder serving/x:0" in out
    export = models_dir / "reg" / "1"
    assert _signature(export) == ({"x": ("DT_FLOAT", [-1, 3])}, {"y": ("DT_FLOAT", [-1, 1])})
    rows = np.arange(12, dtype=np.float32).reshape(4, 3) / 10
    expected = _run_checkpoint(
        dataset_ckpt.prefix, {t["features"]: rows, t["keep_prob"]: 1.0}, t["prediction"]
    )
    np.testing.assert_allclose(_serve_tf1(export, {"x": rows})["y"], expected, atol=1e-6)


def test_dataset_graph_detection_skips_defaulted_placeholders(dataset_ckpt, capsys):
    code = convert_ckpt.main([str(dataset_ckpt.folder), "--list", "--fixed", "keep_prob=1"])
    out = capsys.readouterr().out
    assert code == 0
    assert "scale:0" not in out  # placeholder_with_default is not an input
    assert "keep_prob" not in out.split("candidate outputs")[0].split("candidate inputs")[1]
    assert (
        "suggested flags: --input IteratorGetNext=IteratorGetNext:0 "
        "--output prediction=prediction:0" in out
    )


def test_meta_graph_signature_def_is_used_and_versions_count_up(signature_ckpt, models_dir, capsys):
    argv = [str(signature_ckpt.prefix), "--name", "sig", "--models-dir", str(models_dir)]
    assert convert_ckpt.main(argv) == 0
    assert convert_ckpt.main(argv) == 0
    out = capsys.readouterr().out
    assert "from the meta graph's signature_def 'serving_default'" in out
    assert sorted(p.name for p in (models_dir / "sig").iterdir()) == ["1", "2"]
    assert _signature(models_dir / "sig" / "2") == (
        {"features": ("DT_FLOAT", [-1, 2])},
        {"scores": ("DT_FLOAT", [-1, 2])},
    )

    before = (models_dir / "sig" / "1" / "saved_model.pb").stat().st_mtime_ns
    assert convert_ckpt.main([*argv, "--version", "1"]) == 2
    err = capsys.readouterr().err
    assert "already exists; pass --overwrite" in err
    assert (models_dir / "sig" / "1" / "saved_model.pb").stat().st_mtime_ns == before

    assert convert_ckpt.main([*argv, "--version", "1", "--overwrite", "--no-verify"]) == 0
    assert (models_dir / "sig" / "1" / "saved_model.pb").stat().st_mtime_ns != before
    assert ModelsConfig.load(models_dir / "models.config").names() == ["other", "sig"]


def test_string_tables_are_initialised_by_the_savedmodel_itself(table_ckpt, models_dir, capsys):
    code = convert_ckpt.main(
        [str(table_ckpt.folder), "--name", "words", "--models-dir", str(models_dir)]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    embedding = tf.train.load_variable(str(table_ckpt.prefix), "embedding")
    words = np.array([b"a", b"c", b"zzz"], dtype=object)
    colour = np.array([b"green", b"red", b"blue"], dtype=object)
    # vocab a,b,c -> 0..2, default 3; colours red,green -> 0,1, one OOV bucket -> 2
    expected = embedding[[0, 2, 3]].sum(axis=1) + np.array([1.0, 0.0, 2.0])
    served = _serve_tf1(models_dir / "words" / "1", {"words": words, "colour": colour})
    np.testing.assert_allclose(served["score"], expected, atol=1e-6)


def test_shape_flag_overrides_inference_and_a_wrong_one_leaves_nothing(
    training_ckpt, models_dir, capsys
):
    code = convert_ckpt.main(
        [
            str(training_ckpt.prefix),
            "--name",
            "clf",
            "--models-dir",
            str(models_dir),
            "--fixed",
            "is_training=false",
            "--shape",
            "Placeholder=?,5",
        ]
    )
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert code == 1
    assert "inferred" not in captured.out  # --shape wins over what the Reshape says
    assert len(err.splitlines()) == 1
    assert "requested shape requires a multiple of 4" in err
    assert "--shape Placeholder=?,4" in err
    _untouched(models_dir, "clf")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--input", "x"], "--input 'x': expected KEY=TENSOR"),
        (["--output", "probs=nope:0"], "no tensor 'nope:0' in the graph; run with --list"),
        (["--fixed", "is_training=maybe"], "not a bool value"),
        (["--shape", "x=?,four"], "is not a shape"),
    ],
)
def test_bad_flags_exit_2_with_one_line(training_ckpt, models_dir, capsys, args, message):
    code = convert_ckpt.main(
        [str(training_ckpt.prefix), "--name", "clf", "--models-dir", str(models_dir), *args]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and message in err, err
    _untouched(models_dir, "clf")


def test_missing_checkpoint_pieces_exit_2(training_ckpt, tmp_path, models_dir, capsys):
    partial = tmp_path / "partial"
    partial.mkdir()
    for suffix in (".meta", ".index"):
        shutil.copy(f"{training_ckpt.prefix}{suffix}", partial)
    cases = {
        str(tmp_path / "absent" / "model.ckpt"): "no such checkpoint",
        str(partial / training_ckpt.prefix.name): "the checkpoint has no data file",
        str(tmp_path): "no 'checkpoint' file in this folder",
    }
    for src, message in cases.items():
        code = convert_ckpt.main([src, "--name", "clf", "--models-dir", str(models_dir)])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1 and message in err, err
    _untouched(models_dir, "clf")


def test_console_script_exit_codes(signature_ckpt, models_dir):
    ok = subprocess.run(
        [CLI, str(signature_ckpt.folder), "--name", "sig", "--models-dir", str(models_dir)],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    assert ok.stderr == ""  # no TensorFlow chatter on a clean run
    assert f"wrote:     {models_dir / 'sig' / '1'}" in ok.stdout

    argv = [str(signature_ckpt.folder), "--name", "sig2", "--models-dir", str(models_dir)]
    bad = subprocess.run(
        [CLI, *argv, "--output", "y=missing_op"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2
    lines = bad.stderr.splitlines()  # only our line: TensorFlow's import chatter is muted
    assert lines == [
        "convert-ckpt: error: --output y=missing_op:0: no tensor 'missing_op:0' in the graph; "
        "run with --list to see the candidates (names look like scope/op:0)"
    ]
    assert "Traceback" not in bad.stderr
    assert not (models_dir / "sig2").exists()
    assert ModelsConfig.load(models_dir / "models.config").names() == ["other", "sig"]


WORDS = ["apple", "cherry", "durian", "kiwi"]  # kiwi is in no vocabulary


@contextmanager
def _moved_away(path: Path) -> Iterator[None]:
    """The file gone from where the graph recorded it, for the duration (then put back)."""
    hidden = path.with_name(path.name + ".hidden")
    path.rename(hidden)
    try:
        yield
    finally:
        hidden.rename(path)


def test_string_vocabulary_converts_with_and_without_named_tensors(vocab_ckpt, models_dir, capsys):
    base = [str(vocab_ckpt.folder), "--models-dir", str(models_dir)]
    named = convert_ckpt.main(
        [*base, "--name", "words", "--input", "words=words:0", "--output", "score=score:0"]
    )
    out = capsys.readouterr().out
    assert named == 0, out
    assert (
        "probes:    words <- 'apple', 'banana', 'cherry', 'durian', '<unknown>' "
        "(keys of table hash_table, 4 in all)" in out
    )
    assert "parity at batch sizes 1, 5" in out  # every key and the default, both loaders
    assert "outputs follow the inputs" in out
    detected = convert_ckpt.main([*base, "--name", "detected"])
    out = capsys.readouterr().out
    assert detected == 0, out
    assert "signature: serving_default (detected)" in out
    for name in ("words", "detected"):
        assert _signature(models_dir / name / "1") == (
            {"words": ("DT_STRING", [-1])},
            {"score": ("DT_FLOAT", [-1])},
        )


def test_id_input_converts_and_verifies_within_its_embedding(id_ckpt, models_dir, capsys):
    code = convert_ckpt.main(
        [str(id_ckpt.folder), "--name", "items", "--models-dir", str(models_dir)]
    )
    out = capsys.readouterr().out
    assert code == 0, out  # random ids 0..9 overran the 6-row embedding before
    assert "probes:    item <- 0, 1, 2, 3, 4, … (6 values) (ids of items, 6 rows)" in out
    assert "parity at batch sizes 1, 6" in out


def test_vocabulary_file_travels_in_the_savedmodel_assets(vocab_file_ckpt, models_dir, capsys):
    vocab_file = Path(vocab_file_ckpt.tensors["vocab_file"])
    code = convert_ckpt.main(
        [str(vocab_file_ckpt.folder), "--name", "filed", "--models-dir", str(models_dir)]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"  asset  {vocab_file} (copied into assets/)" in out
    assert "(vocabulary file words.vocab of table hash_table, 4 keys)" in out
    export = models_dir / "filed" / "1"
    assert (export / "assets" / "words.vocab").read_bytes() == vocab_file.read_bytes()
    expected = _run_checkpoint(
        vocab_file_ckpt.prefix, {"words:0": np.array(WORDS, dtype=object)}, "score:0"
    )
    with _moved_away(vocab_file):  # the served model must not need the training machine's file
        served = _serve_tf1(export, {"words": np.array(WORDS, dtype=object)})["score"]
    np.testing.assert_allclose(served, expected, atol=1e-6)


def test_missing_vocabulary_file_exits_2_and_writes_nothing(vocab_file_ckpt, models_dir, capsys):
    vocab_file = Path(vocab_file_ckpt.tensors["vocab_file"])
    with _moved_away(vocab_file):
        code = convert_ckpt.main(
            [str(vocab_file_ckpt.folder), "--name", "filed", "--models-dir", str(models_dir)]
        )
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.splitlines() == [
        f"convert-ckpt: error: table hash_table reads its vocabulary from {vocab_file}, which "
        "is not there; put the file back at that path (the graph records it) and convert again"
    ]
    _untouched(models_dir, "filed")


def _predict(server, model: str, instances: list) -> np.ndarray:
    response = requests.post(
        f"{server.url}/v1/models/{model}:predict", json={"instances": instances}, timeout=30
    )
    assert response.status_code == 200, response.text
    return np.asarray(response.json()["predictions"], dtype=np.float32)


def _wait_available(server, model: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = requests.get(f"{server.url}/v1/models/{model}", timeout=10)
        if status.status_code == 200 and "AVAILABLE" in status.text:
            return
        time.sleep(0.2)
    raise AssertionError(f"{model} not AVAILABLE after {timeout} s: {server.log()[-2000:]}")


@pytest.mark.slow
def test_graph_service_serves_the_tables_scores_from_the_models_folder_alone(
    vocab_ckpt, vocab_file_ckpt, id_ckpt, tmp_path
):
    """What users see: the converted models answer known words with the checkpoint's own
    scores, unknown words with the default bucket's, ids with their rows'."""
    models_dir = tmp_path / "models"
    for ckpt, name in ((vocab_ckpt, "words"), (vocab_file_ckpt, "filed"), (id_ckpt, "items")):
        argv = [str(ckpt.folder), "--name", name, "--models-dir", str(models_dir)]
        assert convert_ckpt.main(argv) == 0
    words = np.array(WORDS, dtype=object)
    expected = {
        "words": _run_checkpoint(vocab_ckpt.prefix, {"words:0": words}, "score:0"),
        "filed": _run_checkpoint(vocab_file_ckpt.prefix, {"words:0": words}, "score:0"),
        "items": _run_checkpoint(id_ckpt.prefix, {"item:0": np.arange(6)}, "score:0"),
    }
    embedding = tf.train.load_variable(str(vocab_ckpt.prefix), "embedding")
    kernel = tf.train.load_variable(str(vocab_ckpt.prefix), "score/kernel")
    default_score = (embedding[len(VOCAB)] @ kernel)[0]
    with _moved_away(Path(vocab_file_ckpt.tensors["vocab_file"])):
        server = start_graph_service(models_dir / "models.config", tmp_path / "logs")
        try:
            for name in ("filed", "items"):
                _wait_available(server, name)
            served = {
                "words": _predict(server, "words", WORDS),
                "filed": _predict(server, "filed", WORDS),
                "items": _predict(server, "items", list(range(6))),
            }
        finally:
            server.stop()
    for name, scores in served.items():
        np.testing.assert_allclose(scores, expected[name], atol=1e-6, err_msg=name)
    known = served["words"][:3]
    assert len(set(known.tolist())) == 3  # apple, cherry, durian: three different scores
    assert served["words"][3] == pytest.approx(default_score, abs=1e-6)  # kiwi: the default
    assert len(set(served["items"].tolist())) == 6

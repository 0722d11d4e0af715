"""Detection that cannot publish nonsense, and input widths read off the graph (issue 11).

The regression checkpoint is the notebook from the issue: features of unknown shape,
labels, a bool training flag feeding dropout, a prediction squeezed to [batch], an L2 loss
and a variable-free metric reading only the features.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from converters.ckpt.detect import detect, find_candidates
from converters.ckpt.shapes import infer_shape
from converters.signatures import read_signatures
from tests.converters.ckpt.helpers import convert, nothing_published, scratch_graph

v1 = tf.compat.v1


def test_candidates_offer_the_prediction_and_set_the_metric_and_loss_aside(regression_ckpt):
    t = regression_ckpt.tensors
    candidates = find_candidates(scratch_graph(regression_ckpt))
    assert [c.tensor.name for c in candidates.outputs] == [t["prediction"]]
    (prediction,) = candidates.outputs
    assert prediction.needs == (t["features"], t["training"])
    assert set(prediction.variables) == {"dense/kernel", "dense/bias", "out/kernel", "out/bias"}
    reasons = {a.tensor.name: a.reason for a in candidates.set_aside}
    assert reasons[t["metric"]].startswith("reads no trained variables")
    assert reasons[t["loss"]] == f"a loss (needs the labels {t['labels']})"


def test_without_flags_detection_refuses_and_lists_the_prediction_with_its_flags(
    regression_ckpt, tmp_path, capsys
):
    models = tmp_path / "models"
    assert convert(regression_ckpt, models, "--name", "reg") == 2
    err = capsys.readouterr().err
    flags = "--input features=features:0 --fixed training:0=false --output prediction=prediction:0"
    assert f"      flags: {flags}" in err  # the candidate, with the exact flags to pass
    offered = err.split("candidate outputs")[1].split("set aside")[0]
    assert "share_positive" not in offered and "loss:0" not in offered
    last = err.strip().splitlines()[-1]
    assert last.startswith("convert-ckpt: error: cannot pick the signature on my own")
    assert "training:0 looks like a training switch" in last and flags in last
    nothing_published(models, "reg")


def test_with_the_switch_fixed_detection_picks_the_prediction_and_infers_the_width(
    regression_ckpt, tmp_path, capsys
):
    models = tmp_path / "models"
    code = convert(regression_ckpt, models, "--name", "reg", "--fixed", "training=false")
    out = capsys.readouterr().out
    assert code == 0, out
    assert "inferred features [?,8] from MatMul dense/MatMul with weights [8,100]" in out
    assert "variables: 4 restored" in out
    assert "outputs follow the inputs" in out
    _, sigs = read_signatures(models / "reg" / "1")
    (sig,) = sigs
    assert [(i.key, i.shape) for i in sig.inputs] == [("features", [-1, 8])]
    assert [o.key for o in sig.outputs] == ["prediction"]

    rows = np.random.default_rng(5).standard_normal((4, 8)).astype(np.float32)
    t = regression_ckpt.tensors
    with v1.Session(graph=tf.Graph()) as session:
        v1.train.import_meta_graph(f"{regression_ckpt.prefix}.meta").restore(
            session, str(regression_ckpt.prefix)
        )
        expected = session.run(t["prediction"], {t["features"]: rows, t["training"]: False})
    with v1.Session(graph=tf.Graph()) as session:
        meta = v1.saved_model.loader.load(session, ["serve"], str(models / "reg" / "1"))
        signature = meta.signature_def["serving_default"]
        served = session.run(
            signature.outputs["prediction"].name, {signature.inputs["features"].name: rows}
        )
    assert served.shape == (4,)
    np.testing.assert_allclose(served, expected, atol=1e-5)


def test_an_output_reading_no_variables_is_refused_unless_allowed(
    regression_ckpt, tmp_path, capsys
):
    models = tmp_path / "models"
    argv = ["--name", "metric", "--output", "m=share_positive"]
    assert convert(regression_ckpt, models, *argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [
        "convert-ckpt: error: the signature reads none of the 4 variables in notebook.ckpt, "
        "so it is not the trained model; pick the prediction with --output (see --list), or "
        "pass --allow-constant-output if that is really meant"
    ]
    nothing_published(models, "metric")

    assert convert(regression_ckpt, models, *argv, "--allow-constant-output") == 0
    assert (models / "metric" / "1" / "saved_model.pb").is_file()


def test_an_output_that_ignores_its_inputs_is_refused_unless_allowed(
    constant_ckpt, tmp_path, capsys
):
    models = tmp_path / "models"
    # Both read the weights and neither covers the other: detection will not guess.
    assert convert(constant_ckpt, models, "--name", "c") == 2
    assert "several outputs could be the prediction" in capsys.readouterr().err

    argv = ["--name", "c", "--output", "flat=flat"]
    assert convert(constant_ckpt, models, *argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "output flat (flat:0) does not change when the inputs change" in err[0]
    assert "--allow-constant-output" in err[0]
    nothing_published(models, "c")

    assert convert(constant_ckpt, models, "--name", "c", "--output", "y=y") == 0
    assert "outputs follow the inputs" in capsys.readouterr().out
    assert convert(constant_ckpt, models, *argv, "--allow-constant-output") == 0
    assert sorted(p.name for p in (models / "c").iterdir()) == ["1", "2"]


@pytest.mark.parametrize(
    ("fixture", "input_key", "shape", "source"),
    [
        ("regression_ckpt", "features", (None, 8), "MatMul dense/MatMul with weights [8,100]"),
        ("conv_ckpt", "images", (None, None, None, 3), "Conv2D Conv2D with filter [3,3,3,4]"),
        ("training_ckpt", "x", (None, 4), "Reshape Reshape to [-1,4]"),
    ],
)
def test_width_is_read_off_the_first_op_that_fixes_it(request, fixture, input_key, shape, source):
    ckpt = request.getfixturevalue(fixture)
    found = infer_shape(scratch_graph(ckpt), ckpt.tensors[input_key])
    assert found is not None
    assert found.shape == shape
    assert found.source == source


def test_width_from_set_shape_and_none_when_nothing_fixes_it():
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, None, name="x")
        scaled = tf.identity(x * 2.0, name="scaled")
        scaled.set_shape([None, 6])
        free = v1.placeholder(tf.float32, None, name="free")
        tf.reduce_sum(tf.square(free), name="total")
    found = infer_shape(graph, "x:0")
    assert (
        found is not None
        and found.line("x") == "inferred x [?,6] from set_shape on scaled:0 (Identity)"
    )
    assert infer_shape(graph, "free:0") is None


def test_conv_input_converts_with_the_inferred_channels(conv_ckpt, tmp_path, capsys):
    models = tmp_path / "models"
    assert convert(conv_ckpt, models, "--name", "img") == 0
    out = capsys.readouterr().out
    assert "inferred images [?,?,?,3] from Conv2D Conv2D with filter [3,3,3,4]" in out
    _, (sig,) = read_signatures(models / "img" / "1")
    assert [(i.key, i.shape) for i in sig.inputs] == [("images", [-1, -1, -1, 3])]


def test_the_candidate_covering_the_trained_graph_wins_over_partial_and_batch_statistics():
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, 4], name="x")
        w1 = v1.get_variable("w1", [4, 5], use_resource=True)
        w2 = v1.get_variable("w2", [5, 1], use_resource=True)
        hidden = tf.nn.relu(x @ w1)
        tf.reduce_mean(hidden, axis=1, name="activity")  # reads w1 only
        y = tf.identity(hidden @ w2, name="y")
        tf.reduce_sum(y, name="total")  # the batch summed: a statistic
    candidates = find_candidates(graph)
    assert [(c.tensor.name, len(c.variables)) for c in candidates.outputs] == [
        ("y:0", 2),
        ("activity:0", 1),
    ]
    reasons = {a.tensor.name: a.reason for a in candidates.set_aside}
    assert reasons == {"total:0": "reduces y:0 over the batch (a statistic, not a prediction)"}
    plan = detect(graph, {})
    assert plan.inputs == {"x": "x:0"} and plan.outputs == {"y": "y:0"}


def test_without_an_optimizer_a_loss_is_known_by_its_labels_not_by_its_name_alone():
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, 3], name="x")
        labels = v1.placeholder(tf.float32, [None, 1], name="labels")
        cost = tf.identity(x @ v1.get_variable("w", [3, 1], use_resource=True), name="cost")
        tf.reduce_mean(tf.square(cost - labels), name="loss")
    candidates = find_candidates(graph)
    # "cost" is this model's prediction (a price): named like a loss, but needs no labels.
    assert [c.tensor.name for c in candidates.outputs] == ["cost:0"]
    assert {a.tensor.name: a.reason for a in candidates.set_aside} == {
        "loss:0": "a loss (needs the labels labels:0)"
    }
    assert detect(graph, {}).outputs == {"cost": "cost:0"}

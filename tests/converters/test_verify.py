"""verify_export: the parity gate every conversion passes through."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from converters.errors import UsageError, VerificationError
from converters.verify import verify_export


def _dense_module(path, batch=None):
    class Dense(tf.Module):
        def __init__(self):
            self.w = tf.Variable(np.arange(6, dtype=np.float32).reshape(3, 2) / 10)

        @tf.function(input_signature=[tf.TensorSpec([batch, 3], tf.float32, name="x")])
        def serve(self, x):
            return {"score": tf.nn.sigmoid(x @ self.w)}

    module = Dense()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    weights = module.w.numpy()
    return lambda feeds: {"score": 1 / (1 + np.exp(-(feeds["x"] @ weights)))}


def _table_export_without_init(path):
    """A TF1 export whose hash table is only initialised by the writer's own session."""
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.string, [None], name="x")
        init = tf.lookup.KeyValueTensorInitializer(tf.constant(["a", "b"]), tf.constant([1.0, 2.0]))
        y = tf.lookup.StaticHashTable(init, -1.0).lookup(x)
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.tables_initializer())
            builder = tf.compat.v1.saved_model.Builder(str(path))
            signature = tf.compat.v1.saved_model.predict_signature_def({"x": x}, {"y": y})
            builder.add_meta_graph_and_variables(
                session, ["serve"], signature_def_map={"serving_default": signature}
            )
            builder.save()
    table = {b"a": 1.0, b"b": 2.0}
    return lambda feeds: {"y": np.array([table.get(v, -1.0) for v in feeds["x"]], np.float32)}


def test_matching_export_reports_parity_per_output(tmp_path):
    reference = _dense_module(tmp_path / "m")
    report = verify_export(tmp_path / "m", reference)
    assert report.ok
    assert report.batch_sizes == (1, 3)
    assert list(report.outputs) == ["score"]
    assert report.outputs["score"].max_abs_diff < 1e-6
    assert "score" in "\n".join(report.lines())


def test_difference_above_atol_fails_and_names_the_output(tmp_path):
    reference = _dense_module(tmp_path / "m")

    def drifted(feeds):
        return {"score": reference(feeds)["score"] + 1e-3}

    with pytest.raises(VerificationError, match=r"score max \|diff\| 0\.001"):
        verify_export(tmp_path / "m", drifted)
    # a looser tolerance accepts the same drift
    assert verify_export(tmp_path / "m", drifted, atol=1e-2).ok


def test_uninitialised_table_is_caught_by_the_tf_serving_style_loader(tmp_path):
    """TF2's Python loader initialises the table itself; TF Serving's session loader does not."""
    reference = _table_export_without_init(tmp_path / "t")
    with pytest.raises(VerificationError, match=r"tf1 session loader.*Table not initialized"):
        verify_export(tmp_path / "t", reference)


def test_fixed_batch_dimension_is_refused(tmp_path):
    reference = _dense_module(tmp_path / "m", batch=1)
    with pytest.raises(VerificationError, match="fixed batch dimension of 1"):
        verify_export(tmp_path / "m", reference)


def test_sample_files_feed_the_comparison(tmp_path):
    reference = _dense_module(tmp_path / "m")
    rows = np.array([[0.5, -1.0, 2.0], [1.0, 1.0, 1.0]], np.float32)
    np.savez(tmp_path / "s.npz", x=rows)
    (tmp_path / "s.json").write_text(json.dumps({"x": rows[:1].tolist()}))
    assert verify_export(tmp_path / "m", reference, sample=tmp_path / "s.npz").batch_sizes == (1, 2)
    assert verify_export(tmp_path / "m", reference, sample=tmp_path / "s.json").batch_sizes == (
        1,
        3,
    )


def test_sample_without_every_input_is_a_usage_error(tmp_path):
    reference = _dense_module(tmp_path / "m")
    np.savez(tmp_path / "s.npz", other=np.zeros((1, 3), np.float32))
    with pytest.raises(UsageError, match="no array for input\\(s\\) x"):
        verify_export(tmp_path / "m", reference, sample=tmp_path / "s.npz")

"""keras_export: signature keys and the traced SavedModel."""

from __future__ import annotations

import numpy as np
import pytest

from converters.errors import UsageError
from converters.keras.export import export_saved_model, parse_input_names, plan_signature
from converters.keras.loader import KERAS3, LoadedModel
from converters.keras.source import KerasSource


def test_input_names_in_order_or_by_current_name():
    assert parse_input_names("a, b", ["input_1", "input_2"]) == ["a", "b"]
    assert parse_input_names("input_2=b", ["input_1", "input_2"]) == ["input_1", "b"]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("a", "1 name(s) for 2 input(s)"),
        ("input_9=a", "no input named input_9"),
        ("a,input_2=b", "not both"),
    ],
)
def test_bad_input_names(text, words):
    with pytest.raises(UsageError, match=words.replace("(", r"\(").replace(")", r"\)")):
        parse_input_names(text, ["input_1", "input_2"])


def _loaded(model):
    return LoadedModel(model, KERAS3, "test", KerasSource(path=None, kind="keras", model_config={}))


def test_dict_input_model_keeps_its_keys_and_invalid_keys_are_refused(tmp_path):
    import keras
    import tensorflow as tf

    inputs = {"age": keras.Input((1,), name="age"), "city": keras.Input((2,), name="city")}
    merged = keras.layers.Concatenate()([inputs["age"], inputs["city"]])
    model = keras.Model(inputs, keras.layers.Dense(1, name="score")(merged))
    plan = plan_signature(_loaded(model))
    assert [s.key for s in plan.inputs] == ["age", "city"]
    assert plan.input_structure == "dict"
    outputs = export_saved_model(_loaded(model), plan, tmp_path / "export")
    assert [o.describe() for o in outputs] == ["score: float32 [?, 1]"]

    feeds = {"age": np.ones((2, 1), np.float32), "city": np.zeros((2, 2), np.float32)}
    fn = tf.saved_model.load(str(tmp_path / "export")).signatures["serving_default"]
    got = fn(**{k: tf.constant(v) for k, v in feeds.items()})["score"].numpy()
    np.testing.assert_allclose(got, model(feeds, training=False).numpy(), atol=1e-6)

    with pytest.raises(UsageError, match="not valid as a signature key"):
        plan_signature(_loaded(model), input_names="has space,ok")
    with pytest.raises(UsageError, match="must be unique"):
        plan_signature(_loaded(model), input_names="x,x")


def test_subclassed_model_without_inputs_is_refused_with_advice():
    import keras

    from converters.errors import ConversionError

    class Scorer(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(1)

        def call(self, x):
            return self.dense(x)

    model = Scorer()
    model(np.ones((1, 2), np.float32))
    with pytest.raises(ConversionError, match="subclassed model"):
        plan_signature(_loaded(model))


def test_tf_keras_lookup_table_travels_with_the_export(tmp_path):
    import tf_keras

    from converters.keras.export import reference_fn
    from converters.keras.loader import TF_KERAS
    from converters.verify import verify_export

    city = tf_keras.Input((1,), dtype="string", name="city")
    index = tf_keras.layers.StringLookup(vocabulary=["paris", "oslo"])(city)
    model = tf_keras.Model(city, tf_keras.layers.Dense(1, name="score")(tf_keras.layers.Flatten()(tf_keras.layers.Embedding(4, 2)(index))))  # fmt: skip
    loaded = LoadedModel(
        model, TF_KERAS, "test", KerasSource(path=None, kind="h5", model_config={})
    )
    plan = plan_signature(loaded)
    export_saved_model(loaded, plan, tmp_path / "export")
    report = verify_export(tmp_path / "export", reference_fn(loaded, plan))  # TF1 session too
    assert report.ok

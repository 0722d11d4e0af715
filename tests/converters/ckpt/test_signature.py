"""Choosing signature tensors in a TF1 graph: flags, partial flags, and their errors."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from converters.ckpt.loader import import_graph, locate_checkpoint, read_meta_graph
from converters.ckpt.plan import TensorDesc, key_for
from converters.ckpt.signature import parse_fixed_value, resolve
from converters.errors import UsageError


@pytest.fixture(scope="module")
def training_graph(training_ckpt):
    files = locate_checkpoint(training_ckpt.prefix)
    graph = tf.Graph()
    with graph.as_default():
        import_graph(files)
    return graph, read_meta_graph(files)


def test_output_alone_brings_in_the_inputs_it_needs(training_graph):
    graph, meta = training_graph
    plan = resolve(graph, meta, {}, {"p": "probs"}, {"is_training": "false"})
    assert plan.inputs == {"Placeholder": "Placeholder:0"}
    assert plan.outputs == {"p": "probs:0"}
    assert plan.fixed["is_training:0"].dtype == np.bool_
    assert not plan.fixed["is_training:0"]


def test_output_needing_an_unfed_placeholder_names_it_and_the_fix(training_graph):
    graph, meta = training_graph
    with pytest.raises(UsageError) as info:
        resolve(graph, meta, {"x": "Placeholder:0"}, {"loss": "loss:0"}, {"is_training": "0"})
    text = str(info.value)
    assert "needs Placeholder_1:0 (int64 [?])" in text
    assert "--input Placeholder_1=Placeholder_1:0" in text


def test_same_tensor_as_input_and_fixed_is_refused(training_graph):
    graph, meta = training_graph
    with pytest.raises(UsageError, match="both an --input and --fixed"):
        resolve(graph, meta, {"t": "is_training"}, {"p": "probs"}, {"is_training": "false"})


@pytest.mark.parametrize(
    ("dtype", "shape", "text", "expected"),
    [
        ("bool", (), "true", True),
        ("bool", (), "0", False),
        ("float32", (), "0.5", 0.5),
        ("int64", (2,), "[1, 2]", [1, 2]),
    ],
)
def test_fixed_values_take_the_tensor_dtype(dtype, shape, text, expected):
    value = parse_fixed_value(text, TensorDesc("t:0", dtype, shape))
    assert value.dtype == np.dtype(dtype)
    assert value.tolist() == expected


def test_fixed_value_of_the_wrong_rank_is_refused():
    with pytest.raises(UsageError, match=r"has shape \[\], the value has 1 dimension"):
        parse_fixed_value("[1.0]", TensorDesc("keep_prob:0", "float32", ()))


def test_keys_are_readable_and_mode_flags_are_recognised():
    assert key_for("tower/probs:0") == "tower_probs"
    assert key_for("IteratorGetNext:1") == "IteratorGetNext_1"
    assert TensorDesc("is_training:0", "bool", ()).looks_like_mode_flag
    assert TensorDesc("keep_prob:0", "float32", ()).looks_like_mode_flag
    assert not TensorDesc("Placeholder:0", "float32", None).looks_like_mode_flag

"""Probe values taken from the graph: table keys, vocabulary files and embedding ranges."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from converters.ckpt.plan import SignaturePlan, describe
from converters.ckpt.probes import find_probes, shown
from devtools.ckpt_models import VOCAB
from tests.converters.ckpt.helpers import scratch_graph

v1 = tf.compat.v1
KNOWN = [w.encode() for w in VOCAB]


def _plan(graph: tf.Graph, inputs: dict[str, str], outputs: dict[str, str]) -> SignaturePlan:
    plan = SignaturePlan(inputs, outputs)
    for name in [*inputs.values(), *outputs.values()]:
        plan.descs[name] = describe(graph, name)
    return plan


def _pools(graph, inputs, outputs) -> dict[str, list]:
    probes = find_probes(graph, _plan(graph, inputs, outputs))
    return {k: v.tolist() for k, v in probes.pools().items()}


def test_string_input_is_probed_with_the_keys_of_its_hash_table_and_one_unknown(vocab_ckpt):
    graph = scratch_graph(vocab_ckpt)
    probes = find_probes(graph, _plan(graph, {"words": "words:0"}, {"score": "score:0"}))
    assert probes.pools()["words"].tolist() == [*KNOWN, b"<unknown>"]
    assert probes.lines() == [
        "words <- 'apple', 'banana', 'cherry', 'durian', '<unknown>' "
        "(keys of table hash_table, 4 in all)"
    ]
    assert probes.needs == {"score": ("words",)}


def test_keys_are_found_through_any_path_from_the_input_to_the_lookup(vocab_ckpt):
    # default_only looks up words + "#": the same table's keys are what it could match.
    graph = scratch_graph(vocab_ckpt)
    assert _pools(graph, {"words": "words:0"}, {"d": "default_only:0"}) == {
        "words": [*KNOWN, b"<unknown>"]
    }
    # ignores never reaches the table: nothing is known, and a string input says so.
    probes = find_probes(graph, _plan(graph, {"words": "words:0"}, {"i": "ignores:0"}))
    assert probes.pools() == {}
    assert probes.unprobed_strings(["words"]) == ["words"]


def test_vocabulary_file_keys_are_read_from_the_file(vocab_file_ckpt):
    graph = scratch_graph(vocab_file_ckpt)
    probes = find_probes(graph, _plan(graph, {"words": "words:0"}, {"score": "score:0"}))
    assert probes.pools()["words"].tolist() == [*KNOWN, b"<unknown>"]
    assert "vocabulary file words.vocab of table hash_table, 4 keys" in probes.lines()[0]


def test_id_input_is_probed_within_the_rows_of_its_embedding(id_ckpt):
    graph = scratch_graph(id_ckpt)
    probes = find_probes(graph, _plan(graph, {"item": "item:0"}, {"score": "score:0"}))
    assert probes.pools()["item"].tolist() == [0, 1, 2, 3, 4, 5]
    assert probes.pools()["item"].dtype == np.int64
    assert probes.bounds().keys() == {"item"}
    assert probes.lines() == ["item <- 0, 1, 2, 3, 4, … (6 values) (ids of items, 6 rows)"]


def test_only_tables_the_outputs_read_are_used_and_big_ones_are_sampled_evenly():
    graph = tf.Graph()
    with graph.as_default():
        words = v1.placeholder(tf.string, [None], name="words")
        big = [f"w{i:03d}" for i in range(100)]
        table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(big, tf.range(100, dtype=tf.int64)), -1
        )
        other = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(["red", "green"], [1.0, 2.0]), 0.0
        )
        tf.identity(tf.cast(table.lookup(words), tf.float32), name="score")
        tf.identity(other.lookup(words), name="colour_score")
    pools = _pools(graph, {"words": "words:0"}, {"score": "score:0"})
    spread = [b"w000", b"w016", b"w033", b"w050", b"w066", b"w082", b"w099"]
    assert pools["words"] == [*spread, b"<unknown>"]  # first and last, evenly between
    both = _pools(graph, {"words": "words:0"}, {"a": "score:0", "b": "colour_score:0"})
    assert {b"red", b"green", b"w000"} <= set(both["words"])  # each table shows
    assert len(both["words"]) == 8


def test_integer_keys_get_an_unknown_one_past_the_largest():
    graph = tf.Graph()
    with graph.as_default():
        user = v1.placeholder(tf.int64, [None], name="user")
        table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant([1001, 2002, 3003], tf.int64), tf.constant([0.5, 1.5, 2.5])
            ),
            -1.0,
        )
        tf.identity(table.lookup(user), name="boost")
    assert _pools(graph, {"user": "user:0"}, {"boost": "boost:0"}) == {
        "user": [1001, 2002, 3003, 3004]
    }


def test_feature_columns_reduce_to_the_same_tables_and_embeddings():
    graph = tf.Graph()
    with graph.as_default():
        fc = v1.feature_column
        features = {
            "words": v1.placeholder(tf.string, [None, 1], name="words"),
            "item": v1.placeholder(tf.int64, [None, 1], name="item"),
        }
        columns = [
            fc.embedding_column(
                fc.categorical_column_with_vocabulary_list("words", ["p", "q"], num_oov_buckets=1),
                2,
            ),
            fc.embedding_column(fc.categorical_column_with_identity("item", 4), 2),
        ]
        tf.identity(fc.input_layer(features, columns), name="out")
    assert _pools(graph, {"words": "words:0", "item": "item:0"}, {"out": "out:0"}) == {
        "words": [b"p", b"q", b"<unknown>"],
        "item": [0, 1, 2, 3],
    }


def test_a_table_with_computed_keys_is_reported_as_unread(unread_vocab_ckpt):
    graph = scratch_graph(unread_vocab_ckpt)
    probes = find_probes(graph, _plan(graph, {"words": "words:0"}, {"score": "score:0"}))
    assert probes.pools() == {}
    (reason,) = probes.unread(["words"])["words"]
    assert reason.startswith("table hash_table (HashTableV2) has no constant keys")
    assert probes.unprobed_strings(["words"]) == []  # a table was found, just not readable


def test_values_are_shown_few_and_short():
    values = np.array([b"a" * 40, b"b", b"c", b"d", b"e", b"f"], dtype=object)
    assert shown(values) == "'aaaaaaaaaaaaaaaaaaaaaaa…', 'b', 'c', 'd', 'e', … (6 values)"
    assert shown(np.array([3, 4])) == "3, 4"

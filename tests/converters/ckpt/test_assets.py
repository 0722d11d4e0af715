"""Vocabulary files a graph's tables read: found, and checked before anything is written."""

from __future__ import annotations

import pytest
import tensorflow as tf

from converters.ckpt.assets import asset_tensors, check_assets
from converters.errors import UsageError

v1 = tf.compat.v1


def _file_table_graph(path: str) -> tf.Graph:
    graph = tf.Graph()
    with graph.as_default():
        words = v1.placeholder(tf.string, [None], name="words")
        table = tf.lookup.StaticHashTable(
            tf.lookup.TextFileInitializer(
                path,
                tf.string,
                tf.lookup.TextFileIndex.WHOLE_LINE,
                tf.int64,
                tf.lookup.TextFileIndex.LINE_NUMBER,
            ),
            -1,
            name="vocab",
        )
        table.lookup(words, name="ids")
    return graph


def test_vocabulary_files_are_found_even_outside_the_asset_collection(tmp_path):
    vocab = tmp_path / "words.vocab"
    vocab.write_text("apple\nbanana\n")
    graph = _file_table_graph(str(vocab))
    assert [t.name for t in asset_tensors(graph)] == ["asset_path:0"]
    graph.clear_collection("asset_filepaths")  # as a hand-built graph might leave it
    assert [t.name for t in asset_tensors(graph)] == ["asset_path:0"]
    assert check_assets(graph) == [str(vocab)]


def test_a_missing_vocabulary_file_names_the_table_and_the_path(tmp_path):
    missing = tmp_path / "gone.vocab"
    with pytest.raises(UsageError) as info:
        check_assets(_file_table_graph(str(missing)))
    assert str(info.value) == (
        f"table vocab reads its vocabulary from {missing}, which is not there; put the file "
        "back at that path (the graph records it) and convert again"
    )
    assert info.value.exit_code == 2

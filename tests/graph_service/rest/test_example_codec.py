"""classify/regress `examples` JSON -> tf.Example protos (api_rest.md Classify and Regress API)."""

from __future__ import annotations

import pytest
from tensorflow.core.example import example_pb2

from graph_service.rest.example_codec import decode_examples
from tfs_protocol.errors import CodecError


def parse(serialized: bytes) -> example_pb2.Example:
    example = example_pb2.Example()
    example.ParseFromString(serialized)
    return example


def test_feature_kinds_follow_json_types():
    """Strings/b64 -> bytes_list, integers -> int64_list, fractional numbers -> float_list."""
    doc = {"examples": [{"s": "hi", "b": {"b64": "AAE="}, "i": [1, 2], "f": [1, 2.5]}]}
    (serialized,) = decode_examples(doc)
    feature = parse(serialized).features.feature
    assert feature["s"].bytes_list.value == [b"hi"]
    assert feature["b"].bytes_list.value == [b"\x00\x01"]
    assert feature["i"].int64_list.value == [1, 2]
    assert list(feature["f"].float_list.value) == [1.0, 2.5]


def test_context_joins_every_example_and_examples_win():
    doc = {"context": {"c": "ctx", "x": 1.5}, "examples": [{"x": 2.5}, {}]}
    first, second = (parse(s).features.feature for s in decode_examples(doc))
    assert first["c"].bytes_list.value == [b"ctx"] and first["x"].float_list.value == [2.5]
    assert second["x"].float_list.value == [1.5]


@pytest.mark.parametrize(
    ("doc", "fragment"),
    [
        ({}, "'examples'"),
        ({"examples": []}, "No values"),
        ({"examples": [1]}, "to be an object"),
        ({"examples": [{"x": ["a", 1]}]}, "of one kind"),
        ({"examples": [{"x": []}]}, "empty list"),
        ({"context": [], "examples": [{}]}, "'context'"),
    ],
)
def test_bad_examples_are_invalid_argument(doc, fragment):
    with pytest.raises(CodecError) as info:
        decode_examples(doc)
    assert fragment in str(info.value)

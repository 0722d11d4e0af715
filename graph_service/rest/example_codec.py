"""TF Serving's classify/regress JSON: `context` + `examples` -> serialized tf.Example protos.

Feature values follow json_tensor.cc: strings and `{"b64": ...}` become bytes_list, integers
int64_list, numbers with a fraction float_list; a value or a list of values per feature.
Context features are merged into every example (the example wins on a shared key).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

import numpy as np

from tfs_protocol.json_codec import CodecError, _is_b64, _show


def decode_examples(doc: Mapping[str, Any]) -> np.ndarray:
    """The request's examples as a 1-D object array of serialized tf.Example bytes."""
    from tensorflow.core.example import example_pb2

    examples = doc.get("examples")
    if not isinstance(examples, list):
        raise CodecError(f"JSON Value: {_show(doc)} Excepting 'examples' to be an list/array")
    if not examples:
        raise CodecError(f"JSON Value: {_show(doc)} No values in 'examples' array")
    context = doc.get("context", {})
    if not isinstance(context, dict):
        raise CodecError(f"JSON Value: {_show(context)} Excepting 'context' to be an object")
    serialized = np.empty(len(examples), dtype=object)
    for index, item in enumerate(examples):
        if not isinstance(item, dict):
            raise CodecError(
                f"JSON Value: {_show(item)} Excepting item {index} of 'examples' to be an object"
            )
        example = example_pb2.Example()
        for key, value in {**context, **item}.items():
            _fill_feature(example.features.feature[key], key, value)
        serialized[index] = example.SerializeToString()
    return serialized


def _fill_feature(feature: Any, key: str, value: Any) -> None:
    values = value if isinstance(value, list) else [value]
    if not values:
        raise CodecError(f"Feature: {key} has an empty list; give at least one value")
    if all(isinstance(v, str) or _is_b64(v) for v in values):
        feature.bytes_list.value.extend(_bytes(v) for v in values)
    elif all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        feature.int64_list.value.extend(values)
    elif all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        feature.float_list.value.extend(float(v) for v in values)
    else:
        raise CodecError(
            f"Feature: {key} JSON Value: {_show(value)} must be numbers, strings or "
            '{"b64": ...} values of one kind'
        )


def _bytes(value: Any) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    try:
        return base64.b64decode(value["b64"], validate=True)
    except (binascii.Error, ValueError):
        raise CodecError("Unable to base64 decode") from None

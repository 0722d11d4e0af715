"""TF Serving's gRPC wire format: TensorProtos, tf.Example inputs and result messages.

Requests are decoded with `tf.make_ndarray`, so every encoding a client may send (typed
`*_val` fields, a single broadcast value, packed `tensor_content`) reads the same way.
Answers are written as TF Serving writes them by default (`Tensor::AsProtoField` in
tensorflow_serving/servables/tensorflow/predict_util.cc): values in the typed `*_val`
field, not packed bytes, so clients that read `float_val` directly keep working.
Messages follow TF Serving's (predict_util.cc, saved_model/util.cc, input_util.cc).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from graph_service.errors import InvalidArgumentError
from graph_service.grpc.errors import CODE_NUMBERS

# TensorProto field TF Serving fills for each dtype (tensorflow/core/framework/tensor.proto).
_VALUE_FIELDS: dict[str, str] = {
    "DT_FLOAT": "float_val",
    "DT_DOUBLE": "double_val",
    "DT_INT8": "int_val",
    "DT_INT16": "int_val",
    "DT_INT32": "int_val",
    "DT_UINT8": "int_val",
    "DT_UINT16": "int_val",
    "DT_INT64": "int64_val",
    "DT_UINT32": "uint32_val",
    "DT_UINT64": "uint64_val",
    "DT_BOOL": "bool_val",
    "DT_HALF": "half_val",
    "DT_BFLOAT16": "half_val",
    "DT_COMPLEX64": "scomplex_val",
    "DT_COMPLEX128": "dcomplex_val",
}

# ModelVersionStatus.State numbers (tensorflow_serving/apis/get_model_status.proto).
STATE_NUMBERS: dict[str, int] = {
    "UNKNOWN": 0,
    "START": 10,
    "LOADING": 20,
    "AVAILABLE": 30,
    "UNLOADING": 40,
    "END": 50,
}


def fill_model_spec(
    spec: Any, name: str, version: int | None, signature_name: str | None = None
) -> None:
    """The `model_spec` every answer echoes: name, served version, resolved signature."""
    spec.name = name
    if version is not None:
        spec.version.value = version
    if signature_name is not None:
        spec.signature_name = signature_name


def _join(keys: Any) -> str:
    return ",".join(sorted(keys))


def decode_inputs(tensors: Mapping[str, Any], signature: Any) -> dict[str, np.ndarray]:
    """Request TensorProtos as arrays, checked against the signature's input aliases."""
    import tensorflow as tf

    sent, expected = set(tensors), set(signature.inputs)
    if len(sent) != len(expected):
        raise InvalidArgumentError(
            f"input size does not match signature: {len(sent)}!={len(expected)} "
            f"len({{{_join(sent)}}}) != len({{{_join(expected)}}}). "
            f"Sent extra: {{{_join(sent - expected)}}}. "
            f"Missing but required: {{{_join(expected - sent)}}}."
        )
    for alias in sorted(sent - expected):
        raise InvalidArgumentError(
            f"input tensor alias not found in signature: {alias}. "
            f"Inputs expected to be in the set {{{_join(expected)}}}."
        )
    arrays = {}
    for alias in sorted(tensors):
        try:
            arrays[alias] = tf.make_ndarray(tensors[alias])
        except (TypeError, ValueError, KeyError) as exc:
            reason = " ".join(str(exc).split())[:200]
            raise InvalidArgumentError(f"tensor parsing error: {alias} ({reason})") from None
    return arrays


def output_aliases(output_filter: Any, signature: Any) -> list[str]:
    """The outputs to return: `output_filter` in its order, or every signature output."""
    seen: list[str] = []
    for alias in output_filter:
        if alias not in signature.outputs:
            raise InvalidArgumentError(
                f"output tensor alias not found in signature: {alias} "
                f"Outputs expected to be in the set {{{_join(signature.outputs)}}}."
            )
        if alias in seen:
            raise InvalidArgumentError(f"duplicate output tensor alias: {alias}")
        seen.append(alias)
    return seen or sorted(signature.outputs)


def encode_tensor(array: np.ndarray, proto: Any) -> None:
    """Write `array` into `proto` (a TensorProto) with its values in the typed field."""
    import tensorflow as tf
    from tensorflow.core.framework import types_pb2

    proto.CopyFrom(tf.make_tensor_proto(array))
    if not proto.tensor_content:
        return
    field = _VALUE_FIELDS.get(types_pb2.DataType.Name(proto.dtype))
    if field is None:
        return  # no typed field for this dtype: packed bytes are the only form
    flat = np.ascontiguousarray(array).reshape(-1)
    if field == "half_val":
        values = flat.view(np.uint16)
    elif field in ("scomplex_val", "dcomplex_val"):
        values = np.stack([flat.real, flat.imag], axis=-1).reshape(-1)
    else:
        values = flat
    proto.ClearField("tensor_content")
    getattr(proto, field).extend(values.tolist())


def serialized_examples(input_proto: Any) -> np.ndarray:
    """An `Input` (example_list or example_list_with_context) as serialized tf.Examples.

    With a context, each example is the context merged with the example (the example wins
    on a shared feature), as TF Serving's input_util.cc serializes them.
    """
    kind = input_proto.WhichOneof("kind")
    if kind == "example_list":
        examples, context = input_proto.example_list.examples, b""
    elif kind == "example_list_with_context":
        examples = input_proto.example_list_with_context.examples
        context = input_proto.example_list_with_context.context.SerializeToString()
    else:
        examples, context = [], b""
    if not examples:
        raise InvalidArgumentError("Input is empty.")
    serialized = np.empty(len(examples), dtype=object)
    for index, example in enumerate(examples):
        # Concatenated protobuf messages parse as one merged message.
        serialized[index] = context + example.SerializeToString()
    return serialized


def fill_classification(result: Any, classes: np.ndarray | None, scores: np.ndarray | None) -> None:
    """ClassificationResult: one Classifications per example, a (label, score) per class."""
    reference = classes if classes is not None else scores
    assert reference is not None  # handlers.classification_outputs guarantees one of them
    for row in range(reference.shape[0]):
        item = result.classifications.add()
        for column in range(reference.shape[1]):
            entry = item.classes.add()
            if classes is not None:
                label = classes[row, column]
                entry.label = (
                    label.decode("utf-8", "replace") if isinstance(label, bytes) else str(label)
                )
            if scores is not None:
                entry.score = float(scores[row, column])


def fill_regression(result: Any, values: np.ndarray) -> None:
    """RegressionResult: one value per example ([batch] or [batch, 1] outputs)."""
    for value in values.reshape(values.shape[0], -1)[:, 0]:
        result.regressions.add().value = float(value)


def fill_model_status(response: Any, status: Mapping[str, Any]) -> None:
    """GetModelStatusResponse from the registry's status body (the REST one, same facts)."""
    for entry in status["model_version_status"]:
        item = response.model_version_status.add()
        item.version = int(entry["version"])
        item.state = STATE_NUMBERS.get(entry["state"], 0)
        fill_status(item.status, entry["status"]["error_code"], entry["status"]["error_message"])


def fill_status(proto: Any, code: str, message: str) -> None:
    """A tensorflow.serving.StatusProto: the canonical code's number and the message."""
    proto.error_code = CODE_NUMBERS.get(code, CODE_NUMBERS["UNKNOWN"])
    proto.error_message = message


def signature_def_map(signature_defs: Mapping[str, Any]) -> Any:
    """Every SignatureDef of a servable as the SignatureDefMap GetModelMetadata packs."""
    from tensorflow_serving.apis import get_model_metadata_pb2

    mapping = get_model_metadata_pb2.SignatureDefMap()
    for key, signature in signature_defs.items():
        mapping.signature_def[key].CopyFrom(signature)
    return mapping

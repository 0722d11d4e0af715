"""TF Serving's REST JSON <-> numpy arrays, both ways, with TF Serving's rules and messages.

numpy, orjson and the standard library only (no TensorFlow): the graph tier decodes requests
and encodes answers with it, the logic tier encodes requests and decodes answers with it, so
the two cannot disagree. The rules follow tensorflow_serving/util/json_tensor.cc: `instances`
(row format) vs `inputs` (columnar), `{"b64": ...}` for binary strings, `*_bytes` outputs
written as b64, NaN/Infinity/-Infinity accepted as bare literals and written back the same way,
numbers beyond the double range refused (as rapidjson does), rectangular lists only.

orjson neither reads nor writes the bare literals, so both directions stay on orjson's fast
path and pay only when a literal is present: parsing retries with the standard parser when
orjson refuses the document, and encoding patches orjson's `null`s back only for a float
tensor that holds a non-finite value.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import orjson

from tfs_protocol.constants import BYTES_SUFFIX, DEFAULT_SIGNATURE
from tfs_protocol.dtypes import NUMPY_DTYPES, TYPE_NAMES, numpy_dtype
from tfs_protocol.errors import CodecError

__all__ = [
    "BYTES_SUFFIX",
    "COLUMNAR",
    "DEFAULT_SIGNATURE",
    "NUMPY_DTYPES",
    "ROW",
    "TYPE_NAMES",
    "CodecError",
]

ROW = "row"
COLUMNAR = "columnar"

_NUMPY_OPTS = orjson.OPT_SERIALIZE_NUMPY
_NULL = re.compile(rb"null")
_DOUBLE_MAX = int(np.finfo(np.float64).max)


# ----------------------------------------------------------------------------- parsing


def parse_json(body: bytes) -> dict:
    """Parse a request body; like rapidjson with kParseNanAndInfFlag, NaN/Infinity are allowed."""
    if not body or not body.strip():
        raise CodecError("JSON Parse error: The document is empty")
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        # orjson is strict JSON; the standard parser also takes NaN, Infinity, -Infinity,
        # but would turn 1e400 into inf, which rapidjson refuses (kParseErrorNumberTooBig).
        try:
            doc = json.loads(body, parse_float=_finite_float, parse_int=_finite_int)
        except _NumberTooBigError as exc:
            raise CodecError(
                f"JSON Parse error: Number too big to be stored in double: {exc}; "
                "numbers must lie within +-1.7976931348623157e308 (write Infinity for infinity)"
            ) from None
        except RecursionError:
            raise CodecError("JSON Parse error: document nested too deeply") from None
        except ValueError as exc:
            raise CodecError(f"JSON Parse error: {exc}") from None
    if not isinstance(doc, dict):
        raise CodecError(f"JSON Value: {_show(doc)} Is not object")
    return doc


class _NumberTooBigError(ValueError):
    """A JSON number literal beyond the double range (the literal, shortened, is the message)."""


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (math.inf, -math.inf):
        raise _NumberTooBigError(_shorten(text))
    return value


def _finite_int(text: str) -> int:
    value = int(text)
    if abs(value) > _DOUBLE_MAX:
        raise _NumberTooBigError(_shorten(text))
    return value


def _shorten(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def signature_name(doc: Mapping[str, Any]) -> str:
    """The requested signature key (`serving_default` when absent or empty)."""
    name = doc.get("signature_name", "")
    if not isinstance(name, str):
        raise CodecError(
            f"JSON Value: {_show(doc)} not formatted correctly. "
            "'signature_name' key must be a string value."
        )
    return name or DEFAULT_SIGNATURE


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def _is_named(value: Any) -> bool:
    return isinstance(value, dict) and not _is_b64(value)


def decode_predict_request(
    doc: Mapping[str, Any], input_dtypes: Mapping[str, str]
) -> tuple[str, dict[str, np.ndarray]]:
    """(format, {input key: array}) from a predict body, for a signature's input dtypes."""
    if not input_dtypes:
        raise CodecError("Failed to get input map for signature")
    has_instances, has_inputs = "instances" in doc, "inputs" in doc
    if has_instances and has_inputs:
        raise CodecError(
            f"JSON Value: {_show(doc)} Not formatted correctly expecting only one of "
            "'inputs' or 'instances' keys to exist "
        )
    if has_instances:
        return ROW, _decode_instances(doc["instances"], input_dtypes, doc)
    if has_inputs:
        return COLUMNAR, _decode_inputs(doc["inputs"], input_dtypes)
    raise CodecError("Missing 'inputs' or 'instances' key")


def _decode_instances(
    instances: Any, dtypes: Mapping[str, str], doc: Mapping[str, Any]
) -> dict[str, np.ndarray]:
    if not isinstance(instances, list):
        raise CodecError(f"JSON Value: {_show(doc)} Excepting 'instances' to be an list/array")
    if not instances:
        raise CodecError(f"JSON Value: {_show(doc)} No values in 'instances' array")
    if not _is_named(instances[0]):
        if len(dtypes) > 1:
            raise CodecError(
                "instances is a plain list, but expecting list of objects as multiple input "
                "tensors required as per tensorinfo_map"
            )
        for index, item in enumerate(instances):
            if _is_named(item):
                raise CodecError(
                    f"Expecting value/list but got object at item {index} of input list"
                )
        ((name, dtype),) = dtypes.items()
        return {name: _batch_array(instances, dtype, name, named=False)}

    names = set(dtypes)
    columns: dict[str, list] = {name: [] for name in dtypes}
    for index, item in enumerate(instances):
        if not _is_named(item):
            raise CodecError(f"Expecting object but got list at item {index} of input list")
        if item.keys() != names:
            raise CodecError(
                f"Failed to process element: {index} of 'instances' list. JSON object: "
                f"{_show(item)} keys must be equal to: {','.join(sorted(names))}"
            )
        for name in dtypes:
            columns[name].append(item[name])
    return {name: _batch_array(columns[name], dtypes[name], name, named=True) for name in dtypes}


def _batch_array(items: list, dtype: str, name: str, *, named: bool) -> np.ndarray:
    """Stack per-instance values; on failure say which instance broke the pattern."""
    try:
        return to_array(items, dtype)
    except CodecError as exc:
        first = _shape(items[0])
        for index, item in enumerate(items):
            try:
                shape = _shape(item)
            except CodecError:
                shape = None
            if shape != first:
                key = f" key: {name}" if named else ""
                raise CodecError(
                    f"Failed to process element: {index}{key} of 'instances' list. Error: "
                    f"Expecting shape {_dims(first)} but got: {_dims(shape)}"
                ) from None
        raise exc from None


def _decode_inputs(inputs: Any, dtypes: Mapping[str, str]) -> dict[str, np.ndarray]:
    if not _is_named(inputs):
        if len(dtypes) > 1:
            raise CodecError(
                "inputs is a plain value/list, but expecting an object as multiple input "
                "tensors required as per tensorinfo_map"
            )
        ((name, dtype),) = dtypes.items()
        return {name: to_array(inputs, dtype)}
    tensors = {}
    for name, dtype in dtypes.items():
        if name not in inputs:
            raise CodecError(f"Missing named input: {name} in 'inputs' object.")
        tensors[name] = to_array(inputs[name], dtype)
    return tensors


def to_array(value: Any, dtype: str) -> np.ndarray:
    """A JSON value (scalar or nested lists) as an array of the TF dtype `DT_...`."""
    if dtype == "DT_STRING":
        return _string_array(value)
    target = numpy_dtype(dtype)
    try:
        raw = np.asarray(value)
    except (ValueError, OverflowError, TypeError):
        raise CodecError(_ragged_message(value)) from None
    kind = raw.dtype.kind
    target_kind = np.dtype(target).kind
    if kind in "Of" and target_kind in "iu":
        # numpy turns integers past int64 (a uint64 above 2**63) into float or object.
        return _big_integers(value, dtype, np.dtype(target))
    if kind not in _ACCEPTED_KINDS[target_kind]:
        raise _type_error(value, dtype, target_kind)
    if raw.size:
        _check_range(raw, np.dtype(target), dtype)
    return raw.astype(target, copy=False)


def _big_integers(value: Any, dtype: str, target: np.dtype) -> np.ndarray:
    info = np.iinfo(target)
    for leaf in _leaves(value):
        if isinstance(leaf, bool) or not isinstance(leaf, int):
            raise _type_error(value, dtype, target.kind)
        if not info.min <= leaf <= info.max:
            raise CodecError(
                f"JSON Value: {leaf} Type: Number is not of expected type: {_type_name(dtype)}"
            )
    return np.array(value, dtype=target)


# Which numpy kinds (from parsing JSON) each target kind accepts, as rapidjson's Is*() do.
_ACCEPTED_KINDS = {"f": "iuf", "i": "iu", "u": "iu", "b": "b"}


def _check_range(raw: np.ndarray, target: np.dtype, dtype: str) -> None:
    kind = raw.dtype.kind
    if target.kind == "f":
        if kind in "iu":
            limit = 2 ** np.finfo(target).nmant * 2 - 1
            worst = int(np.abs(raw).max())
            if worst > limit:
                raise CodecError(
                    f"Cannot convert JSON value: {worst} to {_FLOAT_NAMES[dtype]} without loss of precision."
                )
        elif target.itemsize < raw.dtype.itemsize:
            finite = raw[np.isfinite(raw)]
            if finite.size and np.abs(finite).max() > np.finfo(target).max:
                worst = finite[np.argmax(np.abs(finite))]
                raise CodecError(
                    f"Cannot convert JSON value: {worst!r} to {_FLOAT_NAMES[dtype]} without loss of precision."
                )
        return
    if target.kind in "iu":
        info = np.iinfo(target)
        low, high = raw.min(), raw.max()
        if low < info.min or high > info.max:
            bad = low if low < info.min else high
            raise CodecError(
                f"JSON Value: {int(bad)} Type: Number is not of expected type: {_type_name(dtype)}"
            )


_FLOAT_NAMES = {"DT_FLOAT": "float", "DT_HALF": "float", "DT_DOUBLE": "double"}


def _type_error(value: Any, dtype: str, target_kind: str) -> CodecError:
    """TF Serving's message for the first element of the wrong JSON type."""
    for leaf in _leaves(value):
        if _leaf_fits(leaf, target_kind):
            continue
        return CodecError(
            f"JSON Value: {_show(leaf)} Type: {_json_type(leaf)} is not of expected type: "
            f"{_type_name(dtype)}"
        )
    return CodecError(f"JSON Value: {_show(value)} is not of expected type: {_type_name(dtype)}")


def _type_name(dtype: str) -> str:
    return TYPE_NAMES.get(dtype, dtype)


def _leaf_fits(leaf: Any, target_kind: str) -> bool:
    if isinstance(leaf, bool):
        return target_kind == "b"
    if isinstance(leaf, int):
        return target_kind in "fiu"
    if isinstance(leaf, float):
        return target_kind == "f"
    return False


def _leaves(value: Any):
    if isinstance(value, list):
        for item in value:
            yield from _leaves(item)
    else:
        yield value


def _json_type(value: Any) -> str:
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, int | float):
        return "Number"
    if isinstance(value, str):
        return "String"
    if isinstance(value, list):
        return "Array"
    return "Object"


def _shape(value: Any) -> tuple[int, ...]:
    """Shape of a rectangular nested list; CodecError when ragged."""
    if not isinstance(value, list):
        return ()
    if not value:
        return (0,)
    inner = _shape(value[0])
    for item in value[1:]:
        if _shape(item) != inner:
            raise CodecError(_ragged_message(value))
    return (len(value), *inner)


def _ragged_message(value: Any) -> str:
    return (
        "Encountered list at unexpected size or level: lists must be rectangular "
        f"(every row the same length and nesting), got {_show(value)}"
    )


def _dims(shape: tuple[int, ...] | None) -> str:
    return "[?]" if shape is None else "[" + ",".join(str(d) for d in shape) + "]"


def _string_array(value: Any) -> np.ndarray:
    shape = _shape(value)
    flat = [_to_bytes(leaf) for leaf in _leaves(value)]
    array = np.empty(len(flat), dtype=object)
    array[:] = flat
    return array.reshape(shape)


def _to_bytes(leaf: Any) -> bytes:
    if isinstance(leaf, str):
        return leaf.encode("utf-8")
    if _is_b64(leaf):
        try:
            return base64.b64decode(leaf["b64"], validate=True)
        except (binascii.Error, ValueError):
            raise CodecError("Unable to base64 decode") from None
    if isinstance(leaf, dict):
        raise CodecError(f"JSON Value: {_show(leaf)} not formatted correctly for base64 data")
    raise CodecError(
        f"JSON Value: {_show(leaf)} Type: {_json_type(leaf)} is not of expected type: string"
    )


def _show(value: Any, limit: int = 200) -> str:
    """A value as JSON for an error message, cut short so errors stay one readable line."""
    try:
        text = json.dumps(value, separators=(",", ":"), default=str)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ----------------------------------------------------------------------------- encoding


def tensor_json(array: np.ndarray, as_b64: bool = False) -> bytes:
    """One tensor as JSON. Floats keep float32 precision; NaN/Infinity as TF Serving writes them."""
    array = np.asarray(array)
    if array.dtype == object or array.dtype.kind in "SU":
        return orjson.dumps(_strings_to_json(np.asarray(array, dtype=object).tolist(), as_b64))
    array = np.asarray(array)
    if array.dtype.kind == "f" and array.dtype.itemsize < 4:
        array = array.astype(np.float32)
    # orjson takes C-contiguous arrays, and numpy scalars (not 0-d arrays) for rank 0.
    value = array[()] if array.ndim == 0 else np.ascontiguousarray(array)
    text = orjson.dumps(value, option=_NUMPY_OPTS)
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        # orjson writes non-finite floats as null; put TF Serving's literals back in order.
        specials = iter([_special(v) for v in array[~np.isfinite(array)].ravel()])
        text = _NULL.sub(lambda _: next(specials), text)
    return text


def _special(value: float) -> bytes:
    if np.isnan(value):
        return b"NaN"
    return b"-Infinity" if value < 0 else b"Infinity"


def _strings_to_json(value: Any, as_b64: bool) -> Any:
    if isinstance(value, list):
        return [_strings_to_json(item, as_b64) for item in value]
    if isinstance(value, str):
        value = value.encode("utf-8")
    if as_b64:
        return {"b64": base64.b64encode(value).decode("ascii")}
    return value.decode("utf-8", errors="replace")


def _fragment(name: str, array: np.ndarray) -> orjson.Fragment:
    return orjson.Fragment(tensor_json(array, name.endswith(BYTES_SUFFIX)))


def encode_predict_response(outputs: Mapping[str, np.ndarray], fmt: str) -> bytes:
    """`{"predictions": ...}` for row requests, `{"outputs": ...}` for columnar ones."""
    if not outputs:
        raise CodecError("Cannot convert empty tensor map to JSON")
    if fmt == COLUMNAR:
        if len(outputs) == 1:
            ((name, array),) = outputs.items()
            return orjson.dumps({"outputs": _fragment(name, array)})
        return orjson.dumps({"outputs": {n: _fragment(n, a) for n, a in outputs.items()}})

    batch = -1
    for name, array in outputs.items():
        if array.ndim == 0:
            raise CodecError(f"Tensor name: {name} has no shape information ")
        if batch >= 0 and array.shape[0] != batch:
            raise CodecError(
                f"Tensor name: {name} has inconsistent batch size: {array.shape[0]} "
                f"expecting: {batch}"
            )
        batch = array.shape[0]
    if len(outputs) == 1:
        # One output: the rows of that tensor are the predictions, i.e. the tensor itself.
        ((name, array),) = outputs.items()
        return orjson.dumps({"predictions": _fragment(name, array)})
    rows = [{n: _fragment(n, a[i, ...]) for n, a in outputs.items()} for i in range(batch)]
    return orjson.dumps({"predictions": rows})


def encode_classification(labels: np.ndarray | None, scores: np.ndarray | None) -> bytes:
    """`{"results": [[[label, score], ...], ...]}`: one list of pairs per example."""
    reference = scores if scores is not None else labels
    results = []
    for row in range(reference.shape[0]):
        count = reference.shape[1]
        pairs = []
        for column in range(count):
            label = "" if labels is None else _strings_to_json(labels[row, column], False)
            score = (
                orjson.Fragment(b"0.0")
                if scores is None
                else orjson.Fragment(tensor_json(scores[row, column]))
            )
            pairs.append([label, score])
        results.append(pairs)
    return orjson.dumps({"results": results})


def encode_regression(values: np.ndarray) -> bytes:
    """`{"results": [v, ...]}`: one value per example."""
    return orjson.dumps({"results": orjson.Fragment(tensor_json(values.reshape(-1)))})


def encode_json(document: Any) -> bytes:
    """Plain JSON for status and metadata bodies."""
    return orjson.dumps(document)


# ----------------------------------------------------------------------------- client side


def encode_predict_request(
    inputs: Mapping[str, np.ndarray], signature_name: str = DEFAULT_SIGNATURE
) -> bytes:
    """A columnar `:predict` body, `{"signature_name": ..., "inputs": {key: tensor}}`.

    Numbers go through orjson's numpy path; NaN and infinities are written as TF Serving's bare
    literals. String tensors (object, bytes or str arrays) are written as text where they are
    valid UTF-8 and as `{"b64": ...}` where they are not (or when the key ends in `_bytes`).
    """
    tensors = {}
    for key, value in inputs.items():
        array = np.asarray(value)
        if array.dtype.kind in "OSU":
            tensors[key] = orjson.Fragment(_request_strings(key, array))
        else:
            tensors[key] = orjson.Fragment(tensor_json(array))
    return orjson.dumps({"signature_name": signature_name, "inputs": tensors})


def _request_strings(key: str, array: np.ndarray) -> bytes:
    as_b64 = key.endswith(BYTES_SUFFIX)

    def leaf(value: Any) -> Any:
        if isinstance(value, list):
            return [leaf(item) for item in value]
        if isinstance(value, str):
            return {"b64": base64.b64encode(value.encode("utf-8")).decode()} if as_b64 else value
        if isinstance(value, bytes):
            if not as_b64:
                try:
                    return value.decode("utf-8")
                except UnicodeDecodeError:
                    pass
            return {"b64": base64.b64encode(value).decode("ascii")}
        raise CodecError(
            f"input {key!r} is a string tensor but holds {type(value).__name__} {value!r}; "
            "convert the column to str or bytes"
        )

    return orjson.dumps(leaf(np.asarray(array, dtype=object).tolist()))


def decode_predict_response(
    body: bytes, output_dtypes: Mapping[str, str] | None = None
) -> np.ndarray | dict[str, np.ndarray]:
    """A `:predict` answer (`outputs` or `predictions`) as an array, or {key: array} when named.

    NaN/Infinity literals are read; `{"b64": ...}` and plain strings become object arrays of
    bytes. With `output_dtypes` ({key: 'DT_...'}) each tensor gets its signature's dtype.
    """
    doc = parse_json(body)
    if "outputs" in doc:
        value = doc["outputs"]
    elif "predictions" in doc:
        value = doc["predictions"]
    else:
        raise CodecError(f"JSON Value: {_show(doc)} has neither 'outputs' nor 'predictions'")
    dtypes = dict(output_dtypes or {})
    if isinstance(value, dict) and not _is_b64(value):
        if len(dtypes) == 1 and set(value) != set(dtypes):
            dtypes = {}
        return {key: from_json_value(tensor, dtypes.get(key)) for key, tensor in value.items()}
    only = next(iter(dtypes.values())) if len(dtypes) == 1 else None
    return from_json_value(value, only)


def from_json_value(value: Any, dtype: str | None = None) -> np.ndarray:
    """A JSON tensor as an array: of `dtype` when given, else numbers or bytes as they come."""
    if dtype is not None:
        return to_array(value, dtype)
    try:
        array = np.asarray(value)
    except (ValueError, OverflowError, TypeError):
        raise CodecError(_ragged_message(value)) from None
    if array.dtype.kind in "fO" and _first_leaf_is_int(value):
        # All-integer JSON past int64 (a uint64 output) or mixed ints and floats: numpy gave
        # float or object. Keep exact integers when every leaf is one (checked only here).
        leaves = list(_leaves(value))
        if all(isinstance(v, int) and not isinstance(v, bool) for v in leaves):
            return np.array(value, dtype=np.uint64 if min(leaves) >= 0 else np.int64)
    if array.dtype.kind in "UO":
        return _string_array(value)
    return array


def _first_leaf_is_int(value: Any) -> bool:
    while isinstance(value, list) and value:
        value = value[0]
    return isinstance(value, int) and not isinstance(value, bool)

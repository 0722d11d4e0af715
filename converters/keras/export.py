"""Write a loaded Keras model as a TF Serving SavedModel with one `serving_default` signature.

The model is wrapped in a plain tf.Module that holds only its variables, its lookup tables
and a tf.function calling it with training=False, so the export needs neither Keras nor
custom classes at load time, and Dropout/BatchNorm behave as at predict time.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from converters.errors import ConversionError, UsageError
from converters.keras.loader import LoadedModel

SIGNATURE_KEY = "serving_default"
# TensorSpec names become graph op names: the same rule as TF's op names.
_KEY = re.compile(r"^[A-Za-z0-9.][A-Za-z0-9_.\-/]*$")


@dataclass(frozen=True)
class TensorSig:
    """One signature tensor: its key, dtype name and shape (None = any size)."""

    key: str
    dtype: str
    shape: tuple[int | None, ...]

    def describe(self) -> str:
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.key}: {self.dtype} [{dims}]"


@dataclass(frozen=True)
class SignaturePlan:
    """How signature keys map onto the model's own inputs and outputs."""

    inputs: tuple[TensorSig, ...]
    outputs: tuple[str, ...]
    input_structure: str  # "single", "list" or "dict"
    dict_keys: tuple[str, ...] = ()  # the model's own input keys when it takes a dict


def _shape(tensor: Any) -> tuple[int | None, ...]:
    shape = tensor.shape
    dims = shape.as_list() if hasattr(shape, "as_list") else list(shape)
    return tuple(None if d is None else int(d) for d in dims)


def _dtype(tensor: Any) -> str:
    import tensorflow as tf

    return tf.as_dtype(tensor.dtype).name


def _tensor_name(tensor: Any) -> str:
    return str(getattr(tensor, "name", "")).split(":")[0]


def _model_input_names(model: Any) -> list[str]:
    names = getattr(model, "input_names", None)
    if isinstance(names, list | tuple) and len(names) == len(model.inputs):
        return [str(n) for n in names]
    return [_tensor_name(t) for t in model.inputs]


def _producer_name(tensor: Any) -> str:
    history = getattr(tensor, "_keras_history", None)
    producer = getattr(history, "operation", None) or getattr(history, "layer", None)
    return str(getattr(producer, "name", None) or _tensor_name(tensor))


def _model_output_names(model: Any) -> list[str]:
    structure = getattr(model, "output", None)
    if isinstance(structure, dict):
        return [str(k) for k in structure]
    names = getattr(model, "output_names", None)
    if not (isinstance(names, list | tuple) and len(names) == len(model.outputs)):
        names = [_producer_name(t) for t in model.outputs]
    unique: list[str] = []
    for name in names:
        candidate, n = str(name), 1
        while candidate in unique:
            candidate, n = f"{name}_{n}", n + 1
        unique.append(candidate)
    return unique


def _has_inputs(model: Any) -> bool:
    try:
        return bool(model.inputs)
    except (AttributeError, ValueError):  # Keras raises either for never-called models
        return False


def parse_input_names(text: str, current: Sequence[str]) -> list[str]:
    """`a,b` renames inputs in order; `input_1=a,keras_tensor=b` renames by current name."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if parts and all("=" in p for p in parts):
        mapping = dict(p.split("=", 1) for p in parts)
        unknown = [k for k in mapping if k not in current]
        if unknown:
            raise UsageError(
                f"--input-names: no input named {', '.join(unknown)}; "
                f"the model's inputs are {', '.join(current)}"
            )
        names = [mapping.get(k, k) for k in current]
    elif any("=" in p for p in parts):
        raise UsageError("--input-names: use either a,b (in order) or old=new pairs, not both")
    else:
        if len(parts) != len(current):
            raise UsageError(
                f"--input-names: got {len(parts)} name(s) for {len(current)} input(s) "
                f"({', '.join(current)}); give one name per input, in that order"
            )
        names = parts
    return names


def _check_keys(keys: Sequence[str], what: str) -> None:
    bad = [k for k in keys if not _KEY.match(k)]
    if bad:
        raise UsageError(
            f"{what} {', '.join(repr(k) for k in bad)} not valid as a signature key; "
            "use letters, digits, '_', '.', '-' or '/'"
        )
    if len(set(keys)) != len(keys):
        raise UsageError(f"{what} must be unique, got {', '.join(keys)}")


def plan_signature(
    loaded: LoadedModel,
    *,
    input_names: str | None = None,
    output_name: str | None = None,
    static_batch: bool = False,
) -> SignaturePlan:
    """Signature keys and specs: Keras input names in, output layer names out, batch dynamic."""
    model = loaded.model
    if not getattr(model, "_is_graph_network", True) or not _has_inputs(model):
        raise ConversionError(
            f"{type(model).__name__} is a subclassed model with no recorded inputs; "
            "save it as a functional or Sequential model, or export it from Python"
        )
    structure = getattr(model, "input", None)
    own = _model_input_names(model)
    if isinstance(structure, dict):
        kind, dict_keys = "dict", tuple(str(k) for k in structure)
        tensors = list(structure.values())
        own = list(dict_keys)
    else:
        kind = "list" if isinstance(structure, list | tuple) else "single"
        dict_keys, tensors = (), list(model.inputs)
    keys = parse_input_names(input_names, own) if input_names else own
    _check_keys(keys, "input names")
    inputs = []
    for key, tensor in zip(keys, tensors, strict=True):
        shape = _shape(tensor)
        if shape and not static_batch:
            shape = (None, *shape[1:])
        inputs.append(TensorSig(key, _dtype(tensor), shape))

    outputs = _model_output_names(model)
    if output_name is not None:
        if len(outputs) != 1:
            raise UsageError(
                f"--output-name applies to single-output models; this one has outputs "
                f"{', '.join(outputs)}"
            )
        outputs = [output_name]
    _check_keys(outputs, "output names")
    return SignaturePlan(tuple(inputs), tuple(outputs), kind, dict_keys)


def _model_feed(plan: SignaturePlan, values: Sequence[Any]) -> Any:
    if plan.input_structure == "dict":
        return dict(zip(plan.dict_keys, values, strict=True))
    if plan.input_structure == "list":
        return list(values)
    return values[0]


def _named_outputs(plan: SignaturePlan, result: Any) -> dict[str, Any]:
    if isinstance(result, dict):
        values = list(result.values())
    elif isinstance(result, list | tuple):
        values = list(result)
    else:
        values = [result]
    if len(values) != len(plan.outputs):
        raise ConversionError(
            f"the model returned {len(values)} output(s) but declares {len(plan.outputs)} "
            f"({', '.join(plan.outputs)})"
        )
    return dict(zip(plan.outputs, values, strict=True))


def reference_fn(
    loaded: LoadedModel, plan: SignaturePlan
) -> Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]:
    """The source model itself, in inference mode, keyed like the signature (for verify)."""
    import tensorflow as tf

    def run(feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = [tf.constant(feeds[sig.key], dtype=sig.dtype) for sig in plan.inputs]
        result = loaded.model(_model_feed(plan, values), training=False)
        return {k: np.asarray(v) for k, v in _named_outputs(plan, result).items()}

    return run


def _tf_variable(variable: Any) -> Any:
    """Keras 3 wraps each tf.Variable; track the wrapped one, as TF1 loaders need its name."""
    import tensorflow as tf

    return variable if isinstance(variable, tf.Variable) else variable.value


def _lookup_resources(model: Any) -> list[Any]:
    """Tables and other non-variable resources held by layers (StringLookup, Hashing, ...):
    tracked so the SavedModel creates and initialises them in its own init op."""
    from tensorflow.python.trackable.resource import CapturableResource

    found: list[Any] = []
    layers = model._flatten_layers() if hasattr(model, "_flatten_layers") else [model]
    for layer in layers:
        for value in vars(layer).values():
            candidates = value if isinstance(value, list | tuple) else [value]
            for item in candidates:
                if isinstance(item, CapturableResource) and not any(item is f for f in found):
                    found.append(item)
    return found


def export_saved_model(
    loaded: LoadedModel, plan: SignaturePlan, export_dir: Path
) -> tuple[TensorSig, ...]:
    """Trace once with a dynamic batch, save with a serving_default signature; return outputs."""
    import tensorflow as tf

    model = loaded.model
    specs = [tf.TensorSpec(sig.shape, tf.as_dtype(sig.dtype), name=sig.key) for sig in plan.inputs]

    def serve(*values: Any) -> dict[str, Any]:
        result = model(_model_feed(plan, values), training=False)
        return {k: tf.identity(v, name=k) for k, v in _named_outputs(plan, result).items()}

    module = tf.Module()
    # Only variables and tables are tracked, not the Keras objects: the export must not
    # need Keras (nor the user's custom classes) to load.
    module.model_variables = [_tf_variable(v) for v in model.variables]
    module.resources = _lookup_resources(model)
    module.serve = tf.function(serve, input_signature=specs, autograph=False)
    try:
        concrete = module.serve.get_concrete_function()
    except (ValueError, TypeError, tf.errors.OpError) as exc:
        message = " ".join(str(exc).split())[:300]
        dynamic = any(sig.shape[:1] == (None,) for sig in plan.inputs)
        hint = (
            "; if it only works at its recorded batch size, pass --static-batch" if dynamic else ""
        )
        raise ConversionError(f"tracing the model for export failed: {message}{hint}") from exc
    try:
        tf.saved_model.save(module, str(export_dir), signatures={SIGNATURE_KEY: concrete})
    except (ValueError, TypeError, AssertionError, tf.errors.OpError) as exc:
        message = " ".join(str(exc).split())[:300]
        raise ConversionError(f"writing the SavedModel failed: {message}") from exc
    return tuple(
        TensorSig(
            key,
            concrete.structured_outputs[key].dtype.name,
            _shape(concrete.structured_outputs[key]),
        )
        for key in plan.outputs
    )

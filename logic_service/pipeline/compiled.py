"""Fitted scikit-learn transformers and models as ONNX graphs run by onnxruntime.

Conversion (skl2onnx) happens once at start-up, in the gunicorn master under preload. The
onnxruntime session is created lazily per process: a session made before fork would share
its thread pools and allocator with the children, so each worker opens its own on first use
(one intra-op and one inter-op thread: the workers are the parallelism).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from logic_service.pipeline.contract import FLOAT, INT64, STRING, Contract, is_null

# Fed for a value no encoder knows: scored by the graph exactly like any other unknown.
UNKNOWN_STRING = "\x00unknown"
# Fed for a null in a string column: the imputers and encoders' converters treat it as the
# missing value their fitted state names (np.nan or None), and nothing else does.
MISSING_STRING = "\x00missing"
# The same for a null in an integer category column (no category is this small).
MISSING_INT = int(np.iinfo(np.int64).min)


class CompileError(Exception):
    """A step skl2onnx cannot convert (custom class, Python function, unsupported option)."""


@dataclass
class OnnxProgram:
    """Serialized ONNX plus a per-process onnxruntime session."""

    model: bytes
    _session: Any = field(default=None, repr=False)
    _pid: int = field(default=0, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def session(self) -> Any:
        pid = os.getpid()
        if self._session is None or self._pid != pid:
            with self._lock:
                if self._session is None or self._pid != pid:
                    import onnxruntime

                    options = onnxruntime.SessionOptions()
                    options.intra_op_num_threads = 1
                    options.inter_op_num_threads = 1
                    options.log_severity_level = 3
                    self._session = onnxruntime.InferenceSession(
                        self.model, options, providers=["CPUExecutionProvider"]
                    )
                    self._pid = pid
        return self._session

    def run(self, feed: dict[str, np.ndarray]) -> list[Any]:
        return self.session().run(None, feed)

    def forget(self) -> None:
        """Drop this process's session (called in the master after the parity gate)."""
        self._session = None


@dataclass
class CompiledFeatures:
    """The transformer chain as one graph; `run` takes validated columns, not a DataFrame."""

    program: OnnxProgram
    contract: Contract
    _sentinels: dict[str, int] = field(default_factory=dict)

    def feed(self, columns: dict[str, Any]) -> dict[str, np.ndarray]:
        used = self.contract.columns
        with np.errstate(over="ignore"):  # beyond float32 becomes inf: a 400 downstream
            arrays = {
                name: self._array(name, values)
                for name, values in columns.items()
                if used[name].used
            }
        if self.contract.layout == "columns":
            return {name: array.reshape(-1, 1) for name, array in arrays.items()}
        return {"X": np.column_stack(list(arrays.values()))}

    def run(self, columns: dict[str, Any]) -> np.ndarray:
        return self.program.run(self.feed(columns))[0]

    def _array(self, name: str, values: Any) -> np.ndarray:
        column = self.contract.columns[name]
        if column.onnx_type == FLOAT:
            return np.asarray(values, dtype=np.float32)
        if column.onnx_type == STRING:
            null = column.null_as if isinstance(column.null_as, str) else MISSING_STRING
            return np.array(
                [value if type(value) is str else _not_a_string(value, null) for value in values],
                dtype=object,
            )
        # INT64: validated as float64; anything not a known integer category is unknown.
        values = np.asarray(values, dtype=np.float64)
        known = np.isin(values, column.categories or [])
        sentinel = self._sentinels.get(name)
        if sentinel is None:
            sentinel = self._sentinels[name] = int(min(column.categories or [0])) - 1
        coded = np.where(known, values, sentinel).astype(np.int64)
        return np.where(np.isnan(values), MISSING_INT, coded)


def _not_a_string(value: Any, null: str) -> str:
    """A null (or a JSON NaN) in a string column is its null; a number is unknown."""
    if is_null(value):
        return null
    return UNKNOWN_STRING


@dataclass
class CompiledModel:
    """An in-process model's `method` as a graph over float32 features."""

    program: OnnxProgram
    output: int
    column: int | None = None  # binary decision_function: the positive-class column

    def run(self, features: np.ndarray) -> np.ndarray:
        feed = {"X": np.asarray(features, dtype=np.float32)}
        result = np.asarray(self.program.run(feed)[self.output])
        if self.column is not None:
            return result[:, self.column]
        if result.ndim == 2 and result.shape[1] == 1:
            return result.ravel()
        return result


def compile_features(transformers: list[Any], contract: Contract) -> CompiledFeatures:
    """Convert the chain; input types come from the contract (one per column, or "X")."""
    if contract.problem:
        raise CompileError(contract.problem)
    from skl2onnx.common.data_types import FloatTensorType, Int64TensorType, StringTensorType

    types = {FLOAT: FloatTensorType, INT64: Int64TensorType, STRING: StringTensorType}
    if contract.layout == "columns":
        initial = [(c.name, types[c.onnx_type]([None, 1])) for c in contract.inputs]
    else:
        kind = next(iter(contract.columns.values())).onnx_type if contract.columns else FLOAT
        initial = [("X", types[kind]([None, len(contract.columns)]))]
    if len(transformers) == 1:
        obj = transformers[0]
    else:
        from sklearn.pipeline import Pipeline

        obj = Pipeline([(f"step{i}", step) for i, step in enumerate(transformers)])
    return CompiledFeatures(OnnxProgram(_convert(obj, initial, None)), contract)


def compile_model(model: Any, method: str, width: int) -> CompiledModel:
    """Convert an in-process estimator; classifiers without ZipMap so outputs are arrays."""
    from skl2onnx.common.data_types import FloatTensorType

    classifier = hasattr(model, "classes_")
    options: dict[str, Any] | None = None
    if classifier:
        options = {id(model): {"zipmap": False}}
        if method == "decision_function":
            options[id(model)]["raw_scores"] = True
    onnx_bytes = _convert(model, [("X", FloatTensorType([None, width]))], options)
    if not classifier:
        if method != "predict":
            raise CompileError(f"{type(model).__name__} has no {method} to compile")
        return CompiledModel(OnnxProgram(onnx_bytes), 0)
    output = 0 if method == "predict" else 1
    binary_decision = method == "decision_function" and len(model.classes_) == 2
    return CompiledModel(OnnxProgram(onnx_bytes), output, 1 if binary_decision else None)


def _convert(obj: Any, initial: list[tuple[str, Any]], options: Any) -> bytes:
    from skl2onnx import convert_sklearn

    from logic_service.pipeline import onnx_converters

    try:
        onnx_model = convert_sklearn(
            obj,
            initial_types=initial,
            options=options,
            custom_conversion_functions=onnx_converters.custom_converters(),
            custom_shape_calculators=onnx_converters.custom_shape_calculators(),
            custom_parsers=onnx_converters.custom_parsers(),
        )
    # skl2onnx raises whatever its converters raise (RuntimeError, NotImplementedError,
    # MissingShapeCalculator, TypeError, ...): any of them means "not compilable".
    except Exception as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise CompileError(f"{type(error).__name__}: {first}"[:300]) from None
    return onnx_model.SerializeToString()

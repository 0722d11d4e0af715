"""A pipeline at run time: its loaded artifacts, its input contract, and the steps of a request.

Built once per process by `loader.load_pipelines` (everything read from disk, compiled and checked
for parity here, at start-up); per request only in-memory work happens:
prepare (validate -> features) -> model -> postprocess. A compiled pipeline builds its
features from the decoded JSON without pandas; a DataFrame is made only for a hook.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from logic_service.config import PipelineSpec
from logic_service.errors import BadRequestError
from logic_service.pipeline.artifacts import (
    LoadedArtifact,
)
from logic_service.pipeline.compiled import (
    CompiledFeatures,
    CompiledModel,
)
from logic_service.pipeline.contract import ColumnContract, Contract
from logic_service.pipeline.parity import ParityResult
from logic_service.pipeline.validation import (
    ANY,
    NUMBER,
    InputSchema,
    first_null,
    first_null_in,
    frame_from_columns,
    to_frame,
    validate_columns,
)

log = logging.getLogger(__name__)
ONNX, SKLEARN = "onnx", "sklearn"
_MAX_KNOWN_SHOWN = 10


@dataclass
class Prepared:
    """A validated request: features for the model, its row count, a frame only for hooks."""

    features: Any
    rows: int
    frame: pd.DataFrame | None


@dataclass
class Pipeline:
    """One configured pipeline with everything it needs already in memory."""

    spec: PipelineSpec
    transformers: list[LoadedArtifact]
    artifacts: dict[str, LoadedArtifact]
    model: LoadedArtifact | None
    schema: InputSchema
    preprocess_hook: Callable[..., Any] | None = None
    postprocess_hook: Callable[..., Any] | None = None
    contract: Contract | None = None
    engine: str = SKLEARN
    engine_reason: str = ""
    parity: ParityResult | None = None
    compiled_features: CompiledFeatures | None = None
    compiled_model: CompiledModel | None = None
    # Set by the app to count unknown categories: on_unknown(column, count).
    on_unknown: Callable[[str, int], None] | None = None
    _warned: set[str] = field(default_factory=set, repr=False)
    _schema_compiled: InputSchema | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def graph_backed(self) -> bool:
        return self.spec.graph is not None

    @property
    def compiled(self) -> bool:
        return self.engine == ONNX

    def prepare(self, data: Any) -> Prepared:
        """Validate `data` against the contract and compute the features (400 naming the problem)."""
        if self.contract is None:  # open contract (hook with `columns:`, or no feature names)
            frame = self.frame(data)
            return Prepared(self.features(frame), len(frame), frame)
        schema = (self._schema_compiled if self.compiled else None) or self.schema
        columns, rows = validate_columns(data, schema, self.spec.max_rows)
        self._check_unknown(columns)
        if self.compiled:
            needs_frame = self.postprocess_hook is not None
            frame = frame_from_columns(columns, self.schema) if needs_frame else None
            return Prepared(self._compiled_run(columns), rows, frame)
        frame = frame_from_columns(columns, self.schema)
        return Prepared(self.features(frame), rows, frame)

    def open_sessions(self) -> None:
        """Open this process's onnxruntime sessions now (e.g. from gunicorn's post_fork) so
        the first request of a worker does not pay for it; never call it before the fork."""
        for compiled in (self.compiled_features, self.compiled_model):
            if compiled is not None:
                compiled.program.session()

    def compiled_schema(self) -> InputSchema:
        """The contract for the compiled path: columns of unknown kind feed float inputs, so
        they are validated as numbers (a column only a "drop" branch reads stays as it is)."""
        assert self.contract is not None
        used = {name for name, column in self.contract.columns.items() if column.used}
        kinds = {n: NUMBER if k == ANY and n in used else k for n, k in self.schema.kinds.items()}
        return InputSchema(self.schema.columns, kinds, self.schema.closed)

    def _compiled_run(self, columns: dict[str, Any]) -> np.ndarray:
        if self.compiled_features is None:  # a model alone: the columns are its features
            with np.errstate(over="ignore"):  # beyond float32 becomes inf: a 400 below
                features = np.column_stack(
                    [np.asarray(v, dtype=np.float32) for v in columns.values()]
                )
        else:
            features = self.compiled_features.run(columns)
        if features.dtype.kind == "f" and not np.isfinite(features).all():
            # A number beyond float32 is a certain cause; a null only where nothing imputes it.
            if where := _first_out_of_range(columns):
                raise BadRequestError(
                    f"{where} is beyond the float32 range (about ±3.4e38) the model computes "
                    "in: send a smaller number"
                )
            if where := first_null_in(self._not_imputed(columns)):
                raise BadRequestError(
                    f"{where} is null and pipeline {self.name!r} does not impute missing "
                    "values: send a value"
                )
        return features

    def _not_imputed(self, columns: dict[str, Any]) -> dict[str, Any]:
        """The columns whose nulls the transformers cannot fill (all of them without a contract)."""
        if self.contract is None:
            return columns
        known = self.contract.columns
        return {n: v for n, v in columns.items() if n not in known or not known[n].nullable}

    def _check_unknown(self, columns: dict[str, Any]) -> None:
        """Unknown categories: 400 under `reject` or an encoder fitted with handle_unknown=error;
        otherwise scored as the encoder does and counted (and logged once under `warn`)."""
        assert self.contract is not None
        mode = self.spec.unknown_categories
        for column in self.contract.categorical:
            values = columns[column.name]
            is_known = column.is_known
            unknown = [row for row, value in enumerate(values) if not is_known(value)]
            if not unknown:
                continue
            if mode == "reject" or column.unknown_is_error:
                raise BadRequestError(self._unknown_message(column, unknown[0], values))
            if self.on_unknown is not None:
                self.on_unknown(column.name, len(unknown))
            if mode == "warn" and column.name not in self._warned:
                self._warned.add(column.name)
                log.warning(
                    "pipeline %s: column %r received unknown value %s (scored as the "
                    "encoder scores unknowns; counted in logic_unknown_values_total; "
                    "logged once per worker)",
                    self.name,
                    column.name,
                    _show(values[unknown[0]]),
                )

    def _unknown_message(self, column: ColumnContract, row: int, values: Any) -> str:
        known = column.known_values
        shown = ", ".join(_show(v) for v in known[:_MAX_KNOWN_SHOWN])
        more = f" (and {len(known) - _MAX_KNOWN_SHOWN} more)" if len(known) > 10 else ""
        why = (
            "its encoder was fitted with handle_unknown='error'"
            if column.unknown_is_error
            else "this pipeline sets unknown_categories: reject"
        )
        return (
            f"column {column.name!r}, row {row}: {_show(values[row])} is not a known category "
            f"({why}); send one of: {shown}{more}"
        )

    def frame(self, data: Any) -> pd.DataFrame:
        """The request's `data` as a checked DataFrame (400 naming the column/row otherwise)."""
        return to_frame(data, self.schema, self.spec.max_rows)

    def features(self, frame: pd.DataFrame) -> Any:
        """Run the transformers in order, or the preprocess hook; dense output."""
        if self.preprocess_hook is not None:
            objects = {key: item.obj for key, item in self.artifacts.items()}
            try:
                result = self.preprocess_hook(frame, objects)
            except KeyError as error:
                missing = error.args[0] if error.args else error
                raise BadRequestError(
                    f"pipeline {self.name!r}: preprocess needs column(s) missing from the "
                    f"request: {missing!r}; send every column listed by GET /pipelines"
                ) from None
            except (ValueError, TypeError) as error:
                raise BadRequestError(
                    f"pipeline {self.name!r}: preprocess rejected the input: {error}"
                ) from None
            if isinstance(result, Mapping):
                return {key: _dense(value) for key, value in result.items()}
            return _dense(result)
        if not self.transformers:
            return frame
        current: Any = frame
        for item in self.transformers:
            try:
                current = item.obj.transform(current)
            except (ValueError, TypeError, KeyError) as error:
                raise BadRequestError(
                    f"pipeline {self.name!r}: transformer {item.path.name} rejected the input: "
                    f"{error}".replace("\n", " ")
                ) from None
        features = _dense(current)
        unscorable = (
            isinstance(features, np.ndarray)
            and features.dtype.kind == "f"
            and not np.isfinite(features).all()
        )
        if unscorable and (where := first_null(frame)):
            raise BadRequestError(
                f"{where} is null and pipeline {self.name!r} does not impute missing "
                "values: send a value"
            )
        return features

    def predict_local(self, features: Any) -> Any:
        """The in-process model's `method` on the features (its compiled graph when it has one)."""
        assert self.model is not None
        if self.compiled_model is not None:
            return self.compiled_model.run(features)
        try:
            return getattr(self.model.obj, self.spec.method)(features)
        except (ValueError, TypeError) as error:
            raise BadRequestError(
                f"pipeline {self.name!r}: model {self.model.path.name} rejected the features: "
                f"{error}".replace("\n", " ")
            ) from None

    def postprocess(self, outputs: Any, prepared: Prepared) -> Any:
        """Business rules on the model outputs: `postprocess(outputs, frame) -> data`."""
        if self.postprocess_hook is None:
            return outputs
        return self.postprocess_hook(outputs, prepared.frame)

    def describe(self) -> dict[str, Any]:
        """The contract a caller can discover through GET /pipelines."""
        spec = self.spec
        loaded = [*self.transformers, *self.artifacts.values()]
        if self.model is not None:
            loaded.append(self.model)
        model: dict[str, Any]
        if spec.graph is not None:
            model = {
                "kind": "graph",
                "target": spec.graph.describe(),
                "graph_model": spec.graph.model,
                "version": spec.graph.version,
                "version_label": spec.graph.version_label,
                "signature_name": spec.graph.signature_name,
            }
        else:
            assert self.model is not None
            model = {"kind": "sklearn", "path": str(self.model.path), "method": spec.method}
        return {
            "name": spec.name,
            "columns": self.schema.describe(),
            "max_rows": spec.max_rows,
            "engine": self.describe_engine(),
            "unknown_categories": spec.unknown_categories,
            "preprocess": spec.preprocess,
            "postprocess": spec.postprocess,
            "model": model,
            "artifacts": [item.describe() for item in loaded],
            "warnings": [note for item in loaded for note in item.warnings],
        }

    def describe_engine(self) -> dict[str, Any]:
        """Which engine serves, why, and how the compiled graph compared with scikit-learn."""
        info: dict[str, Any] = {
            "name": self.engine,
            "requested": self.spec.engine,
            "parity_max_diff": None,
            "parity_rows": 0,
            "parity_atol": self.spec.parity_atol,
            "reason": self.engine_reason,
        }
        if self.parity is not None:
            info["parity_max_diff"] = self.parity.max_diff
            info["parity_rows"] = self.parity.rows
        return info


def _first_out_of_range(columns: dict[str, Any]) -> str | None:
    limit = float(np.finfo(np.float32).max)
    for name, values in columns.items():
        if isinstance(values, np.ndarray) and values.dtype.kind == "f":
            beyond = np.flatnonzero(np.abs(np.nan_to_num(values)) > limit)
            if len(beyond):
                return f"column {name!r}, row {int(beyond[0])}: {_show(values[beyond[0]])}"
    return None


def _show(value: Any) -> str:
    """A value as the caller wrote it in JSON (99.0 from an integer column shows as 99)."""
    if isinstance(value, float | np.floating) and float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, np.generic):
        value = value.item()
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def _dense(value: Any) -> Any:
    """Sparse matrices and DataFrames -> ndarray (what both the graph tier and JSON want)."""
    if sparse.issparse(value):
        return value.toarray()
    if isinstance(value, pd.DataFrame | pd.Series):
        return value.to_numpy()
    return value

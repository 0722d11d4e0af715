"""What a pipeline's fitted transformers accept, read from their fitted state.

The columns and their kinds come from the artifacts themselves (`feature_names_in_`, and for a
ColumnTransformer which columns feed encoders vs. numeric steps), so they cannot drift from
what the model was trained on; `columns:` in the pipeline file overrides them. Per raw
column: the known categories (and what the encoder does with anything else), whether an
imputer fills nulls (and what a null is to the transformers: NaN, None or a marker such as
"?"), the ONNX input type the column compiles to, and values worth probing (means, scales,
min/max, bin edges). Validation, the compiled engine, the parity gate and
/openapi.json all read this one object, so they cannot disagree about the contract.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

FLOAT, INT64, STRING = "float", "int64", "string"
_CONTRACT_ENCODERS = {"OneHotEncoder", "OrdinalEncoder", "LabelEncoder"}
# Transformers that route named raw columns to branches (`transformers_`, `feature_names_in_`).
_SIDE_BY_SIDE = {"ColumnTransformer", "Assembled"}
NUMBER, CATEGORY, ANY = "number", "category", "any"
_KIND_ENCODERS = {
    "OneHotEncoder",
    "OrdinalEncoder",
    "TargetEncoder",
    "LabelEncoder",
    "LabelBinarizer",
}
_NUMERIC = {
    "StandardScaler",
    "MinMaxScaler",
    "MaxAbsScaler",
    "RobustScaler",
    "Normalizer",
    "QuantileTransformer",
    "PowerTransformer",
    "KBinsDiscretizer",
    "PolynomialFeatures",
    "SplineTransformer",
    "KNNImputer",
}


@dataclass(frozen=True)
class InputSchema:
    """Expected columns, in training order, with a kind each (number / category / any)."""

    columns: tuple[str, ...]
    kinds: dict[str, str]
    # Closed: the columns came from fitted artifacts, so the frame is cut to them in training
    # order. Open (only `columns:` for a preprocess hook): other request columns are kept.
    closed: bool = True

    def describe(self) -> list[dict[str, str]]:
        return [{"name": name, "kind": self.kinds.get(name, ANY)} for name in self.columns]


def infer_schema(artifacts: Iterable[Any], declared: dict[str, str]) -> InputSchema:
    """Merge the contracts of the artifacts that see the raw request, then apply `columns:`."""
    columns: list[str] = []
    kinds: dict[str, str] = {}
    artifacts = list(artifacts)
    for obj in artifacts:
        for name, kind in _artifact_columns(obj):
            if name not in kinds:
                columns.append(name)
                kinds[name] = kind
            elif kinds[name] != kind:
                kinds[name] = NUMBER if NUMBER in (kinds[name], kind) else ANY
    for name, kind in declared.items():
        if name not in kinds:
            columns.append(name)
        kinds[name] = NUMBER if kind == "number" else CATEGORY
    return InputSchema(tuple(columns), kinds, closed=bool(artifacts))


@dataclass
class ColumnContract:
    """One raw input column as the fitted transformers see it."""

    name: str
    kind: str
    categories: list[Any] | None = None
    unknown_is_error: bool = False
    nullable: bool = False
    onnx_type: str = FLOAT
    probes: set[float] = field(default_factory=set)
    numeric_use: bool = False
    used: bool = True  # False: only a "drop" branch reads it (required, never fed to ONNX)
    known: frozenset[Any] = frozenset()
    # What a JSON null becomes for the fitted transformers: NaN (what pandas gives them),
    # None where their fitted state holds None, or an imputer's string marker such as "?".
    null_as: Any = math.nan

    def settle_known(self) -> None:
        """`known` from the categories: the fitted ones, and an imputer's string marker."""
        self.known = frozenset(self.known_values) | _marker(self.null_as)

    @property
    def known_values(self) -> list[Any]:
        """The categories in fitted order, without a fitted missing value."""
        return [value for value in self.categories or [] if not is_null(value)]

    def is_known(self, value: Any) -> bool:
        """True when the encoders reading this column have seen `value` (null: if imputed)."""
        if is_null(value):
            return self.nullable
        if self.onnx_type == STRING and not isinstance(value, str):
            return False
        return value in self.known


@dataclass
class Contract:
    """The raw columns in training order, and how a compiled graph takes them."""

    columns: dict[str, ColumnContract]
    # "columns": one ONNX input per column (ColumnTransformer); "matrix": one input "X".
    layout: str
    problem: str | None = None

    @property
    def categorical(self) -> list[ColumnContract]:
        return [column for column in self.columns.values() if column.categories is not None]

    @property
    def inputs(self) -> list[ColumnContract]:
        """The columns the compiled graph takes (a dropped column is checked, not fed)."""
        return [column for column in self.columns.values() if column.used]


def read_contract(obj: Any, schema: InputSchema) -> Contract:
    """The contract of `obj` (the raw-facing transformer or model) over `schema`'s columns."""
    names = list(schema.columns)
    columns = {name: ColumnContract(name, schema.kinds.get(name, NUMBER)) for name in names}
    layout = "columns" if _column_transformer(obj) is not None else "matrix"
    branches = _branches(obj, names)
    if layout == "columns":
        fed = {name for _, selected in branches for name in selected}
        for column in columns.values():
            column.used = column.name in fed
    unfilled: set[str] = set()  # read raw by a branch that does not begin by imputing
    for estimator, selected in branches:
        steps = _steps(estimator)
        if not steps or type(steps[0]).__name__ != "SimpleImputer":
            unfilled.update(selected)
        if not steps or steps[0] == "passthrough":
            for name in selected:
                columns[name].numeric_use = True
            continue
        if type(steps[0]).__name__ not in _CONTRACT_ENCODERS | {"SimpleImputer"}:
            for name in selected:
                columns[name].numeric_use = True
        _walk(steps, [columns[name] for name in selected if name in columns])
    for column in columns.values():
        if column.categories is None and column.name in unfilled:
            column.nullable = False  # one branch sees the null as NaN: not scorable
        if column.categories is not None:
            values = [v for v in column.categories if not is_null(v)]
            column.nullable = column.nullable or len(values) < len(column.categories)
            if len(values) < len(column.categories) and not isinstance(column.null_as, str):
                column.null_as = None if None in column.categories else math.nan
            column.settle_known()
            if all(isinstance(v, str) for v in values):
                column.onnx_type = STRING
            elif all(isinstance(v, int) for v in values) and not column.numeric_use:
                column.onnx_type = INT64
            else:
                column.onnx_type = FLOAT
        elif column.kind == CATEGORY:
            column.onnx_type = STRING
    problem = None
    if not any(column.used for column in columns.values()):
        problem = "the transformer reads none of its input columns"
    if layout == "matrix" and len({c.onnx_type for c in columns.values()}) > 1:
        problem = "columns of mixed types feed one transformer input (no ColumnTransformer)"
    return Contract(columns, layout, problem)


def _column_transformer(obj: Any) -> Any:
    if type(obj).__name__ in _SIDE_BY_SIDE:
        return obj
    steps = getattr(obj, "steps", None)
    if steps and type(steps[0][1]).__name__ in _SIDE_BY_SIDE:
        return steps[0][1]
    return None


def _branches(obj: Any, names: list[str]) -> list[tuple[Any, list[str]]]:
    """(estimator, raw columns it reads) for each branch that sees raw request columns."""
    transformer = _column_transformer(obj)
    if transformer is None or not hasattr(transformer, "transformers_"):
        return [(obj, names)]
    branches = []
    for _, estimator, selected in transformer.transformers_:
        if isinstance(estimator, str) and estimator == "drop":
            continue
        branches.append((estimator, selected_names(selected, names)))
    return branches


def _steps(obj: Any) -> list[Any]:
    if isinstance(obj, str):
        return [obj]
    steps = getattr(obj, "steps", None)
    if steps is None:
        return [obj]
    flat: list[Any] = []
    for _, step in steps:
        if step is None or (isinstance(step, str) and step == "passthrough"):
            continue
        flat.extend(_steps(step))
    return flat


def _walk(steps: list[Any], columns: list[ColumnContract]) -> None:
    """Read per-column fitted state while the steps keep one output column per input column."""
    for step in steps:
        kind = type(step).__name__
        width = len(columns)
        if kind == "SimpleImputer":
            marker = getattr(step, "missing_values", math.nan)
            for column in columns:
                column.nullable = True
                if marker is None or isinstance(marker, str):
                    column.null_as = marker  # the frame carries what the imputer looks for
            _probe(columns, getattr(step, "statistics_", None))
            continue
        if kind in _CONTRACT_ENCODERS:
            categories = _categories(step) or []
            for column, known in zip(columns, categories, strict=False):
                if column.categories is None:
                    column.categories = np.asarray(known).tolist()
                column.unknown_is_error |= getattr(step, "handle_unknown", "error") == "error"
            return
        if kind == "StandardScaler":
            mean, scale = _array(step, "mean_", width), _array(step, "scale_", width, 1.0)
            for k in (0, 1, -1, 3, -3, 20, -20):
                _probe(columns, mean + k * scale)
        elif kind == "MinMaxScaler":
            low, high = _array(step, "data_min_", width), _array(step, "data_max_", width)
            for value in (low, high, low - (high - low), high + (high - low), (low + high) / 2):
                _probe(columns, value)
        elif kind == "RobustScaler":
            center, scale = _array(step, "center_", width), _array(step, "scale_", width, 1.0)
            for k in (0, 1, -1, 10, -10):
                _probe(columns, center + k * scale)
        elif kind == "MaxAbsScaler":
            top = _array(step, "max_abs_", width, 1.0)
            for k in (1, -1, 0.5, 2, -2):
                _probe(columns, k * top)
        elif kind == "KBinsDiscretizer":
            for column, fitted in zip(columns, getattr(step, "bin_edges_", []), strict=False):
                edges = np.asarray(fitted, dtype=float)
                span = float(edges[-1] - edges[0]) or 1.0
                mids = (edges[:-1] + edges[1:]) / 2
                column.probes.update(float(v) for v in edges)
                column.probes.update(float(v) for v in mids)
                # Where float32 rounding could move a value across an edge: just below and
                # above it, and the edge as a caller would write it (a few decimals).
                column.probes.update(float(v) for v in np.nextafter(edges, -np.inf))
                column.probes.update(float(v) for v in np.nextafter(edges, np.inf))
                for decimals in (0, 1, 2, 3, 4, 6):
                    column.probes.update(float(v) for v in np.round(edges, decimals))
                column.probes.update((float(edges[0]) - span, float(edges[-1]) + span))
            return
        else:
            return  # the step changes the width or the meaning: later state is not per column


def _array(step: Any, name: str, width: int, default: float = 0.0) -> np.ndarray:
    value = getattr(step, name, None)
    if value is None:
        return np.full(width, default)
    return np.asarray(value, dtype=float).reshape(-1)[:width]


def _probe(columns: list[ColumnContract], values: Any) -> None:
    if values is None:
        return
    array = np.asarray(values).reshape(-1)
    if array.dtype.kind not in "iuf":
        return
    for column, value in zip(columns, array.tolist(), strict=False):
        if math.isfinite(value):
            column.probes.add(float(value))


def is_null(value: Any) -> bool:
    """None or NaN: a missing value, in a request or in fitted categories."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def _marker(null_as: Any) -> frozenset[Any]:
    """An imputer's string marker is a known value: the imputer fills it."""
    return frozenset([null_as]) if isinstance(null_as, str) else frozenset()


def _categories(step: Any) -> list[Any] | None:
    """An encoder's categories per column; a LabelEncoder's classes are one column's."""
    categories = getattr(step, "categories_", None)
    if categories is None and hasattr(step, "classes_"):
        return [step.classes_]
    return categories


def _artifact_columns(obj: Any) -> list[tuple[str, str]]:
    names = getattr(obj, "feature_names_in_", None)
    if names is None:
        return []
    names = [str(name) for name in names]
    if type(obj).__name__ in _SIDE_BY_SIDE and hasattr(obj, "transformers_"):
        kinds = {name: ANY for name in names}
        for _, transformer, selected in obj.transformers_:
            if isinstance(transformer, str):  # "drop" / "passthrough"
                continue
            kind = _estimator_kind(transformer)
            for column in selected_names(selected, names):
                kinds[column] = kind
        return [(name, kinds[name]) for name in names]
    kind = _estimator_kind(obj)
    return [(name, kind) for name in names]


def selected_names(selected: Any, names: list[str]) -> list[str]:
    if isinstance(selected, str | int):
        selected = [selected]
    if isinstance(selected, slice):
        return names[selected]
    result = []
    for item in np.asarray(selected).tolist():
        if isinstance(item, bool):
            continue
        result.append(names[item] if isinstance(item, int) else str(item))
    if np.asarray(selected).dtype == bool:
        result = [name for name, keep in zip(names, selected, strict=False) if keep]
    return result


def _estimator_kind(obj: Any) -> str:
    """number for numeric steps, category for encoders with non-numeric categories."""
    steps = [step for _, step in getattr(obj, "steps", [])] or [obj]
    for step in steps:
        name = type(step).__name__
        if name in _KIND_ENCODERS:
            categories = _categories(step)
            if categories is not None and all(
                np.asarray(cats).dtype.kind in "iuf" for cats in categories
            ):
                return NUMBER
            return CATEGORY
        if name in _NUMERIC:
            return NUMBER
        if name == "SimpleImputer":
            stats = getattr(step, "statistics_", None)
            if stats is not None and np.asarray(stats).dtype.kind in "iuf":
                return NUMBER
            continue
    return ANY

"""A pipeline's input contract and the checks a request passes before any transformer runs.

The contract comes from the fitted artifacts themselves (`feature_names_in_`, and for a
ColumnTransformer which columns feed encoders vs. numeric steps), so it cannot drift from
what the model was trained on; `columns:` in the pipeline file overrides it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from logic_service.errors import BadRequestError

NUMBER, CATEGORY, ANY = "number", "category", "any"
_ENCODERS = {"OneHotEncoder", "OrdinalEncoder", "TargetEncoder", "LabelEncoder", "LabelBinarizer"}
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


def to_frame(data: Any, schema: InputSchema, max_rows: int) -> pd.DataFrame:
    """`data` (records, columns, or one record) -> a checked DataFrame in training order."""
    data, _ = _table(data, max_rows)
    if schema.columns and schema.closed:
        return _closed_frame(data, schema)
    try:
        frame = pd.DataFrame(data)
    except (ValueError, TypeError) as error:
        raise BadRequestError(f'"data" is not a table: {error}') from None
    if not schema.columns:
        return frame
    missing = [name for name in schema.columns if name not in frame.columns]
    if missing:
        raise BadRequestError(
            f"missing column(s) {', '.join(map(repr, missing))}; "
            f"this pipeline expects: {', '.join(schema.columns)}"
        )
    for name in schema.columns:
        if schema.kinds.get(name) == NUMBER:
            frame[name] = _numeric(frame[name], name)
    return frame


def _closed_frame(data: list | dict, schema: InputSchema) -> pd.DataFrame:
    """Build only the contract's columns, each converted once: no per-column frame edits."""
    return frame_from_columns(closed_columns(data, schema), schema)


def validate_columns(data: Any, schema: InputSchema, max_rows: int) -> tuple[dict[str, Any], int]:
    """`data` -> ({column: values}, rows) for a closed contract, without building a DataFrame.

    Numeric columns come back as float64 arrays (null -> NaN), the others as lists of
    scalars; every check (and every 400 message) is the one `to_frame` applies.
    """
    data, rows = _table(data, max_rows)
    return closed_columns(data, schema), rows


def _table(data: Any, max_rows: int) -> tuple[list | dict, int]:
    """Records or columns with their row count; one record becomes a list of one."""
    rows = _count_rows(data)
    if rows == 0:
        raise BadRequestError('"data" is empty: send at least one record')
    if rows > max_rows:
        raise BadRequestError(
            f'"data" has {rows} rows, more than this pipeline\'s max_rows={max_rows}'
        )
    if isinstance(data, dict) and not _is_columns(data):
        data = [data]
    return data, rows


def closed_columns(data: list | dict, schema: InputSchema) -> dict[str, Any]:
    """The contract's columns from records or an object of columns, each checked once."""
    present = set().union(*data) if isinstance(data, list) else set(data)
    missing = [name for name in schema.columns if name not in present]
    if missing:
        raise BadRequestError(
            f"missing column(s) {', '.join(map(repr, missing))}; "
            f"this pipeline expects: {', '.join(schema.columns)}"
        )
    if isinstance(data, list):
        for row, record in enumerate(data):
            if len(record) < len(schema.columns) or not all(n in record for n in schema.columns):
                absent = [name for name in schema.columns if name not in record]
                raise BadRequestError(
                    f"record {row} has no {', '.join(map(repr, absent))}; every record "
                    "needs every column (send null for a missing value)"
                )
        values = {name: [record[name] for record in data] for name in schema.columns}
    else:
        values = {name: data[name] for name in schema.columns}
    columns: dict[str, Any] = {}
    for name in schema.columns:
        column = values[name]
        if schema.kinds.get(name) == NUMBER:
            columns[name] = _numeric_values(column, name)
        else:
            _require_scalars(column, name)
            columns[name] = column
    return columns


def frame_from_columns(columns: dict[str, Any], schema: InputSchema) -> pd.DataFrame:
    """The DataFrame the transformers (and hooks) have always received for these columns."""
    frame: dict[str, Any] = {}
    for name, column in columns.items():
        kind = schema.kinds.get(name)
        if kind == NUMBER:
            frame[name] = column
        elif kind == CATEGORY:
            frame[name] = np.array(column, dtype=object)
        else:  # unknown kind: let pandas infer, as pd.DataFrame(records) would
            frame[name] = pd.Series(column, dtype=object).infer_objects()
    return pd.DataFrame(frame)


_PLAIN_NUMBERS = (int, float, type(None))  # exact types: bool is not a number here


def _require_scalars(values: list, name: str) -> None:
    for row, value in enumerate(values):
        if isinstance(value, list | dict):
            raise BadRequestError(
                f"column {name!r}, row {row}: {value!r} is not a single value "
                "(send a string, a number or null)"
            )


def _numeric_values(values: list, name: str) -> np.ndarray:
    if all(type(value) in _PLAIN_NUMBERS for value in values):
        return np.array(values, dtype=np.float64)  # None -> NaN
    return _numeric(pd.Series(values, dtype=object), name).to_numpy()


def _numeric(column: pd.Series, name: str) -> pd.Series:
    kind = column.dtype.kind
    booleans = (
        column.map(lambda value: isinstance(value, bool | np.bool_)).to_numpy(dtype=bool)
        if kind in "bO"
        else np.zeros(0, dtype=bool)
    )
    if booleans.any():
        row = int(np.flatnonzero(booleans)[0])
        raise BadRequestError(
            f"column {name!r}, row {row}: {str(column.iloc[row]).lower()} is a boolean, not a "
            "number (send a number such as 0 or 1, or null for a missing value)"
        )
    if pd.api.types.is_numeric_dtype(column.dtype) and not pd.api.types.is_bool_dtype(column.dtype):
        return column.astype(np.float64, copy=False)
    converted = pd.to_numeric(column, errors="coerce")
    bad = converted.isna().to_numpy() & column.notna().to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise BadRequestError(
            f"column {name!r}, row {row}: {column.iloc[row]!r} is not a number "
            "(send a number, or null for a missing value)"
        )
    return converted.astype(np.float64)


def first_null(frame: pd.DataFrame) -> str | None:
    """'column NAME, row N' of the first missing value, to point a caller at it."""
    nulls = frame.isna().to_numpy()
    if not nulls.any():
        return None
    row, column = np.argwhere(nulls)[0]
    return f"column {frame.columns[column]!r}, row {row}"


def first_null_in(columns: dict[str, Any]) -> str | None:
    """`first_null` for validated columns (float arrays hold NaN for null)."""
    best: tuple[int, int, str] | None = None
    for position, (name, values) in enumerate(columns.items()):
        if isinstance(values, np.ndarray) and values.dtype.kind == "f":
            nulls = np.flatnonzero(np.isnan(values))
            row = int(nulls[0]) if len(nulls) else None
        else:
            row = next((i for i, value in enumerate(values) if value is None), None)
        if row is not None and (best is None or (row, position) < best[:2]):
            best = (row, position, name)
    return None if best is None else f"column {best[2]!r}, row {best[0]}"


def _count_rows(data: Any) -> int:
    if isinstance(data, list):
        if not all(isinstance(record, dict) for record in data):
            raise BadRequestError(
                '"data" as a list must hold records (objects of column: value); '
                'for columns send an object {"column": [values...]}'
            )
        return len(data)
    if isinstance(data, dict):
        if not data:
            return 0
        if _is_columns(data):
            lengths = {len(value) for value in data.values() if isinstance(value, list)}
            if len(lengths) > 1:
                raise BadRequestError(
                    '"data" columns have different lengths; send equal-length lists'
                )
            return lengths.pop()
        return 1
    raise BadRequestError(
        '"data" must be a list of records, an object of columns, or one record object, '
        f"not {type(data).__name__}"
    )


def _is_columns(data: dict) -> bool:
    """An object of columns has a list for every key; anything else is one record."""
    return all(isinstance(value, list) for value in data.values())


def _artifact_columns(obj: Any) -> list[tuple[str, str]]:
    names = getattr(obj, "feature_names_in_", None)
    if names is None:
        return []
    names = [str(name) for name in names]
    if type(obj).__name__ == "ColumnTransformer" and hasattr(obj, "transformers_"):
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
        if name in _ENCODERS:
            categories = getattr(step, "categories_", None)
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

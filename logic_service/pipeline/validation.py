"""Everything a request must satisfy before any transformer runs, checked in one pass.

`Validator.validate` turns the decoded `data` (records, an object of columns, or one record)
into a `ValidRequest`: the contract's columns, each converted once (numbers as float64 with
NaN for null, the rest as lists of scalars), the first null of every column, and the frame
the scikit-learn path or a hook needs. On the way it refuses, with a 400 naming the column and
row: an empty or oversized batch, a missing column or a record without one, a list or object
where one value belongs, a non-number (or a JSON boolean) in a numeric column, and an unknown
category where the pipeline or the encoder says unknowns are errors. Unknowns that are scored
are counted (and logged once per column under `warn`).

Nothing after this module looks at the raw `data` again: features, model and rules read the
`ValidRequest`.
"""

from __future__ import annotations

import copy
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from logic_service.errors import BadRequestError
from logic_service.pipeline.contract import (
    ANY,
    CATEGORY,
    NUMBER,
    ColumnContract,
    Contract,
    InputSchema,
    is_null,
)

log = logging.getLogger(__name__)

_MAX_KNOWN_SHOWN = 10


@dataclass
class ValidRequest:
    """A request that passed every check: what features, model and rules read."""

    rows: int
    # The contract's columns in training order (None for an open contract: a hook's frame).
    columns: dict[str, Any] | None
    # Built when the scikit-learn path or a hook needs one.
    frame: pd.DataFrame | None
    # Column -> first row holding a null, for every column that has one, in column order.
    nulls: dict[str, int] = field(default_factory=dict)

    def first_null(self, among: Callable[[str], bool] = lambda name: True) -> str | None:
        """'column NAME, row N' of the earliest null (by row, then column) in `among`."""
        order = {name: position for position, name in enumerate(self.nulls)}
        found = [(row, order[name], name) for name, row in self.nulls.items() if among(name)]
        if not found:
            return None
        row, _, name = min(found)
        return f"column {name!r}, row {row}"


class Validator:
    """One pipeline's request checks: its schema, its contract and its unknown-category mode."""

    def __init__(
        self,
        pipeline: str,
        schema: InputSchema,
        contract: Contract | None = None,
        *,
        max_rows: int,
        unknown_categories: str = "warn",
        build_frame: bool = True,
        on_unknown: Callable[[str, int], None] | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.schema = schema
        self.contract = contract
        self.max_rows = max_rows
        self.unknown_categories = unknown_categories
        self.build_frame = build_frame
        self.on_unknown = on_unknown
        self._warned: set[str] = set()
        categorical = contract.categorical if contract is not None else []
        self._categorical = {column.name: column for column in categorical}

    def quiet(self) -> Validator:
        """The same checks without counting or logging unknown categories (for the start-up
        self-test's own rows, which are not traffic)."""
        twin = copy.copy(self)
        twin.on_unknown = None
        twin._warned = set(self._categorical)
        return twin

    def validate(self, data: Any) -> ValidRequest:
        """`data` -> a ValidRequest, or a 400 naming the first thing that is wrong."""
        table, rows = _table(data, self.max_rows)
        if not (self.schema.columns and self.schema.closed):
            frame, nulls = _open_frame(table, self.schema)
            return ValidRequest(rows, None, frame, nulls)
        values = _contract_values(table, self.schema.columns)
        columns: dict[str, Any] = {}
        nulls: dict[str, int] = {}
        for name in self.schema.columns:
            if self.schema.kinds.get(name) == NUMBER:
                columns[name], null = _numbers(values[name], name)
            else:
                null = _scalars(values[name], name)
                columns[name] = values[name]
            contract = self._categorical.get(name)
            if contract is not None:
                self._check_unknown(contract, columns[name])
            if null is not None:
                nulls[name] = null
        frame = (
            frame_from_columns(columns, self.schema, self.contract) if self.build_frame else None
        )
        return ValidRequest(rows, columns, frame, nulls)

    def _check_unknown(self, column: ColumnContract, values: Any) -> None:
        """400 under `reject` or for an encoder fitted with handle_unknown='error'; otherwise
        scored as the encoder scores unknowns, counted, and logged once under `warn`."""
        is_known = column.is_known
        unknown = [row for row, value in enumerate(values) if not is_known(value)]
        if not unknown:
            return
        mode = self.unknown_categories
        if mode == "reject" or column.unknown_is_error:
            raise BadRequestError(self._unknown_message(column, unknown[0], values))
        if self.on_unknown is not None:
            self.on_unknown(column.name, len(unknown))
        if mode == "warn" and column.name not in self._warned:
            self._warned.add(column.name)
            log.warning(
                "pipeline %s: column %r received unknown value %s (scored as the encoder "
                "scores unknowns; counted in logic_unknown_values_total; logged once per worker)",
                self.pipeline,
                column.name,
                show(values[unknown[0]]),
            )

    def _unknown_message(self, column: ColumnContract, row: int, values: Any) -> str:
        known = column.known_values
        shown = ", ".join(show(v) for v in known[:_MAX_KNOWN_SHOWN])
        more = (
            f" (and {len(known) - _MAX_KNOWN_SHOWN} more)" if len(known) > _MAX_KNOWN_SHOWN else ""
        )
        why = (
            "its encoder was fitted with handle_unknown='error'"
            if column.unknown_is_error
            else "this pipeline sets unknown_categories: reject"
        )
        return (
            f"column {column.name!r}, row {row}: {show(values[row])} is not a known category "
            f"({why}); send one of: {shown}{more}"
        )


def frame_from_columns(
    columns: dict[str, Any], schema: InputSchema, contract: Contract | None = None
) -> pd.DataFrame:
    """The DataFrame the transformers (and hooks) receive for these columns: a null in a
    category column is what the fitted transformers saw for missing values (NaN from pandas
    unless the contract says None or an imputer's marker), not Python's None."""
    frame: dict[str, Any] = {}
    for name, column in columns.items():
        kind = schema.kinds.get(name)
        if kind == NUMBER:
            frame[name] = column
        elif kind == CATEGORY:
            known = contract.columns.get(name) if contract is not None else None
            null = known.null_as if known is not None else math.nan
            values = [null if is_null(value) else value for value in column]
            frame[name] = pd.Series(values, dtype=object)  # pandas 3 would make None NaN
        else:  # unknown kind: let pandas infer, as pd.DataFrame(records) would
            frame[name] = pd.Series(column, dtype=object).infer_objects()
    return pd.DataFrame(frame)


def show(value: Any) -> str:
    """A value as the caller wrote it in JSON (99.0 from an integer column shows as 99)."""
    if isinstance(value, float | np.floating) and float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, np.generic):
        value = value.item()
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


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


def _missing(names: list[str], schema_columns: tuple[str, ...]) -> BadRequestError:
    return BadRequestError(
        f"missing column(s) {', '.join(map(repr, names))}; "
        f"this pipeline expects: {', '.join(schema_columns)}"
    )


def _contract_values(data: list | dict, expected: tuple[str, ...]) -> dict[str, list[Any]]:
    """The expected columns' raw values, from records or an object of columns."""
    present = set().union(*data) if isinstance(data, list) else set(data)
    missing = [name for name in expected if name not in present]
    if missing:
        raise _missing(missing, expected)
    if isinstance(data, dict):
        return {name: data[name] for name in expected}
    for row, record in enumerate(data):
        if len(record) < len(expected) or not all(name in record for name in expected):
            absent = [name for name in expected if name not in record]
            raise BadRequestError(
                f"record {row} has no {', '.join(map(repr, absent))}; every record "
                "needs every column (send null for a missing value)"
            )
    return {name: [record[name] for record in data] for name in expected}


def _numbers(values: list[Any], name: str) -> tuple[np.ndarray, int | None]:
    """A numeric column as float64 (null -> NaN) and its first null row."""
    null = None
    for row, value in enumerate(values):
        kind = type(value)
        if kind is float or kind is int:
            continue
        if value is None:
            null = row if null is None else null
            continue
        return _numbers_slowly(values, name)
    return np.array(values, dtype=np.float64), null


def _numbers_slowly(values: list[Any], name: str) -> tuple[np.ndarray, int | None]:
    """Numeric strings and numpy scalars are accepted; booleans and the rest are a 400."""
    column = pd.Series(values, dtype=object)
    booleans = column.map(lambda value: isinstance(value, bool | np.bool_)).to_numpy(dtype=bool)
    if booleans.any():
        row = int(np.flatnonzero(booleans)[0])
        raise BadRequestError(
            f"column {name!r}, row {row}: {str(column.iloc[row]).lower()} is a boolean, not a "
            "number (send a number such as 0 or 1, or null for a missing value)"
        )
    converted = pd.to_numeric(column, errors="coerce")
    bad = converted.isna().to_numpy() & column.notna().to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise BadRequestError(
            f"column {name!r}, row {row}: {column.iloc[row]!r} is not a number "
            "(send a number, or null for a missing value)"
        )
    array = converted.to_numpy(dtype=np.float64)
    nulls = np.flatnonzero(np.isnan(array))
    return array, int(nulls[0]) if len(nulls) else None


def _scalars(values: list[Any], name: str) -> int | None:
    """Every value is a string, a number or null; the first null row."""
    null = None
    for row, value in enumerate(values):
        if is_null(value):
            null = row if null is None else null
        elif isinstance(value, list | dict):
            raise BadRequestError(
                f"column {name!r}, row {row}: {value!r} is not a single value "
                "(send a string, a number or null)"
            )
    return null


def _open_frame(data: list | dict, schema: InputSchema) -> tuple[pd.DataFrame, dict[str, int]]:
    """An open contract (a hook's `columns:`, or none): every column sent is kept for the hook;
    the declared ones must be there and numeric ones must be numbers."""
    try:
        frame = pd.DataFrame(data)
    except (ValueError, TypeError) as error:
        raise BadRequestError(f'"data" is not a table: {error}') from None
    missing = [name for name in schema.columns if name not in frame.columns]
    if missing:
        raise _missing(missing, schema.columns)
    for name in schema.columns:
        if schema.kinds.get(name) == NUMBER:
            frame[name] = _numbers(frame[name].tolist(), name)[0]
    isna = frame.isna().to_numpy()
    nulls = {}
    for position in np.flatnonzero(isna.any(axis=0)):
        nulls[str(frame.columns[position])] = int(np.flatnonzero(isna[:, position])[0])
    return frame, nulls


def compiled_schema(schema: InputSchema, contract: Contract) -> InputSchema:
    """The schema of the compiled path: columns of unknown kind feed float inputs, so they are
    validated as numbers (a column only a "drop" branch reads stays as it is)."""
    used = {name for name, column in contract.columns.items() if column.used}
    kinds = {n: NUMBER if k == ANY and n in used else k for n, k in schema.kinds.items()}
    return InputSchema(schema.columns, kinds, schema.closed)

"""The parity gate: a compiled pipeline serves only if it computes what scikit-learn computes.

Rows come from the fitted state itself (every known category, an unknown one where the
encoder accepts it, numbers at and beyond the fitted means, scales, ranges and bin edges,
a null wherever an imputer fills it or an encoder scores it) plus the optional `samples:`
file. Differences are measured against the float32 the graph receives anyway:
|compiled - sklearn| / max(1, |sklearn|).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from logic_service.errors import ConfigError, LogicError
from logic_service.pipeline.contract import FLOAT, INT64, STRING, Contract

_GENERIC = (0.0, 1.0, -1.0, 0.5, 1e3, -1e3)
# What a refused row raises on the scikit-learn side (a 400 the service would answer).
_REFUSALS = (LogicError, ValueError, TypeError, KeyError)
UNKNOWN_CATEGORY = "__unseen_category__"


@dataclass(frozen=True)
class ParityResult:
    """How a compiled pipeline compared with scikit-learn on the parity rows."""

    rows: int
    max_diff: float
    passed: bool
    detail: str = ""


def load_samples(path: Path | None, where: str) -> list[dict[str, Any]]:
    """The `samples:` file: a JSON list of records (or {"data": [...]}, a /get_score body)."""
    if path is None:
        return []
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{where}: samples file {path} does not exist") from None
    except (OSError, ValueError) as error:
        raise ConfigError(f"{where}: samples file {path} is not JSON: {error}") from None
    if isinstance(document, dict) and "data" in document:
        document = document["data"]
    if isinstance(document, dict):
        document = [document]
    if not isinstance(document, list) or not all(isinstance(r, dict) for r in document):
        raise ConfigError(f"{where}: samples file {path} must hold a JSON list of records")
    return document


def generated_rows(contract: Contract) -> list[dict[str, Any]]:
    """Rows that walk every column through its fitted state; other columns cycle along."""
    values: dict[str, list[Any]] = {}
    for column in contract.columns.values():
        if column.categories is not None:
            known = column.known_values
            choices: list[Any] = list(known)
            if not column.unknown_is_error:
                choices.append(_unknown_for(column.onnx_type, known))
        elif column.onnx_type == STRING:
            choices = ["a", "b"]
        else:
            probes = sorted(column.probes)
            span = (probes[-1] - probes[0]) if probes else 0.0
            extra = [probes[0] - span - 1.0, probes[-1] + span + 1.0] if probes else []
            choices = [*probes, *extra, *_GENERIC]
        values[column.name] = choices or [0.0]
    count = max((len(choices) for choices in values.values()), default=0)
    rows = [
        {
            name: choices[(i + offset) % len(choices)]
            for offset, (name, choices) in enumerate(values.items())
        }
        for i in range(count)
    ]
    for column in contract.columns.values():
        scored_as_unknown = column.categories is not None and not column.unknown_is_error
        if (column.nullable or scored_as_unknown) and rows:
            rows.append({**rows[0], column.name: None})
    return rows


def example_rows(contract: Contract, count: int = 2) -> list[dict[str, Any]]:
    """A short, valid example body: known categories and fitted typical values only."""
    rows = []
    for i in range(count):
        row: dict[str, Any] = {}
        for column in contract.columns.values():
            if column.categories:
                known = column.known_values
                row[column.name] = known[i % len(known)] if known else None
            elif column.onnx_type == STRING:
                row[column.name] = "a"
            else:
                probes = sorted(column.probes)
                value = probes[(len(probes) // 2 + i) % len(probes)] if probes else float(i)
                row[column.name] = round(value, 4)
        rows.append(row)
    return rows


def compare(
    reference: Callable[[list[dict[str, Any]]], Any],
    compiled: Callable[[list[dict[str, Any]]], Any],
    rows: list[dict[str, Any]],
    atol: float,
) -> ParityResult:
    """Run both engines row by row, then on all accepted rows at once (the batched path).

    A row scikit-learn refuses (a 400 it would answer) is skipped; scikit-learn failing
    otherwise, refusing every row, a row the compiled side cannot score, or a difference beyond
    `atol` fails the gate and names the row.
    """
    worst, where = 0.0, ""
    accepted = []
    first_refusal = ""
    for index, row in enumerate(rows):
        try:
            expected = np.asarray(reference([row]))
        except _REFUSALS as error:  # scikit-learn refuses this row: nothing to compare
            first_refusal = first_refusal or f"row {index}: {error}"
            continue
        except Exception as error:  # scikit-learn itself is broken here (e.g. version skew)
            detail = (str(error).splitlines() or [""])[0]
            return ParityResult(
                len(rows),
                math.inf,
                False,
                f"scikit-learn failed on row {index}: {type(error).__name__}: {detail}",
            )
        accepted.append(row)
        try:
            actual = np.asarray(compiled([row]))
        except Exception as error:  # the compiled side must score every row
            return ParityResult(len(rows), math.inf, False, f"row {index} failed: {error}")
        diff = _difference(expected, actual)
        if diff > worst or math.isnan(diff):
            worst, where = diff, f"row {index} {row}"
        if math.isnan(diff) or diff > atol:
            return ParityResult(len(rows), diff, False, f"max |diff| {diff:.3g} at {where}")
    if not accepted:
        return ParityResult(
            len(rows), math.inf, False, f"scikit-learn refused every row ({first_refusal})"
        )
    if len(accepted) > 1:
        try:
            diff = _difference(np.asarray(reference(accepted)), np.asarray(compiled(accepted)))
        except Exception as error:  # the batch must score like its rows did
            return ParityResult(len(rows), math.inf, False, f"batch of rows failed: {error}")
        if math.isnan(diff) or diff > atol:
            return ParityResult(len(rows), diff, False, f"max |diff| {diff:.3g} in the batch")
        worst = max(worst, diff)
    return ParityResult(len(rows), worst, True, where)


def _difference(expected: np.ndarray, actual: np.ndarray) -> float:
    if expected.shape != actual.shape:
        if expected.size != actual.size:
            return math.inf
        actual = actual.reshape(expected.shape)
    if expected.dtype.kind not in "iufb" or actual.dtype.kind not in "iufb":
        return 0.0 if np.array_equal(expected.astype(str), actual.astype(str)) else math.inf
    if expected.dtype.kind in "iub" and actual.dtype.kind in "iub":
        return 0.0 if np.array_equal(expected, actual) else math.inf
    expected = expected.astype(np.float64)
    actual = actual.astype(np.float64)
    same = (np.isnan(expected) & np.isnan(actual)) | (expected == actual)  # NaN, or one infinity
    scale = np.maximum(1.0, np.abs(expected))
    with np.errstate(invalid="ignore"):  # inf - inf where `same` already answers
        diff = np.where(same, 0.0, np.abs(actual - expected) / scale)
    return float(np.max(diff)) if diff.size else 0.0


def _unknown_for(onnx_type: str, known: list[Any]) -> Any:
    if onnx_type == STRING:
        return UNKNOWN_CATEGORY
    numbers = [v for v in known if isinstance(v, int | float)]
    if onnx_type == INT64:
        return int(max(numbers, default=0)) + 1
    assert onnx_type == FLOAT
    return float(max(numbers, default=0.0)) + 1.5

"""`assemble:` in the pipeline file: separately fitted transformers side by side.

Algorithm teams often fit one encoder per column (a LabelEncoder on a 1-D column, a
OneHotEncoder or StandardScaler on a few) and glue them in a preprocess hook with pandas and
`np.hstack`. A hook is Python and is never compiled. `assemble:` says the same as data: each
part reads the columns it names and their outputs are placed side by side in the order
written. `Assembled` has what a fitted ColumnTransformer offers the rest of the kit
(`transformers_`, `feature_names_in_`, `transform`), so the contract, validation, the parity
gate and /openapi.json read it unchanged, and it compiles (`onnx_converters` parses it).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from logic_service.errors import ConfigError
from logic_service.pipeline.artifacts import LoadedArtifact, file_sha256
from logic_service.pipeline.runtime import dense


class Assembled:
    """Fitted parts, each on its own columns, outputs concatenated in order (float64)."""

    def __init__(self, parts: Sequence[tuple[str, Sequence[str], Any]]) -> None:
        # (name, fitted part, columns), as ColumnTransformer.transformers_ holds them.
        self.transformers_ = [(name, part, list(columns)) for name, columns, part in parts]
        names = list(dict.fromkeys(column for _, columns, _ in parts for column in columns))
        self.feature_names_in_ = np.asarray(names, dtype=object)
        self.n_features_in_ = len(names)

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """What the glue computed: each part on its columns, then `np.hstack`."""
        blocks = []
        for name, part, columns in self.transformers_:
            try:
                blocks.append(_transform_part(part, columns, frame))
            except (ValueError, TypeError, KeyError) as error:
                raise ValueError(f"{name} on {', '.join(columns)}: {error}") from None
        return np.hstack(blocks)


def assembled_artifact(
    parts: Sequence[tuple[Sequence[str], LoadedArtifact]], source: Path, where: str
) -> LoadedArtifact:
    """The parts as one transformer defined by the pipeline file `source`; a part that does
    not fit the columns it is given is a ConfigError naming it."""
    for index, (columns, item) in enumerate(parts):
        _check_part(item, list(columns), f"{where}: assemble[{index}]: {item.path.name}")
    assembled = Assembled([(item.path.name, columns, item.obj) for columns, item in parts])
    return LoadedArtifact(assembled, source, file_sha256(source), None)


def _transform_part(part: Any, columns: list[str], frame: pd.DataFrame) -> np.ndarray:
    if _is_label_encoder(part):
        return part.transform(frame[columns[0]].to_numpy()).reshape(-1, 1).astype(np.float64)
    # Fitted on a DataFrame: give it one (it checks the names); fitted on arrays: an array.
    data = frame[columns] if hasattr(part, "feature_names_in_") else frame[columns].to_numpy()
    return np.asarray(dense(part.transform(data)), dtype=np.float64)


def _check_part(item: LoadedArtifact, columns: list[str], where: str) -> None:
    obj = item.obj
    shown = ", ".join(columns)
    if not callable(getattr(obj, "transform", None)):
        raise ConfigError(
            f"{where} ({type(obj).__name__}) has no transform(); is it a fitted transformer?"
        )
    if _is_label_encoder(obj):
        if len(columns) != 1:
            raise ConfigError(
                f"{where} is a LabelEncoder: it encodes exactly one column, the pipeline "
                f"file gives {len(columns)} ({shown})"
            )
        if not hasattr(obj, "classes_"):
            raise ConfigError(f"{where} is a LabelEncoder that was never fitted")
        return
    fitted = getattr(obj, "feature_names_in_", None)
    if fitted is not None and [str(name) for name in fitted] != columns:
        raise ConfigError(
            f"{where} was fitted on columns {', '.join(map(str, fitted))}; the pipeline file "
            f"gives {shown} (list the same columns in that order)"
        )
    width = getattr(obj, "n_features_in_", None)
    if width is not None and width != len(columns):
        raise ConfigError(
            f"{where} was fitted on {width} column(s); the pipeline file gives {len(columns)} "
            f"({shown})"
        )


def _is_label_encoder(obj: Any) -> bool:
    from sklearn.preprocessing import LabelEncoder

    return isinstance(obj, LabelEncoder)

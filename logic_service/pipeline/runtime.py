"""A pipeline at run time: its loaded artifacts, its input contract, and the steps of a request.

Built once per process by `loader.load_pipelines` (everything read from disk, compiled and
checked for parity there, at start-up); per request only in-memory work happens, in order:
validation (`validation.Validator`, one pass) -> features -> model -> postprocess. A compiled
pipeline builds its features from the validated columns without pandas; a DataFrame is made
only for the scikit-learn path or a hook.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from logic_service.config import PipelineSpec
from logic_service.errors import BadRequestError
from logic_service.pipeline.artifacts import LoadedArtifact
from logic_service.pipeline.compiled import CompiledFeatures, CompiledModel
from logic_service.pipeline.contract import Contract, InputSchema
from logic_service.pipeline.parity import ParityResult
from logic_service.pipeline.validation import Validator, ValidRequest, show

log = logging.getLogger(__name__)
ONNX, SKLEARN = "onnx", "sklearn"
_FLOAT32_MAX = float(np.finfo(np.float32).max)


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
    # The request checks for the engine that serves (set by the loader once it is chosen).
    validator: Validator | None = None
    # How it did on its own rows at start-up (self_test.SelfTest, set by the loader).
    self_test: Any = None
    # Served from a compiled build: its report, and notes on sources not there to check.
    build: dict[str, Any] | None = None
    build_notes: list[str] = field(default_factory=list)
    # The `samples:` rows read at start (none when a build ships without its samples file).
    samples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def graph_backed(self) -> bool:
        return self.spec.graph is not None

    @property
    def compiled(self) -> bool:
        return self.engine == ONNX

    @property
    def on_unknown(self) -> Callable[[str, int], None] | None:
        """Counts unknown categories: on_unknown(column, count) (set by the app's metrics)."""
        return self.validator.on_unknown if self.validator is not None else None

    @on_unknown.setter
    def on_unknown(self, count: Callable[[str, int], None] | None) -> None:
        assert self.validator is not None
        self.validator.on_unknown = count

    def prepare(self, data: Any) -> Prepared:
        """Validate `data` (one pass, 400 naming the problem), then compute the features."""
        assert self.validator is not None
        request = self.validator.validate(data)
        return Prepared(self.features(request), request.rows, request.frame)

    def features(self, request: ValidRequest) -> Any:
        """The model's input for a validated request: the compiled graph, the transformers
        in order, or the preprocess hook. A null or a number the model cannot take that
        surfaces as NaN or infinity is a 400 naming its column and row."""
        if self.preprocess_hook is not None:
            return self._hook_features(request.frame)
        if self.compiled:
            assert request.columns is not None
            features = self._compiled_features(request.columns)
        elif self.transformers:
            features = self._transform(request.frame)
        else:
            return request.frame  # a model alone reads the validated frame itself
        unscorable = (
            isinstance(features, np.ndarray)
            and features.dtype.kind == "f"
            and not np.isfinite(features).all()
        )
        if unscorable:
            self._refuse_non_finite(request)
        return features

    def open_sessions(self) -> None:
        """Open this process's onnxruntime sessions now (e.g. from gunicorn's post_fork) so
        the first request of a worker does not pay for it; never call it before the fork."""
        for compiled in (self.compiled_features, self.compiled_model):
            if compiled is not None:
                compiled.program.session()

    def close_sessions(self) -> None:
        """Drop this process's sessions (the master, after its start-up checks, before forking)."""
        for compiled in (self.compiled_features, self.compiled_model):
            if compiled is not None:
                compiled.program.forget()

    def loaded(self) -> list[LoadedArtifact]:
        """Every artifact unpickled for this pipeline (none when served from a compiled build)."""
        found = [*self.transformers, *self.artifacts.values()]
        if self.model is not None:
            found.append(self.model)
        return found

    def _compiled_features(self, columns: dict[str, Any]) -> np.ndarray:
        if self.compiled_features is not None:
            return self.compiled_features.run(columns)
        with np.errstate(over="ignore"):  # a model alone: the columns are its features
            return np.column_stack([np.asarray(v, dtype=np.float32) for v in columns.values()])

    def _transform(self, frame: pd.DataFrame | None) -> Any:
        current: Any = frame
        for item in self.transformers:
            try:
                current = item.obj.transform(current)
            except (ValueError, TypeError, KeyError) as error:
                raise BadRequestError(
                    f"pipeline {self.name!r}: transformer {item.path.name} rejected the input: "
                    f"{error}".replace("\n", " ")
                ) from None
        return dense(current)

    def _hook_features(self, frame: pd.DataFrame | None) -> Any:
        objects = {key: item.obj for key, item in self.artifacts.items()}
        assert self.preprocess_hook is not None
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
            return {key: dense(value) for key, value in result.items()}
        return dense(result)

    def _refuse_non_finite(self, request: ValidRequest) -> None:
        """Name the cause of NaN/infinity in the features: a number beyond float32 (the
        compiled engine computes in it), else a null nothing imputes. Without a cause the
        features go on and the graph target refuses them."""
        beyond = (
            _first_out_of_range(request.columns)
            if self.compiled and request.columns is not None
            else None
        )
        if beyond:
            raise BadRequestError(
                f"{beyond} is beyond the float32 range (about ±3.4e38) the model computes "
                "in: send a smaller number"
            )
        where = request.first_null(self._not_imputed)
        if where is None and not self.compiled:
            where = request.first_null()
        if where is not None:
            raise BadRequestError(
                f"{where} is null and pipeline {self.name!r} does not impute missing "
                "values: send a value"
            )

    def _not_imputed(self, column: str) -> bool:
        """A null in this column cannot be filled by the transformers."""
        if self.contract is None:
            return True
        known = self.contract.columns.get(column)
        return known is None or not known.nullable

    def predict_local(self, features: Any) -> Any:
        """The in-process model's `method` on the features (its compiled graph when it has one)."""
        if self.compiled_model is not None:
            return self.compiled_model.run(features)
        assert self.model is not None
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
        loaded = self.loaded()
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
            assert spec.model is not None
            model = {"kind": "sklearn", "path": str(spec.model.path), "method": spec.method}
        artifacts = [item.describe() for item in loaded]
        warnings = [note for item in loaded for note in item.warnings]
        if self.build is not None:
            artifacts = [dict(source) for source in self.build.get("sources", [])]
            warnings = list(self.build_notes)
        return {
            "name": spec.name,
            "columns": self.schema.describe(),
            "max_rows": spec.max_rows,
            "engine": self.describe_engine(),
            "unknown_categories": spec.unknown_categories,
            "preprocess": spec.preprocess,
            "postprocess": spec.postprocess,
            "model": model,
            "artifacts": artifacts,
            "warnings": warnings,
            "self_test": self.self_test.describe() if self.self_test is not None else None,
            "build": _build_summary(self.build),
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


def _build_summary(report: dict[str, Any] | None) -> dict[str, Any] | None:
    """What /pipelines says about the compiled build a pipeline serves from."""
    if report is None:
        return None
    return {
        "built_at": report.get("built_at"),
        "built_with": report.get("built_with"),
        "parity": report.get("parity"),
        "self_test": report.get("self_test"),
    }


def _first_out_of_range(columns: dict[str, Any]) -> str | None:
    for name, values in columns.items():
        if isinstance(values, np.ndarray) and values.dtype.kind == "f":
            beyond = np.flatnonzero(np.abs(np.nan_to_num(values)) > _FLOAT32_MAX)
            if len(beyond):
                return f"column {name!r}, row {int(beyond[0])}: {show(values[beyond[0]])}"
    return None


def dense(value: Any) -> Any:
    """Sparse matrices and DataFrames -> ndarray (what both the graph tier and JSON want)."""
    if _is_sparse(value):
        return value.toarray()
    if isinstance(value, pd.DataFrame | pd.Series):
        return value.to_numpy()
    return value


def _is_sparse(value: Any) -> bool:
    """A scipy sparse matrix, recognised without importing scipy (compiled pipelines never do)."""
    return type(value).__module__.startswith("scipy.sparse") and callable(
        getattr(value, "toarray", None)
    )

"""A pipeline at run time: its loaded artifacts, its input contract, and the steps of a request.

Built once per process by `load_pipelines` (everything read from disk here, at start-up);
per request only in-memory work happens: validate -> features -> model -> postprocess.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from logic_service.artifacts import LoadedArtifact, import_modules, load_artifact, resolve_hook
from logic_service.config import PipelineSpec, ServiceConfig
from logic_service.errors import BadRequestError, ConfigError
from logic_service.validation import InputSchema, first_null, infer_schema, to_frame

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    """One request's features, ready for a model; `frame` only when a hook needs it."""

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

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def graph_backed(self) -> bool:
        return self.spec.graph is not None

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
        """The in-process scikit-learn model's `method` on the features."""
        assert self.model is not None
        try:
            return getattr(self.model.obj, self.spec.method)(features)
        except (ValueError, TypeError) as error:
            raise BadRequestError(
                f"pipeline {self.name!r}: model {self.model.path.name} rejected the features: "
                f"{error}".replace("\n", " ")
            ) from None

    def prepare(self, data: Any) -> Prepared:
        """The request's `data` checked and turned into dense features (400 otherwise)."""
        frame = self.frame(data)
        return Prepared(self.features(frame), len(frame), frame)

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
            "preprocess": spec.preprocess,
            "postprocess": spec.postprocess,
            "model": model,
            "artifacts": [item.describe() for item in loaded],
            "warnings": [note for item in loaded for note in item.warnings],
        }


def load_pipelines(config: ServiceConfig) -> dict[str, Pipeline]:
    """Load every artifact and hook the file names; any failure is a ConfigError naming it."""
    glue = import_modules(config.imports, config.base_dir)
    return {name: _load_one(spec, config, glue) for name, spec in config.pipelines.items()}


def _load_one(spec: PipelineSpec, config: ServiceConfig, glue: list[ModuleType]) -> Pipeline:
    def load(ref: Any) -> LoadedArtifact:
        return load_artifact(ref, glue, config.skops_trusted)

    transformers = [load(ref) for ref in spec.transformers]
    artifacts = {key: load(ref) for key, ref in spec.artifacts.items()}
    model = load(spec.model) if spec.model is not None else None
    where = f"{config.path}: pipeline {spec.name!r}"
    if model is not None and not callable(getattr(model.obj, spec.method, None)):
        raise ConfigError(
            f"{where}: model {model.path.name} ({type(model.obj).__name__}) has no "
            f"method {spec.method!r}; set 'method:' to one it has"
        )
    for item in transformers:
        if not callable(getattr(item.obj, "transform", None)):
            raise ConfigError(
                f"{where}: transformer {item.path.name} ({type(item.obj).__name__}) has no "
                "transform(); is it a fitted scikit-learn transformer?"
            )
    # Only the first step sees the raw request; a model alone sees it when nothing precedes it.
    if transformers:
        raw_facing = [transformers[0].obj]
    elif model is not None and spec.preprocess is None:
        raw_facing = [model.obj]
    else:
        raw_facing = []
    pipeline = Pipeline(
        spec=spec,
        transformers=transformers,
        artifacts=artifacts,
        model=model,
        schema=infer_schema(raw_facing, spec.columns),
        preprocess_hook=resolve_hook(spec.preprocess, config.base_dir, f"{where}: preprocess")
        if spec.preprocess
        else None,
        postprocess_hook=resolve_hook(spec.postprocess, config.base_dir, f"{where}: postprocess")
        if spec.postprocess
        else None,
    )
    log.info(
        "pipeline %s loaded: %d column(s), model %s",
        spec.name,
        len(pipeline.schema.columns),
        spec.graph.describe() if spec.graph else spec.method,
    )
    return pipeline


def _dense(value: Any) -> Any:
    """Sparse matrices and DataFrames -> ndarray (what both the graph tier and JSON want)."""
    if sparse.issparse(value):
        return value.toarray()
    if isinstance(value, pd.DataFrame | pd.Series):
        return value.to_numpy()
    return value

"""Build a service's pipelines at start-up: load artifacts and hooks, read the contract,
compile to ONNX and pass the parity gate, or fall back to scikit-learn saying why.

Everything read from disk, compiled and checked happens here, once per process (in the
gunicorn master under preload); `runtime.Pipeline` is what it returns, ready for requests.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd

from logic_service.config import ArtifactRef, PipelineSpec, ServiceConfig
from logic_service.errors import ConfigError
from logic_service.pipeline.artifacts import (
    Inspected,
    LoadedArtifact,
    import_modules,
    inspect_artifact,
    load_artifact,
    resolve_hook,
    running_sklearn,
)
from logic_service.pipeline.assembled import assembled_artifact
from logic_service.pipeline.bundle import REPORT, bundle_dir, check_fresh, read_bundle
from logic_service.pipeline.compiled import (
    CompiledFeatures,
    CompiledModel,
    CompileError,
    OnnxProgram,
    compile_features,
    compile_model,
)
from logic_service.pipeline.contract import STRING, infer_schema, read_contract
from logic_service.pipeline.parity import ParityResult, compare, generated_rows, load_samples
from logic_service.pipeline.pickle_scan import version_key
from logic_service.pipeline.runtime import ONNX, SKLEARN, Pipeline
from logic_service.pipeline.self_test import self_test
from logic_service.pipeline.validation import Validator, compiled_schema

log = logging.getLogger(__name__)


def load_pipelines(config: ServiceConfig) -> dict[str, Pipeline]:
    """Every pipeline the file names, ready to serve; any failure is a ConfigError naming it."""
    glue = import_modules(config.imports, config.base_dir)
    return {name: load_pipeline(spec, config, glue) for name, spec in config.pipelines.items()}


def load_pipeline(
    spec: PipelineSpec,
    config: ServiceConfig,
    glue: Sequence[ModuleType],
    *,
    require_compiled: bool = False,
) -> Pipeline:
    """From its compiled build when there is one (nothing is unpickled then), else from its
    artifacts (compiled here when it can be, or served by scikit-learn); then self-tested.
    `require_compiled` (the compile command) refuses what cannot be compiled."""
    where = f"{config.path}: pipeline {spec.name!r}"
    folder = bundle_dir(config, spec.name)
    from_build = not require_compiled and spec.compilable and (folder / REPORT).is_file()
    if from_build:
        pipeline = _from_bundle(spec, config, folder, where)
        samples = (
            load_samples(spec.samples, where) if spec.samples and spec.samples.is_file() else []
        )
    else:
        samples = load_samples(spec.samples, where)
        pipeline = _from_artifacts(spec, config, glue, where)
        _choose_engine(pipeline, samples, where, require_compiled)
    pipeline.samples = samples
    pipeline.validator = request_validator(pipeline)
    pipeline.self_test = self_test(pipeline, samples, where)
    log.info(
        "pipeline %s loaded: %d column(s), model %s, engine %s (%s)",
        spec.name,
        len(pipeline.schema.columns),
        spec.graph.describe() if spec.graph else spec.method,
        pipeline.engine,
        pipeline.engine_reason,
    )
    return pipeline


def _from_artifacts(
    spec: PipelineSpec, config: ServiceConfig, glue: Sequence[ModuleType], where: str
) -> Pipeline:
    """Unpickle the pipeline's files, after reading which scikit-learn wrote them."""
    inspected = {ref.path: inspect_artifact(ref) for _, ref in spec.artifact_refs()}
    _check_versions(spec, config, list(inspected.values()), where)

    def load(ref: ArtifactRef) -> LoadedArtifact:
        return load_artifact(ref, glue, config.skops_trusted, inspected[ref.path])

    transformers = [load(ref) for ref in spec.transformers]
    artifacts = {key: load(ref) for key, ref in spec.artifacts.items()}
    if spec.assemble:  # the parts are listed as artifacts; their assembly is the transformer
        parts = [(part.columns, load(part.artifact)) for part in spec.assemble]
        artifacts = {f"assemble[{i}]": item for i, (_, item) in enumerate(parts)}
        transformers = [assembled_artifact(parts, config.path, where)]
    model = load(spec.model) if spec.model is not None else None
    if model is not None and not callable(getattr(model.obj, spec.method, None)):
        raise ConfigError(
            f"{where}: model {model.path.name} ({type(model.obj).__name__}) has no "
            f"method {spec.method!r}; set 'method:' to one it has"
        )
    for item in transformers:
        if not callable(getattr(item.obj, "transform", None)):
            raise ConfigError(
                f"{where}: transformer {item.path.name} ({type(item.obj).__name__}) has no "
                f"transform(){_what_it_holds(item)}"
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
        preprocess_hook=_hook(spec.preprocess, config, f"{where}: preprocess"),
        postprocess_hook=_hook(spec.postprocess, config, f"{where}: postprocess"),
    )
    if raw_facing and pipeline.schema.columns and spec.preprocess is None:
        pipeline.contract = read_contract(raw_facing[0], pipeline.schema)
    return pipeline


def _from_bundle(spec: PipelineSpec, config: ServiceConfig, folder: Path, where: str) -> Pipeline:
    """A compiled build: its graphs and contract, checked against the sources it was made of."""
    bundle = read_bundle(folder)
    notes = check_fresh(bundle, spec, config)
    report = bundle.report
    parity = ParityResult(**report["parity"]) if report.get("parity") else None
    built_with = report.get("built_with", {}).get("scikit-learn", "?")
    pipeline = Pipeline(
        spec=spec,
        transformers=[],
        artifacts={},
        model=None,
        schema=bundle.schema,
        postprocess_hook=_hook(spec.postprocess, config, f"{where}: postprocess"),
        contract=bundle.contract,
        engine=ONNX,
        engine_reason=f"compiled build {folder} (scikit-learn {built_with}): nothing unpickled",
        parity=parity,
        compiled_features=CompiledFeatures(OnnxProgram(bundle.features), bundle.contract)
        if bundle.features is not None
        else None,
        compiled_model=CompiledModel(OnnxProgram(bundle.model), **bundle.model_output)
        if bundle.model is not None and bundle.model_output is not None
        else None,
        build=report,
        build_notes=notes,
    )
    for note in notes:
        log.info("pipeline %s: %s", spec.name, note)
    return pipeline


def _hook(name: str | None, config: ServiceConfig, where: str) -> Any:
    """The `module:function` a pipeline names (preprocess or postprocess), if any."""
    return resolve_hook(name, config.base_dir, where) if name else None


def _check_versions(
    spec: PipelineSpec, config: ServiceConfig, inspected: list[Inspected], where: str
) -> None:
    """A file pickled by another scikit-learn minor release is not unpickled here: it is
    served from its compiled build, or by a service running its own version."""
    running = running_sklearn() or "none"
    for item in inspected:
        pickled = item.scan.sklearn_version
        if pickled is None or version_key(pickled)[:2] == version_key(running)[:2]:
            continue
        if spec.compilable:
            fix = (
                f"compile it in scikit-learn {pickled}'s own environment: logic-service compile "
                f"--config {config.path}"
            )
        else:
            why = "a preprocess hook" if spec.preprocess else "engine: sklearn"
            fix = (
                f"it is served through its pickles ({why}), so serve it with scikit-learn "
                f"{pickled}: docker build -f Dockerfile.logic --build-arg SKLEARN_VERSION={pickled} ."
            )
        raise ConfigError(
            f"{where}: {item.ref.path.name} was pickled by scikit-learn {pickled} and this "
            f"service runs {running}, which does not read it reliably; {fix}"
        )


def _what_it_holds(item: LoadedArtifact) -> str:
    """Why an object without transform() is there: a dict of objects is the common case."""
    if isinstance(item.obj, dict):
        keys = ", ".join(repr(k) for k in list(item.obj)[:5])
        return (
            f": it is a dict of objects ({keys}); name each one under artifacts: and use a "
            "preprocess hook, or save the fitted transformer alone"
        )
    return "; is it a fitted scikit-learn transformer?"


def request_validator(pipeline: Pipeline) -> Validator:
    """The checks requests pass on the engine that serves: the compiled one validates columns
    of unknown kind as numbers and builds a frame only for a postprocess hook."""
    spec, contract = pipeline.spec, pipeline.contract
    compiled = pipeline.compiled and contract is not None
    return Validator(
        spec.name,
        compiled_schema(pipeline.schema, contract) if compiled else pipeline.schema,
        contract,
        max_rows=spec.max_rows,
        unknown_categories=spec.unknown_categories,
        build_frame=not compiled or pipeline.postprocess_hook is not None,
    )


def _choose_engine(
    pipeline: Pipeline, samples: list[dict[str, Any]], where: str, required: bool = False
) -> None:
    """Compile and run the parity gate; fall back to scikit-learn with one log line saying why."""
    spec = pipeline.spec
    if spec.engine == SKLEARN and not required:
        pipeline.engine_reason = "engine: sklearn in the pipeline file"
        return
    try:
        _compile(pipeline, samples)
    except CompileError as error:
        reason = str(error)
        pipeline.compiled_features = pipeline.compiled_model = None
        if required:
            raise ConfigError(reason) from None
        if spec.engine == ONNX:
            raise ConfigError(
                f"{where}: engine 'onnx' cannot serve: {reason}; fix the artifact or set "
                "engine: auto (falls back to scikit-learn)"
            ) from None
        prefix = "" if pipeline.preprocess_hook is not None else "fallback: "
        pipeline.engine, pipeline.engine_reason = SKLEARN, f"{prefix}{reason}"
        # A hook is glue code by design, not a failure: say so at info level.
        level = logging.INFO if pipeline.preprocess_hook is not None else logging.WARNING
        log.log(level, "pipeline %s: serving through scikit-learn: %s", pipeline.name, reason)
        return
    pipeline.engine = ONNX
    parity = pipeline.parity
    assert parity is not None
    pipeline.engine_reason = "compiled: parity passed"
    log.info(
        "pipeline %s: serving through onnxruntime (parity max |diff| %.3g on %d rows)",
        pipeline.name,
        parity.max_diff,
        parity.rows,
    )


def _compile(pipeline: Pipeline, samples: list[dict[str, Any]]) -> None:
    """Fill compiled_features/compiled_model and parity, or raise CompileError saying why."""
    spec = pipeline.spec
    if pipeline.preprocess_hook is not None:
        raise CompileError("the preprocess hook is Python glue code and is not compiled")
    if pipeline.contract is None:
        raise CompileError(
            "no column contract: the first step has no feature_names_in_ (fit it on a DataFrame)"
        )
    contract = pipeline.contract
    if pipeline.transformers:
        pipeline.compiled_features = compile_features(
            [item.obj for item in pipeline.transformers], contract
        )
    elif contract.problem or any(c.onnx_type == STRING for c in contract.columns.values()):
        raise CompileError("the model reads non-numeric columns directly")
    rows = [*samples, *generated_rows(contract)]
    # Both sides see every row: unknown categories go to the engines, which must agree on them.
    reference = Validator(
        spec.name, pipeline.schema, contract, max_rows=len(rows) or 1, unknown_categories="allow"
    )
    compiled = Validator(
        spec.name,
        compiled_schema(pipeline.schema, contract),
        max_rows=len(rows) or 1,
        unknown_categories="allow",
        build_frame=False,
    )
    if pipeline.model is not None:
        width = getattr(pipeline.model.obj, "n_features_in_", None)
        if width is None and rows:
            width = np.asarray(_sklearn_features(pipeline, reference, rows[:1])).shape[1]
        if width is None:
            raise CompileError("the model does not say how many features it takes")
        pipeline.compiled_model = compile_model(pipeline.model.obj, spec.method, int(width))

    def sklearn_side(batch: list[dict[str, Any]]) -> Any:
        features = _sklearn_features(pipeline, reference, batch)
        if pipeline.model is None:
            return features
        return getattr(pipeline.model.obj, spec.method)(features)

    def compiled_side(batch: list[dict[str, Any]]) -> Any:
        request = compiled.validate(batch)
        assert request.columns is not None
        features = pipeline._compiled_features(request.columns)
        if pipeline.compiled_model is None:
            return features
        return pipeline.compiled_model.run(features)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns on the unknown categories we send
        result = compare(sklearn_side, compiled_side, rows, spec.parity_atol)
    pipeline.close_sessions()  # the master must not fork with a live onnxruntime session
    pipeline.parity = result
    if not result.passed:
        raise CompileError(
            f"parity failed (atol {spec.parity_atol:g}): {result.detail}"[:400].replace("\n", " ")
        )


def _sklearn_features(pipeline: Pipeline, validator: Validator, rows: list[dict[str, Any]]) -> Any:
    """What the scikit-learn path computes for `rows` (the parity gate's reference)."""
    features = pipeline._transform(validator.validate(rows).frame)
    if isinstance(features, pd.DataFrame):
        return features.to_numpy(dtype=np.float64)
    return features

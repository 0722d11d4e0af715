"""The pipeline file (YAML) -> typed, validated objects. No artifact is loaded here.

Unknown keys are errors: a typo such as `grpah_model:` must stop the start, not be ignored.
Relative paths resolve against the folder holding the file.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from logic_service.errors import ConfigError
from logic_service.traffic.spec import TrafficSpec, parse_traffic

METHODS = ("predict", "predict_proba", "decision_function")
DEFAULT_MAX_ROWS = 10_000
_HOOK = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_TOP_KEYS = {
    "graph_service_url",
    "default",
    "max_rows",
    "imports",
    "skops_trusted",
    "compiled_dir",
    "pipelines",
}
DEFAULT_COMPILED_DIR = "compiled"
_PIPELINE_KEYS = {
    "transformer",
    "assemble",
    "artifacts",
    "preprocess",
    "graph_model",
    "version",
    "version_label",
    "signature_name",
    "input",
    "output",
    "timeout",
    "model",
    "method",
    "postprocess",
    "columns",
    "max_rows",
    "sha256",
    "engine",
    "parity_atol",
    "samples",
    "unknown_categories",
    "batching",
    "max_batch_rows",
    "max_batch_wait_ms",
    "traffic",
}
ENGINES = ("auto", "onnx", "sklearn")
UNKNOWN_MODES = ("allow", "warn", "reject")
DEFAULT_PARITY_ATOL = 1e-5
_COLUMN_KINDS = {"number", "string"}


@dataclass(frozen=True)
class ArtifactRef:
    """A file the pipeline loads at start-up, with its optional sha256 pin."""

    path: Path
    sha256: str | None = None


def model_path(model: str, version: int | None, version_label: str | None) -> str:
    """TF Serving's REST prefix for a servable: `/v1/models/NAME[/versions/V|/labels/L]`."""
    base = f"/v1/models/{model}"
    if version is not None:
        return f"{base}/versions/{version}"
    if version_label is not None:
        return f"{base}/labels/{version_label}"
    return base


@dataclass(frozen=True)
class AssemblePart:
    """One entry of `assemble:`: a separately fitted transformer and the columns it reads."""

    columns: tuple[str, ...]
    artifact: ArtifactRef


@dataclass(frozen=True)
class GraphTarget:
    """Which servable on the graph tier a pipeline calls, and how."""

    model: str
    version: int | None = None
    version_label: str | None = None
    signature_name: str = "serving_default"
    input: str | None = None
    output: str | None = None
    timeout: float | None = None

    def path(self) -> str:
        """`/v1/models/NAME[/versions/V|/labels/L]`, TF Serving's REST prefix for this target."""
        return model_path(self.model, self.version, self.version_label)

    def describe(self) -> str:
        suffix = ""
        if self.version is not None:
            suffix = f" version {self.version}"
        elif self.version_label is not None:
            suffix = f" label {self.version_label}"
        return f"graph:{self.model}{suffix} ({self.signature_name})"


@dataclass(frozen=True)
class PipelineSpec:
    """One pipeline as declared: feature processing, model target, optional post-processing."""

    name: str
    transformers: tuple[ArtifactRef, ...] = ()
    # Separately fitted parts side by side, in the order written (instead of `transformer`).
    assemble: tuple[AssemblePart, ...] = ()
    artifacts: dict[str, ArtifactRef] = field(default_factory=dict)
    preprocess: str | None = None
    graph: GraphTarget | None = None
    model: ArtifactRef | None = None
    method: str = "predict"
    postprocess: str | None = None
    columns: dict[str, str] = field(default_factory=dict)
    max_rows: int = DEFAULT_MAX_ROWS
    engine: str = "auto"
    parity_atol: float = DEFAULT_PARITY_ATOL
    samples: Path | None = None
    unknown_categories: str = "warn"
    # Graph micro-batching; None = the environment's default (LOGIC_BATCHING, ...).
    batching: bool | None = None
    max_batch_rows: int | None = None
    max_batch_wait_ms: float | None = None
    # Routes, sticky key, shadow (logic_service/traffic/): the part that reloads without a restart.
    traffic: TrafficSpec | None = None

    @property
    def compilable(self) -> bool:
        """Whether `logic-service compile` builds it: everything but glue code (a preprocess
        hook) and a pipeline pinned to scikit-learn (`engine: sklearn`)."""
        return self.preprocess is None and self.engine != "sklearn"

    def artifact_refs(self) -> list[tuple[str, ArtifactRef]]:
        """(role, reference) of every file the pipeline unpickles, in the order it loads them."""
        refs = [("transformer", ref) for ref in self.transformers]
        refs += [(f"assemble[{i}]", part.artifact) for i, part in enumerate(self.assemble)]
        refs += [(f"artifacts.{key}", ref) for key, ref in self.artifacts.items()]
        if self.model is not None:
            refs.append(("model", self.model))
        return refs


@dataclass(frozen=True)
class ServiceConfig:
    """The whole file: graph address, default pipeline, glue modules, pipelines."""

    path: Path
    graph_service_url: str | None
    default: str | None
    imports: tuple[str, ...]
    skops_trusted: tuple[str, ...]
    pipelines: dict[str, PipelineSpec]
    # Where `logic-service compile` writes and the service reads compiled pipelines.
    compiled_dir: Path = Path(DEFAULT_COMPILED_DIR)

    @property
    def base_dir(self) -> Path:
        return self.path.parent


def load_config(path: Path) -> ServiceConfig:
    """Parse and validate the pipeline file; raise ConfigError naming the offending key."""
    path = Path(path).resolve()
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"pipeline file {path} does not exist") from None
    except OSError as error:
        raise ConfigError(f"cannot read pipeline file {path}: {error.strerror}") from None
    return parse_text(text, path)


def parse_text(text: str | bytes, path: Path) -> ServiceConfig:
    """The pipeline file's text (as read from `path`) parsed and validated."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {error}".replace("\n", " ")) from None
    return parse_config(raw, path)


def parse_config(raw: Any, path: Path) -> ServiceConfig:
    """Validate an already-parsed YAML document; `path` anchors relative artifact paths."""
    where = str(path)
    mapping = _mapping(raw, where)
    _no_unknown(mapping, _TOP_KEYS, where)
    pipelines_raw = _mapping(mapping.get("pipelines"), f"{where}: pipelines")
    if not pipelines_raw:
        raise ConfigError(f"{where}: 'pipelines' is empty; declare at least one pipeline")
    top_max_rows = _positive_int(mapping.get("max_rows", DEFAULT_MAX_ROWS), f"{where}: max_rows")
    pipelines = {
        str(name): _pipeline(str(name), body, path.parent, top_max_rows, where)
        for name, body in pipelines_raw.items()
    }
    default = mapping.get("default")
    if default is not None and default not in pipelines:
        raise ConfigError(
            f"{where}: default {default!r} is not a pipeline (have: {', '.join(pipelines)})"
        )
    url = mapping.get("graph_service_url")
    compiled = mapping.get("compiled_dir", DEFAULT_COMPILED_DIR)
    if not isinstance(compiled, str) or not compiled:
        raise ConfigError(f"{where}: compiled_dir: expected a folder path, got {compiled!r}")
    return ServiceConfig(
        path=path,
        graph_service_url=str(url) if url else None,
        default=default,
        imports=tuple(_str_list(mapping.get("imports", []), f"{where}: imports")),
        skops_trusted=tuple(_str_list(mapping.get("skops_trusted", []), f"{where}: skops_trusted")),
        pipelines=pipelines,
        compiled_dir=(path.parent / compiled).resolve(),
    )


def _pipeline(name: str, raw: Any, base: Path, max_rows: int, where: str) -> PipelineSpec:
    where = f"{where}: pipeline {name!r}"
    body = _mapping(raw, where)
    _no_unknown(body, _PIPELINE_KEYS, where)
    pins = _mapping(body.get("sha256", {}), f"{where}: sha256")

    def ref(value: Any, key: str) -> ArtifactRef:
        return _artifact(value, base, pins, f"{where}: {key}")

    transformer = body.get("transformer")
    if transformer is None:
        transformers: tuple[ArtifactRef, ...] = ()
    elif isinstance(transformer, list):
        transformers = tuple(ref(item, "transformer") for item in transformer)
    else:
        transformers = (ref(transformer, "transformer"),)
    artifacts = {
        str(key): ref(value, f"artifacts.{key}")
        for key, value in _mapping(body.get("artifacts", {}), f"{where}: artifacts").items()
    }
    preprocess = _hook(body.get("preprocess"), f"{where}: preprocess")
    if preprocess and transformers:
        raise ConfigError(
            f"{where}: use either 'transformer' or 'preprocess' (load the transformers through "
            "'artifacts' and call them from the hook)"
        )
    assemble = _assemble(body.get("assemble"), ref, where)
    if assemble and (transformers or preprocess):
        other = "transformer" if transformers else "preprocess"
        raise ConfigError(
            f"{where}: use either 'assemble' or '{other}' (assemble lists the transformers "
            "that read the request, side by side)"
        )
    if artifacts and not preprocess:
        raise ConfigError(f"{where}: 'artifacts' are only used by a 'preprocess' hook; add one")

    graph_model, model = body.get("graph_model"), body.get("model")
    if (graph_model is None) == (model is None):
        raise ConfigError(
            f"{where}: set exactly one of 'graph_model' (served by the graph tier) "
            "or 'model' (a scikit-learn estimator file run in-process)"
        )
    graph = None
    if graph_model is not None:
        if body.get("version") is not None and body.get("version_label") is not None:
            raise ConfigError(f"{where}: set 'version' or 'version_label', not both")
        if "method" in body:
            raise ConfigError(f"{where}: 'method' applies to 'model', not to 'graph_model'")
        timeout = body.get("timeout")
        graph = GraphTarget(
            model=str(graph_model),
            version=None
            if body.get("version") is None
            else _positive_int(body["version"], f"{where}: version"),
            version_label=None if body.get("version_label") is None else str(body["version_label"]),
            signature_name=str(body.get("signature_name") or "serving_default"),
            input=None if body.get("input") is None else str(body["input"]),
            output=None if body.get("output") is None else str(body["output"]),
            timeout=None if timeout is None else _positive_float(timeout, f"{where}: timeout"),
        )
    else:
        graph_only = (
            "version",
            "version_label",
            "signature_name",
            "input",
            "output",
            "timeout",
            "traffic",
        )
        batch_keys = ("batching", "max_batch_rows", "max_batch_wait_ms")
        for key in (*graph_only, *batch_keys):
            if key in body:
                raise ConfigError(f"{where}: {key!r} applies to 'graph_model', not to 'model'")
    method = str(body.get("method", "predict"))
    if method not in METHODS:
        raise ConfigError(f"{where}: method {method!r} is not one of {', '.join(METHODS)}")

    columns = {}
    for column, kind in _mapping(body.get("columns", {}), f"{where}: columns").items():
        if kind not in _COLUMN_KINDS:
            raise ConfigError(f"{where}: column {column!r} kind {kind!r}: use 'number' or 'string'")
        columns[str(column)] = str(kind)
    return PipelineSpec(
        name=name,
        transformers=transformers,
        assemble=assemble,
        artifacts=artifacts,
        preprocess=preprocess,
        graph=graph,
        model=None if model is None else ref(model, "model"),
        method=method,
        postprocess=_hook(body.get("postprocess"), f"{where}: postprocess"),
        columns=columns,
        max_rows=_positive_int(body.get("max_rows", max_rows), f"{where}: max_rows"),
        **_engine_keys(body, base, where),
        batching=_optional_bool(body.get("batching"), f"{where}: batching"),
        max_batch_rows=None
        if body.get("max_batch_rows") is None
        else _positive_int(body["max_batch_rows"], f"{where}: max_batch_rows"),
        max_batch_wait_ms=None
        if body.get("max_batch_wait_ms") is None
        else _non_negative(body["max_batch_wait_ms"], f"{where}: max_batch_wait_ms"),
        traffic=None
        if graph is None or body.get("traffic") is None
        else parse_traffic(body["traffic"], graph.version, graph.version_label, where),
    )


def _engine_keys(body: dict, base: Path, where: str) -> dict[str, Any]:
    """engine, parity_atol, samples, unknown_categories: the compiled engine and the contract."""
    engine = str(body.get("engine", "auto"))
    if engine not in ENGINES:
        raise ConfigError(f"{where}: engine {engine!r} is not one of {', '.join(ENGINES)}")
    mode = str(body.get("unknown_categories", "warn"))
    if mode not in UNKNOWN_MODES:
        raise ConfigError(
            f"{where}: unknown_categories {mode!r} is not one of {', '.join(UNKNOWN_MODES)}"
        )
    atol = body.get("parity_atol", DEFAULT_PARITY_ATOL)
    if isinstance(atol, bool) or not isinstance(atol, int | float) or not 0 < atol < 1:
        raise ConfigError(f"{where}: parity_atol must be a number between 0 and 1, got {atol!r}")
    samples = body.get("samples")
    if samples is not None and (not isinstance(samples, str) or not samples):
        raise ConfigError(f"{where}: samples: expected a path to a JSON file of records")
    if samples is not None:
        samples = Path(samples) if Path(samples).is_absolute() else (base / samples).resolve()
    if engine == "onnx" and body.get("preprocess") is not None:
        raise ConfigError(
            f"{where}: engine 'onnx' cannot compile a preprocess hook (glue code runs in "
            "Python); use 'transformer:' or set engine: auto"
        )
    return {
        "engine": engine,
        "parity_atol": float(atol),
        "samples": samples,
        "unknown_categories": mode,
    }


def _assemble(
    value: Any, ref: Callable[[Any, str], ArtifactRef], where: str
) -> tuple[AssemblePart, ...]:
    """`assemble: [{columns: [a, b] | a, artifact: PATH | {path, sha256}}, ...]`."""
    if value is None:
        return ()
    if not isinstance(value, list) or not value:
        raise ConfigError(
            f"{where}: assemble: expected a list of {{columns: [names], artifact: path}}"
        )
    parts = []
    for index, item in enumerate(value):
        key = f"assemble[{index}]"
        here = f"{where}: {key}"
        if not isinstance(item, dict):
            raise ConfigError(f"{here}: expected {{columns: [names], artifact: path}}")
        _no_unknown(item, {"columns", "artifact"}, here)
        for needed in ("columns", "artifact"):
            if needed not in item:
                raise ConfigError(f"{here}: missing {needed!r}")
        columns = item["columns"]
        columns = [columns] if isinstance(columns, str) else columns
        if (
            not isinstance(columns, list)
            or not columns
            or not all(isinstance(name, str) and name for name in columns)
        ):
            raise ConfigError(f"{here}: columns: expected a column name or a list of names")
        if len(set(columns)) != len(columns):
            raise ConfigError(f"{here}: columns: {', '.join(columns)} names a column twice")
        parts.append(AssemblePart(tuple(columns), ref(item["artifact"], f"{key}.artifact")))
    return tuple(parts)


def _artifact(value: Any, base: Path, pins: dict, where: str) -> ArtifactRef:
    """`path` or `{path: ..., sha256: ...}`; a pipeline-level `sha256: {path: digest}` also pins."""
    if isinstance(value, dict):
        _no_unknown(value, {"path", "sha256"}, where)
        raw_path, digest = value.get("path"), value.get("sha256")
    else:
        raw_path, digest = value, None
    if not isinstance(raw_path, str) or not raw_path:
        raise ConfigError(f"{where}: expected a file path, got {raw_path!r}")
    digest = digest or pins.get(raw_path)
    if digest is not None:
        digest = str(digest).lower()
        if not _SHA256.match(digest):
            raise ConfigError(f"{where}: sha256 {digest!r} is not 64 hex digits")
    path = Path(raw_path)
    return ArtifactRef(path if path.is_absolute() else (base / path).resolve(), digest)


def _hook(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _HOOK.match(value):
        raise ConfigError(f"{where}: expected 'module:function', got {value!r}")
    return value


def _mapping(value: Any, where: str) -> dict:
    if value is None:
        raise ConfigError(f"{where}: missing (expected a mapping)")
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
    return value


def _no_unknown(mapping: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(str(key) for key in mapping if key not in allowed)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})"
        )


def _str_list(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError(f"{where}: expected a list of names")
    return value


def _positive_int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{where}: expected a positive integer, got {value!r}")
    return value


def _positive_float(value: Any, where: str) -> float:
    if not _finite(value) or value <= 0:
        raise ConfigError(f"{where}: expected a positive number of seconds, got {value!r}")
    return float(value)


def _finite(value: Any) -> bool:
    """A number YAML gave (`.nan` and `.inf` are floats to it, and would never time out)."""
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def _optional_bool(value: Any, where: str) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise ConfigError(f"{where}: expected true or false, got {value!r}")


def _non_negative(value: Any, where: str) -> float:
    if not _finite(value) or value < 0:
        raise ConfigError(f"{where}: expected a number of milliseconds >= 0, got {value!r}")
    return float(value)

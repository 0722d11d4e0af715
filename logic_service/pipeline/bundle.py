"""A compiled pipeline on disk: its ONNX graphs, its request contract and a build report.

`logic-service compile` writes one folder per pipeline (by default `compiled/NAME/` next to the
pipeline file); the service serves from it without unpickling anything:

    features.onnx   the transformers as one graph (absent for a model alone)
    model.onnx      the in-process model's method (absent for a graph_model pipeline)
    contract.json   the request contract: columns, kinds, categories, nullability, fitted values
    report.json     how it was built: versions, parity, self-test, and the sha256 of every
                    source artifact and of every file above

A folder is written whole into a staging folder and renamed into place, so a reader never
sees half of one and a failed build leaves the previous one untouched. On reading, every
file must match the sha256 its report recorded (a file edited by hand is refused), and the
sources the pipeline file names must still be the ones it was built from (a stale build is
refused, naming both digests).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from logic_service.config import PipelineSpec, ServiceConfig
from logic_service.errors import ConfigError
from logic_service.pipeline.artifacts import file_sha256
from logic_service.pipeline.contract import ColumnContract, Contract, InputSchema, is_null

FORMAT = 1
FEATURES, MODEL, CONTRACT, REPORT = "features.onnx", "model.onnx", "contract.json", "report.json"


@dataclass
class Bundle:
    """A compiled pipeline read back from its folder, verified."""

    folder: Path
    schema: InputSchema
    contract: Contract
    features: bytes | None
    model: bytes | None
    model_output: dict[str, Any] | None  # {"output": int, "column": int | None}
    report: dict[str, Any]


def bundle_dir(config: ServiceConfig, name: str, root: Path | None = None) -> Path:
    """Where pipeline `name`'s compiled folder lives (`compiled_dir` of the file by default)."""
    return (root or config.compiled_dir) / name


def spec_fingerprint(spec: PipelineSpec, config: ServiceConfig) -> dict[str, Any]:
    """What of the pipeline file a build depends on: a change to any of it makes it stale."""

    def rel(path: Path) -> str:
        return os.path.relpath(path, config.base_dir)

    return {
        "transformers": [rel(ref.path) for ref in spec.transformers],
        "assemble": [[list(part.columns), rel(part.artifact.path)] for part in spec.assemble],
        "model": rel(spec.model.path) if spec.model is not None else None,
        "method": spec.method if spec.model is not None else None,
        "columns": dict(spec.columns),
        "parity_atol": spec.parity_atol,
        "samples": rel(spec.samples) if spec.samples is not None else None,
    }


def sources(spec: PipelineSpec) -> list[tuple[str, Path]]:
    """(role, path) of every file a compiled build is made from."""
    found = [(role, ref.path) for role, ref in spec.artifact_refs()]
    if spec.samples is not None:
        found.append(("samples", spec.samples))
    return found


def contract_json(schema: InputSchema, contract: Contract) -> dict[str, Any]:
    """The contract as plain JSON (sets as sorted lists, a fitted missing value as null)."""
    columns = []
    for column in contract.columns.values():
        item: dict[str, Any] = {}
        for spec in dataclasses.fields(column):
            if spec.name == "known":
                continue  # derived from the categories
            value = getattr(column, spec.name)
            if isinstance(value, set | frozenset):
                value = sorted(value)
            if spec.name == "categories" and value is not None:
                value = [None if is_null(v) else v for v in value]
            item[spec.name] = value
        columns.append(item)
    return {
        "format": FORMAT,
        "schema": {
            "columns": list(schema.columns),
            "kinds": schema.kinds,
            "closed": schema.closed,
        },
        "layout": contract.layout,
        "problem": contract.problem,
        "columns": columns,
    }


def contract_from_json(document: dict[str, Any]) -> tuple[InputSchema, Contract]:
    schema_doc = document["schema"]
    schema = InputSchema(
        tuple(schema_doc["columns"]), dict(schema_doc["kinds"]), bool(schema_doc["closed"])
    )
    known_fields = {spec.name for spec in dataclasses.fields(ColumnContract)}
    columns = {}
    for item in document["columns"]:
        values = {key: value for key, value in item.items() if key in known_fields}
        if "probes" in values:
            values["probes"] = set(values["probes"])
        column = ColumnContract(**values)
        if column.categories is not None:
            column.settle_known()
        columns[column.name] = column
    return schema, Contract(columns, document["layout"], document.get("problem"))


def write_bundle(
    staging: Path,
    *,
    schema: InputSchema,
    contract: Contract,
    features: bytes | None,
    model: bytes | None,
    model_output: dict[str, Any] | None,
    report: dict[str, Any],
) -> None:
    """Write a pipeline's files into `staging` (a fresh folder), the report last."""
    staging.mkdir(parents=True, exist_ok=True)
    document = contract_json(schema, contract)
    document["model_output"] = model_output
    files = {CONTRACT: json.dumps(document, indent=1, sort_keys=True).encode()}
    if features is not None:
        files[FEATURES] = features
    if model is not None:
        files[MODEL] = model
    for name, data in files.items():
        (staging / name).write_bytes(data)
    report = {
        **report,
        "format": FORMAT,
        "files": {name: hashlib.sha256(data).hexdigest() for name, data in files.items()},
    }
    (staging / REPORT).write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")


def publish(staging: Path, target: Path) -> None:
    """Put a fully written staging folder at `target`, replacing any previous build."""
    target.parent.mkdir(parents=True, exist_ok=True)
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".old-{target.name}-", dir=target.parent))
        os.rename(target, old / target.name)
    os.rename(staging, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def staging_dir(target: Path) -> Path:
    """A fresh folder beside `target` (same file system, so publishing is a rename)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".staging-{target.name}-", dir=target.parent))
    staging.chmod(0o755)  # mkdtemp's 0700 would hide the build from a service run as another user
    return staging


def read_bundle(folder: Path) -> Bundle:
    """Read and verify a compiled folder; a ConfigError naming the file otherwise."""
    report_path = folder / REPORT
    try:
        report = json.loads(report_path.read_text())
    except (OSError, ValueError) as error:
        raise ConfigError(
            f"compiled build {folder}: {REPORT} is unreadable ({error}); run the compile step again"
        ) from None
    if report.get("format") != FORMAT:
        raise ConfigError(
            f"compiled build {folder} has format {report.get('format')!r}, this service reads "
            f"{FORMAT}; run the compile step again with this version of the kit"
        )
    recorded: dict[str, str] = report.get("files", {})
    blobs: dict[str, bytes] = {}
    for name, digest in recorded.items():
        path = folder / name
        try:
            blobs[name] = path.read_bytes()
        except OSError as error:
            raise ConfigError(
                f"compiled build {folder}: {name} is missing or unreadable ({error.strerror}); "
                "run the compile step again"
            ) from None
        actual = hashlib.sha256(blobs[name]).hexdigest()
        if actual != digest:
            raise ConfigError(
                f"compiled file {path} was changed after it was built (sha256 {actual}, the "
                f"build recorded {digest}); run the compile step again instead of editing it"
            )
    if CONTRACT not in blobs:
        raise ConfigError(f"compiled build {folder}: its report lists no {CONTRACT}")
    try:
        document = json.loads(blobs[CONTRACT])
        schema, contract = contract_from_json(document)
    except (ValueError, KeyError, TypeError) as error:
        raise ConfigError(
            f"compiled build {folder}: {CONTRACT} is not a contract ({error})"
        ) from None
    return Bundle(
        folder,
        schema,
        contract,
        blobs.get(FEATURES),
        blobs.get(MODEL),
        document.get("model_output"),
        report,
    )


def check_fresh(bundle: Bundle, spec: PipelineSpec, config: ServiceConfig) -> list[str]:
    """Refuse a build made from other sources or another pipeline definition (stale); return
    notes for sources that are not present to check (a deployment may ship compiled files
    without the pickles)."""
    where = f"{config.path}: pipeline {spec.name!r}"
    built = bundle.report.get("spec")
    current = spec_fingerprint(spec, config)
    if built != current:
        changed = sorted(
            key
            for key in set(built or {}) | set(current)
            if (built or {}).get(key) != current.get(key)
        )
        raise ConfigError(
            f"{where}: compiled build {bundle.folder} is stale: the pipeline's "
            f"{', '.join(changed)} changed since it was built; run `logic-service compile "
            f"--config {config.path}` again"
        )
    notes = []
    recorded = {item["path"]: item["sha256"] for item in bundle.report.get("sources", [])}
    for _, path in sources(spec):
        key = os.path.relpath(path, config.base_dir)
        if not path.is_file():
            notes.append(
                f"source {key} is not present: serving the build made from sha256 {recorded.get(key, '?')[:12]}"
            )
            continue
        actual = file_sha256(path)
        if recorded.get(key) != actual:
            raise ConfigError(
                f"{where}: compiled build {bundle.folder} is stale: {path} has sha256 {actual}, "
                f"the build was made from {recorded.get(key)}; run `logic-service compile "
                f"--config {config.path}` again"
            )
    return notes

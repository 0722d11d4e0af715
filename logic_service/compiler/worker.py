"""One pipeline's compile step, run inside the build interpreter.

`python -m logic_service.compiler.worker` reads a job on stdin (JSON: the pipeline file, the
pipeline's name, a staging folder), and in this interpreter (whose scikit-learn is the one
that pickled the artifacts) loads them, converts them with skl2onnx, runs the parity gate and
the self-test exactly as the service does at start-up, and writes the compiled files into the
staging folder. It answers one JSON line on stdout: `{"ok": true, "report": {...}}` or
`{"ok": false, "error": "one line"}`; logs go to stderr. It imports only what a build
environment has (numpy, pandas, scikit-learn, skl2onnx, onnx, onnxruntime, joblib, dill,
pyyaml): never the web stack.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import os
import platform
import sys
import traceback
from importlib import metadata
from pathlib import Path
from typing import Any

from logic_service.config import load_config
from logic_service.errors import LogicError
from logic_service.pipeline.artifacts import file_sha256, import_modules
from logic_service.pipeline.bundle import sources, spec_fingerprint, write_bundle
from logic_service.pipeline.loader import load_pipeline

_PACKAGES = (
    "scikit-learn",
    "skl2onnx",
    "onnx",
    "onnxruntime",
    "numpy",
    "scipy",
    "pandas",
    "joblib",
)


def build(config_path: Path, name: str, staging: Path) -> dict[str, Any]:
    """Compile pipeline `name` into `staging`; its report (raises LogicError with one line)."""
    config = load_config(config_path)
    spec = config.pipelines[name]
    glue = import_modules(config.imports, config.base_dir)
    pipeline = load_pipeline(spec, config, glue, require_compiled=True)
    assert pipeline.contract is not None and pipeline.parity is not None
    # The unpickled files were hashed and scanned when they were inspected: not read again.
    inspected = {
        item.path: (item.sha256, item.scan) for item in pipeline.loaded() if item.scan is not None
    }
    described = []
    for role, path in sources(spec):
        sha256, scan = inspected.get(path, (None, None))
        item: dict[str, Any] = {
            "role": role,
            "path": os.path.relpath(path, config.base_dir),
            "sha256": sha256 or file_sha256(path),
        }
        if scan is not None:
            item.update(scan.describe())
        described.append(item)
    model_output = None
    if pipeline.compiled_model is not None:
        model_output = {
            "output": pipeline.compiled_model.output,
            "column": pipeline.compiled_model.column,
        }
    report = {
        "pipeline": name,
        "built_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "built_with": {
            "python": platform.python_version(),
            "interpreter": sys.executable,
            **{package: _version(package) for package in _PACKAGES},
        },
        "sources": described,
        "spec": spec_fingerprint(spec, config),
        "parity": dataclasses.asdict(pipeline.parity),  # read back as ParityResult(**...)
        "self_test": pipeline.self_test.describe(),
    }
    write_bundle(
        staging,
        schema=pipeline.schema,
        contract=pipeline.contract,
        features=pipeline.compiled_features.program.model if pipeline.compiled_features else None,
        model=pipeline.compiled_model.program.model if pipeline.compiled_model else None,
        model_output=model_output,
        report=report,
    )
    return report


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def main() -> int:
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(message)s"
    )
    job = json.loads(sys.stdin.read())
    try:
        report = build(Path(job["config"]), job["pipeline"], Path(job["staging"]))
        answer: dict[str, Any] = {"ok": True, "report": report}
    except LogicError as error:
        answer = {"ok": False, "error": str(error)}
    except Exception as error:  # whatever the artifacts raise: one line out, traceback to stderr
        traceback.print_exc()
        detail = (str(error).strip().splitlines() or [""])[0]
        answer = {"ok": False, "error": f"{type(error).__name__}: {detail}"[:400]}
    sys.stdout.write(json.dumps(answer) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

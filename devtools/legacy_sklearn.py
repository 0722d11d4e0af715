"""Artifacts fitted and pickled by real scikit-learn releases, in their own environments.

`legacy_sklearn(version)` (a session fixture) runs `devtools/legacy_train.py` with the
interpreter of that release's build environment, the very one `logic-service compile`
creates and caches (logic_service.compiler.envs): so tests use artifacts made the way users
make them (pickle, joblib, dill; missing values and strings), and the scores that release
itself computes for them. The current release runs in this interpreter. Creating an
environment needs the package index once; later sessions reuse the cache.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sklearn
import yaml

from logic_service.compiler.envs import cache_root, ensure_env

TRAIN_SCRIPT = Path(__file__).with_name("legacy_train.py")
# Three minor releases from 1.2 on, besides the running one: numpy 1 (1.2, 1.3) and numpy 2
# (1.5, whose ColumnTransformer pickles the `_RemainderColsList` later releases lack).
LEGACY_VERSIONS = ("1.2.2", "1.3.2", "1.5.2")
FORMATS = ("pkl", "joblib", "z.joblib", "dill")


@dataclass
class LegacyArtifacts:
    """One release's artifacts under `root` (template/, simple/), records and its own scores."""

    version: str
    root: Path
    records: list[dict[str, Any]]
    expected: dict[str, list[Any]]
    coverage_records: list[dict[str, Any]]

    def write_config(self, name: str, document: dict[str, Any]) -> Path:
        """A pipeline file in `root` (artifact paths relative to it)."""
        path = self.root / name
        path.write_text(yaml.safe_dump(document, sort_keys=False))
        return path


def build_legacy(version: str, root: Path) -> LegacyArtifacts:
    """Fit and save in `version`'s own interpreter (its build environment, made once)."""
    python = (
        Path(sys.executable)
        if version == sklearn.__version__
        else ensure_env(version, _progress, cache_root()).python
    )
    root.mkdir(parents=True, exist_ok=True)
    # The repository on its path: the coverage fixtures are devtools/sklearn_fits.py's.
    env = {**os.environ, "PYTHONPATH": str(TRAIN_SCRIPT.parent.parent)}
    subprocess.run(
        [str(python), str(TRAIN_SCRIPT), str(root)], check=True, capture_output=True, env=env
    )
    versions = json.loads((root / "versions.json").read_text())
    assert versions["scikit-learn"] == version, versions
    return LegacyArtifacts(
        version,
        root,
        json.loads((root / "records.json").read_text()),
        json.loads((root / "expected.json").read_text()),
        json.loads((root / "coverage_records.json").read_text()),
    )


def _progress(line: str) -> None:
    sys.stderr.write(f"[legacy artifacts] {line}\n")


@pytest.fixture(scope="session")
def legacy_sklearn(
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[[str], LegacyArtifacts]:
    """`legacy_sklearn("1.3.2")`: that release's artifacts, built once per session."""
    built: dict[str, LegacyArtifacts] = {}

    def get(version: str) -> LegacyArtifacts:
        if version not in built:
            root = tmp_path_factory.mktemp(f"sklearn-{version}")
            built[version] = build_legacy(version, root)
        return built[version]

    return get

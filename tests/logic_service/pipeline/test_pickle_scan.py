"""Reading what an artifact holds without running it: the version that pickled it, its globals."""

from __future__ import annotations

import os
import pickle
import sys

import joblib
import numpy as np
import pytest
import sklearn

from devtools.legacy_sklearn import FORMATS, LEGACY_VERSIONS
from logic_service.pipeline.pickle_scan import PickleScanError, scan_file, version_key

EXPECTED_FORMAT = {"pkl": "pickle", "joblib": "joblib", "z.joblib": "joblib+zlib", "dill": "dill"}


class _RunsACommand:
    """What a hostile pickle holds: unpickling it runs `touch MARKER`."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("version", [*LEGACY_VERSIONS, sklearn.__version__])
def test_each_release_and_format_is_read_without_unpickling(legacy_sklearn, version) -> None:
    legacy = legacy_sklearn(version)
    modules_before = set(sys.modules)
    for kind in FORMATS:
        scan = scan_file(legacy.root / "template" / f"preprocessor.{kind}")
        assert scan.sklearn_version == version, kind
        assert scan.format == EXPECTED_FORMAT[kind]
        assert scan.top == "sklearn.compose._column_transformer.ColumnTransformer"
        assert {"SimpleImputer", "OneHotEncoder", "StandardScaler"} <= scan.sklearn_versions[
            version
        ]
        # joblib pickles some types dill's way once dill is imported, as in the training script
        assert scan.needs_dill if kind == "dill" else (kind != "pkl" or not scan.needs_dill)
        assert scan.dangerous == [] and scan.main_classes == []
        boosted = scan_file(legacy.root / "template" / f"boosted.{kind}")
        assert boosted.top == "sklearn.ensemble._gb.GradientBoostingRegressor"
        assert boosted.sklearn_version == version
    # Nothing of scikit-learn's was imported to read them (this process may have it already).
    assert not {m for m in set(sys.modules) - modules_before if m.startswith("sklearn")}


def test_a_1_5_column_transformer_names_the_class_1_9_lacks(legacy_sklearn) -> None:
    scan = scan_file(legacy_sklearn("1.5.2").root / "simple" / "preprocessor.pkl")
    assert "sklearn.compose._column_transformer._RemainderColsList" in scan.globals


def test_a_hostile_pickle_is_named_and_never_run(tmp_path) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps({"model": _RunsACommand(str(marker))}))
    scan = scan_file(path)
    assert scan.dangerous == [f"{os.system.__module__}.system"]
    assert scan.top == "builtins.dict"
    assert not marker.exists()


def test_an_object_array_inside_a_joblib_file_is_read_inertly(tmp_path) -> None:
    """joblib writes object arrays as nested pickles: those too go through the inert reader."""
    marker = tmp_path / "ran"
    cells = np.empty(2, dtype=object)
    cells[0], cells[1] = _RunsACommand(str(marker)), "text"
    path = tmp_path / "arrays.joblib"
    joblib.dump({"cells": cells, "numbers": np.arange(5.0)}, path)
    assert scan_file(path).dangerous == [f"{os.system.__module__}.system"]
    assert not marker.exists()


def test_notebook_classes_are_listed(sklearn_artifacts) -> None:
    scan = scan_file(sklearn_artifacts.root / "notebook" / "clipper.pkl")
    assert scan.main_classes == ["Clipper"]
    # scikit-learn records its version only in its own classes' state: a user's class says none
    assert scan.sklearn_version is None


def test_skops_state_is_read_from_its_json(sklearn_artifacts) -> None:
    scan = scan_file(sklearn_artifacts.root / "credit" / "transformer.skops")
    assert scan.format == "skops"
    assert scan.sklearn_version == sklearn.__version__
    assert scan.top == "sklearn.compose._column_transformer.ColumnTransformer"


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"not a pickle at all", "not a pickle stream"),
        (pickle.dumps(list(range(1000)))[:100], "truncated or corrupt"),
        (b"", "truncated or corrupt"),
    ],
)
def test_damaged_files_are_one_line(tmp_path, content: bytes, needle: str) -> None:
    path = tmp_path / "artifact.pkl"
    path.write_bytes(content)
    with pytest.raises(PickleScanError) as error:
        scan_file(path)
    assert needle in str(error.value) and str(path) in str(error.value)
    assert "\n" not in str(error.value)


def test_version_keys_order_releases() -> None:
    assert version_key("1.3.2") < version_key("1.4.1.post1") < version_key("1.10.0")
    assert version_key("1.6.dev0") == (1, 6)

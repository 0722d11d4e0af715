"""Artifact loading: strict and loud, because pickles are where deployments break."""

from __future__ import annotations

import importlib
import shutil

import joblib
import numpy as np
import pandas as pd
import pytest
import sklearn

from devtools.sklearn_artifacts import credit_records
from logic_service.config import ArtifactRef
from logic_service.errors import ConfigError
from logic_service.pipeline.artifacts import file_sha256, import_modules, load_artifact


def test_sha256_pin_matches_and_mismatch_refuses(sklearn_artifacts, tmp_path) -> None:
    path = sklearn_artifacts.root / "credit" / "transformer.pkl"
    digest = file_sha256(path)
    assert load_artifact(ArtifactRef(path, digest)).sha256 == digest
    changed = tmp_path / "transformer.pkl"
    shutil.copy(path, changed)
    with changed.open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ConfigError) as error:
        load_artifact(ArtifactRef(changed, digest))
    assert f"the config pins {digest}" in str(error.value)
    assert str(changed) in str(error.value)


def test_class_pickled_in_main_names_the_class_and_the_imports_key(sklearn_artifacts) -> None:
    path = sklearn_artifacts.root / "notebook" / "clipper.pkl"
    with pytest.raises(ConfigError) as error:
        load_artifact(ArtifactRef(path))
    message = str(error.value)
    assert "'Clipper'" in message
    assert "__main__" in message
    assert "imports:" in message


def test_declared_imports_module_resolves_the_main_class(sklearn_artifacts) -> None:
    glue = import_modules(["notebook_classes"], sklearn_artifacts.root)
    loaded = load_artifact(ArtifactRef(sklearn_artifacts.root / "notebook" / "clipper.pkl"), glue)
    assert type(loaded.obj).__name__ == "Clipper"
    frame = sklearn_artifacts.credit_frame.dropna()[["age", "income"]]
    clipped = loaded.obj.transform(frame)
    assert clipped.shape == frame.shape
    assert (clipped[:, 0] >= loaded.obj.lo_[0]).all()
    # The shim is removed again: __main__ is left as it was.
    assert not hasattr(importlib.import_module("__main__"), "Clipper")


def test_unknown_module_in_imports(sklearn_artifacts) -> None:
    with pytest.raises(ConfigError, match="cannot import 'no_such_glue'"):
        import_modules(["no_such_glue"], sklearn_artifacts.root)


def test_the_version_that_pickled_a_file_is_read_from_it(legacy_sklearn) -> None:
    """A real scikit-learn 1.3.2 pickle: its version is recorded and noted (the loader, not
    this function, decides whether to unpickle such a file at all)."""
    legacy = legacy_sklearn("1.3.2")
    loaded = load_artifact(ArtifactRef(legacy.root / "simple" / "preprocessor.joblib"))
    assert loaded.sklearn_version == "1.3.2" and loaded.format == "joblib"
    assert loaded.warnings == [f"pickled with scikit-learn 1.3.2, running {sklearn.__version__}"]
    assert loaded.describe()["warnings"] == loaded.warnings


def test_skops_loads_the_same_transformer(sklearn_artifacts) -> None:
    loaded = load_artifact(ArtifactRef(sklearn_artifacts.root / "credit" / "transformer.skops"))
    frame = pd.DataFrame(credit_records(5))
    expected = sklearn_artifacts.transformer.transform(frame).toarray()
    np.testing.assert_allclose(loaded.obj.transform(frame).toarray(), expected)


def test_skops_untrusted_type_is_refused_then_trusted(sklearn_artifacts, tmp_path) -> None:
    from skops import io as sio

    glue = import_modules(["notebook_classes"], sklearn_artifacts.root)
    clipper = glue[0].Clipper().fit(np.array([[1.0], [2.0], [3.0]]))
    path = tmp_path / "clipper.skops"
    sio.dump(clipper, path)
    with pytest.raises(ConfigError, match=r"notebook_classes\.Clipper.*skops_trusted"):
        load_artifact(ArtifactRef(path))
    loaded = load_artifact(ArtifactRef(path), skops_trusted=["notebook_classes.Clipper"])
    assert loaded.obj.hi_ == pytest.approx(clipper.hi_)


def test_missing_damaged_and_unknown_files(sklearn_artifacts, tmp_path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_artifact(ArtifactRef(tmp_path / "absent.pkl"))
    damaged = tmp_path / "damaged.pkl"
    damaged.write_bytes(b"not a pickle")
    with pytest.raises(ConfigError, match=r"damaged\.pkl: not a pickle stream"):
        load_artifact(ArtifactRef(damaged))
    other = tmp_path / "model.onnx"
    joblib.dump({"a": 1}, other)
    with pytest.raises(ConfigError, match=r"unknown file type '\.onnx'"):
        load_artifact(ArtifactRef(other))


def test_dill_pickles_load_and_their_pin_is_checked(legacy_sklearn, tmp_path) -> None:
    """A preprocessor saved with dill (as the public template often does) loads like any
    pickle, and its sha256 pin is checked like any pickle's."""
    legacy = legacy_sklearn(sklearn.__version__)
    path = legacy.root / "template" / "preprocessor.dill"
    digest = file_sha256(path)
    loaded = load_artifact(ArtifactRef(path, digest))
    assert loaded.format == "dill" and loaded.sklearn_version == sklearn.__version__
    expected = legacy.expected["template/features"]
    frame = pd.DataFrame(legacy.records).astype(object)
    frame = frame.where(frame.notna(), np.nan)
    features = loaded.obj.transform(frame)
    features = features.toarray() if hasattr(features, "toarray") else features
    np.testing.assert_allclose(features, expected)
    with pytest.raises(ConfigError, match="the config pins 0000"):
        load_artifact(ArtifactRef(path, "0" * 64))

"""Version policies, labels and availability rules of the registry, with real SavedModels."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from converters.models_config import ModelEntry, VersionPolicy
from devtools.savedmodels import dense_reference, write_dense_savedmodel
from graph_service.errors import InvalidArgumentError, NotFoundError
from graph_service.models.registry import ModelRegistry, aspired_versions


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (VersionPolicy(), [5]),
        (VersionPolicy("latest", 2), [3, 5]),
        (VersionPolicy("all"), [1, 3, 5]),
        (VersionPolicy("specific", versions=[1, 4]), [1]),
    ],
)
def test_version_policies(policy, expected):
    """serving_config.md: latest N (default 1), all, specific versions among those on disk."""
    assert aspired_versions(policy, [1, 3, 5]) == expected


@pytest.fixture(scope="module")
def dense_versions(tmp_path_factory):
    root = tmp_path_factory.mktemp("registry_versions")
    for seed in (1, 2):
        write_dense_savedmodel(root / str(seed), 2, seed=seed)
    return root


def make_models(tmp_path, dense_versions, layout: dict[str, int]):
    """Copy prebuilt versions into tmp_path/models/m/<dir name> (dir name -> seed)."""
    models = tmp_path / "models"
    for dir_name, seed in layout.items():
        shutil.copytree(dense_versions / str(seed), models / "m" / dir_name)
    return models


def entry(policy: VersionPolicy | None = None, labels: dict | None = None) -> ModelEntry:
    return ModelEntry("m", "/models/m", policy=policy or VersionPolicy(), labels=labels or {})


def run(registry: ModelRegistry, **route) -> float:
    servable = registry.servable("m", **route)
    outputs = servable.run("serving_default", {"x": np.ones((1, 2), np.float32)})
    return float(outputs["score"][0, 0])


def expected(seed: int) -> float:
    return float(dense_reference(np.ones((1, 2), np.float32), seed=seed)[0, 0])


def test_zero_padded_folders_are_versions(tmp_path, dense_versions):
    """shared doc: version folders are integers; "001" parses as 1, other names are ignored."""
    models = make_models(tmp_path, dense_versions, {"001": 1})
    (models / "m" / "tmp-copy").mkdir()
    registry = ModelRegistry(models)
    registry.sync([entry()])
    assert [s["version"] for s in registry.status("m")["model_version_status"]] == ["1"]
    assert run(registry) == pytest.approx(expected(1), rel=1e-5)


def test_labels_route_and_only_point_at_available_versions(tmp_path, dense_versions):
    """TF Serving refuses a label on an unavailable version unless explicitly allowed."""
    models = make_models(tmp_path, dense_versions, {"1": 1, "2": 2})
    registry = ModelRegistry(models)
    registry.sync([entry(VersionPolicy("all"), {"stable": 1, "future": 9})])
    assert run(registry, label="stable") == pytest.approx(expected(1), rel=1e-5)
    assert run(registry) == pytest.approx(expected(2), rel=1e-5)
    with pytest.raises(InvalidArgumentError, match="Unrecognized servable version label: future"):
        registry.servable("m", label="future")

    permissive = ModelRegistry(models, allow_labels_for_unavailable=True)
    permissive.sync([entry(VersionPolicy("all"), {"future": 9})])
    with pytest.raises(NotFoundError, match=r"Specific\(m, 9\)"):
        permissive.servable("m", label="future")


def test_old_version_stays_until_the_new_one_serves(tmp_path, dense_versions):
    models = make_models(tmp_path, dense_versions, {"1": 1})
    registry = ModelRegistry(models)
    registry.sync([entry()])
    held = registry.servable("m")
    (models / "m" / "2").mkdir()  # still being copied: no saved_model.pb yet
    registry.sync([entry()])
    status = {s["version"]: s for s in registry.status("m")["model_version_status"]}
    assert status["1"]["state"] == "AVAILABLE"
    assert status["2"]["state"] == "END" and status["2"]["status"]["error_code"] == "NOT_FOUND"
    shutil.rmtree(models / "m" / "2")
    shutil.copytree(dense_versions / "2", models / "m" / "2")
    registry.sync([entry()])
    assert run(registry) == pytest.approx(expected(2), rel=1e-5)
    assert registry.status("m", version=1)["model_version_status"][0]["state"] == "END"
    # A request that took version 1 before the swap still completes on it.
    assert float(
        held.run("serving_default", {"x": np.ones((1, 2), np.float32)})["score"][0, 0]
    ) == pytest.approx(expected(1), rel=1e-5)


def test_unknown_names_and_versions(tmp_path, dense_versions):
    registry = ModelRegistry(make_models(tmp_path, dense_versions, {"1": 1}))
    registry.sync([entry()])
    with pytest.raises(NotFoundError, match=r"Latest\(other\)"):
        registry.servable("other")
    with pytest.raises(NotFoundError, match="Could not find any versions of model other"):
        registry.status("other")
    with pytest.raises(NotFoundError, match="Could not find version 4 of model m"):
        registry.status("m", version=4)

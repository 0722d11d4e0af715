"""models.config read/write through TF Serving's ModelServerConfig schema."""

from __future__ import annotations

import pytest
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2 as pb

from converters.errors import ModelsConfigError, UsageError
from converters.models_config import (
    ModelEntry,
    ModelsConfig,
    VersionPolicy,
    check,
    resolve_base_path,
    validate_model_name,
)

HAND_WRITTEN = """
# written by hand, as TF Serving's docs show it
model_config_list {
  config {
    name: "credit"
    base_path: "/models/credit"
    model_platform: "tensorflow"
    model_version_policy { specific { versions: 1 versions: 2 } }
    version_labels { key: "stable" value: 1 }
    version_labels { key: "canary" value: 2 }
  }
  config { name: "churn" base_path: "/models/churn" model_platform: "tensorflow" }
}
"""


def _parsed(path) -> pb.ModelServerConfig:
    return text_format.Parse(path.read_text(), pb.ModelServerConfig())


def test_round_trip_keeps_entries_order_policy_and_labels(tmp_path):
    path = tmp_path / "models.config"
    path.write_text(HAND_WRITTEN)
    config = ModelsConfig.load(path)
    config.upsert(ModelEntry("fraud", "/models/fraud", policy=VersionPolicy("all")))
    config.save()

    proto = _parsed(path)  # TF Serving's own schema accepts what we wrote
    names = [c.name for c in proto.model_config_list.config]
    assert names == ["credit", "churn", "fraud"]
    credit = proto.model_config_list.config[0]
    assert list(credit.model_version_policy.specific.versions) == [1, 2]
    assert dict(credit.version_labels) == {"stable": 1, "canary": 2}
    assert (
        proto.model_config_list.config[2].model_version_policy.WhichOneof("policy_choice") == "all"
    )
    assert ModelsConfig.load(path).get("churn").policy.describe() == "latest 1"


def test_upsert_replaces_in_place_and_remove_keeps_the_rest(tmp_path):
    path = tmp_path / "models.config"
    path.write_text(HAND_WRITTEN)
    config = ModelsConfig.load(path)
    entry = config.get("credit")
    entry.labels["stable"] = 2
    assert config.upsert(entry) is False
    config.remove("churn")
    config.save()
    reloaded = ModelsConfig.load(path)
    assert reloaded.names() == ["credit"]
    assert reloaded.get("credit").labels == {"stable": 2, "canary": 2}
    with pytest.raises(ModelsConfigError, match="no model named 'nope'"):
        reloaded.remove("nope")


def test_corrupt_file_is_reported_not_overwritten(tmp_path):
    path = tmp_path / "models.config"
    path.write_text("model_config_list { config { name: ")
    with pytest.raises(ModelsConfigError, match="not a valid ModelServerConfig"):
        ModelsConfig.load(path)
    assert path.read_text() == "model_config_list { config { name: "


@pytest.mark.parametrize("name", ["credit", "credit_v2", "a-b.c", "X9"])
def test_valid_model_names(name):
    assert validate_model_name(name) == name


@pytest.mark.parametrize("name", ["", "..", ".", "a/b", "a b", "crédit", "x;y"])
def test_invalid_model_names(name):
    with pytest.raises(UsageError, match="invalid model name"):
        validate_model_name(name)


def test_container_base_path_resolves_next_to_the_config(tmp_path):
    assert resolve_base_path("/models/credit", tmp_path) == (tmp_path / "credit").resolve()
    assert resolve_base_path("credit", tmp_path) == (tmp_path / "credit").resolve()
    elsewhere = tmp_path / "abs"
    elsewhere.mkdir()
    assert resolve_base_path(str(elsewhere), tmp_path / "cfg") == elsewhere


@pytest.mark.parametrize(
    ("text", "described"),
    [
        ("latest", "latest 1"),
        ("latest:3", "latest 3"),
        ("all", "all"),
        ("specific:2,1", "specific 1,2"),
    ],
)
def test_version_policy_cli_forms(text, described):
    assert VersionPolicy.parse(text).describe() == described


@pytest.mark.parametrize("text", ["latest:0", "newest", "specific:", "specific:a", "all:2"])
def test_version_policy_rejects_nonsense(text):
    with pytest.raises(UsageError, match="invalid version policy"):
        VersionPolicy.parse(text)


def test_check_reports_what_tf_serving_would_fail_on(tmp_path):
    path = tmp_path / "models.config"
    path.write_text(HAND_WRITTEN)
    (tmp_path / "credit" / "1").mkdir(parents=True)
    (tmp_path / "credit" / "1" / "saved_model.pb").write_bytes(b"")
    problems = check(ModelsConfig.load(path))
    assert "model 'credit': policy names version 2, not on disk" in problems
    assert "model 'credit': label 'canary' points at version 2, not on disk" in problems
    assert any(p.startswith("model 'churn': no version folders") for p in problems)
    assert not any("stable" in p for p in problems)


def test_check_leaves_remote_base_paths_to_tf_serving(tmp_path):
    """A gs:// base path (deploy/k8s/gcs) cannot be listed from here: check must not report
    it as an empty local folder, while local entries in the same file are still checked."""
    config = ModelsConfig.load(tmp_path / "models.config", missing_ok=True)
    config.upsert(ModelEntry("credit", "gs://bucket/models/credit"))
    config.upsert(ModelEntry("churn", "/models/churn"))
    config.save()
    problems = check(ModelsConfig.load(tmp_path / "models.config"))
    assert not any("credit" in p for p in problems), problems
    assert any(p.startswith("model 'churn': no version folders") for p in problems)

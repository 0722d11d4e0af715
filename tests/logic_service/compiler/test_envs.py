"""Build environments: made once from pinned wheels, never half-made, failures in one line."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import sklearn

from devtools.servers import script
from logic_service.compiler.envs import ensure_env, env_dir, requirements, user_env
from logic_service.errors import ConfigError

PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


def test_releases_get_the_numpy_they_were_built_for() -> None:
    old, new = requirements("1.3.2"), requirements("1.5.2")
    assert old[0] == "scikit-learn==1.3.2" and "numpy==1.26.4" in old
    assert new[0] == "scikit-learn==1.5.2" and "numpy==2.2.6" in new
    for pins in (old, new):
        assert all("==" in pin for pin in pins)  # pinned, like a lock file
        assert {"skl2onnx==1.20.0", "onnxruntime==1.32.0", "dill==0.4.1"} <= set(pins)
    assert env_dir("1.3.2").name.startswith(f"sklearn-1.3.2-py{PYTHON}-")


def test_a_release_without_a_wheel_here_is_one_line_and_leaves_nothing(tmp_path) -> None:
    """scikit-learn 1.0.2 has no wheel for Python 3.11 or later: pip cannot install it."""
    lines: list[str] = []
    with pytest.raises(ConfigError) as error:
        ensure_env("1.0.2", lines.append, tmp_path)
    message = str(error.value)
    assert f"no wheel for Python {PYTHON} here" in message and "--python" in message
    assert "\n" not in message
    assert lines[0].startswith("scikit-learn 1.0.2 build environment: creating ")
    assert lines[1].startswith("  installing (wheels only): scikit-learn==1.0.2 ")
    assert list(tmp_path.iterdir()) == []  # no half-made environment left in the cache


def test_no_package_index_is_one_line(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)  # this machine's pip.conf adds mirrors
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    with pytest.raises(ConfigError) as error:
        ensure_env("1.4.2", lambda line: None, tmp_path)
    assert "the package index is not reachable" in str(error.value)
    assert list(tmp_path.iterdir()) == []


def test_a_cached_environment_is_reused_without_pip(legacy_sklearn) -> None:
    legacy_sklearn("1.3.2")  # made (or found) by the fixture
    lines: list[str] = []
    env = ensure_env("1.3.2", lines.append)
    assert lines == [] and env.origin.startswith("cached ")
    assert env.packages["scikit-learn"] == "1.3.2" and env.packages["numpy"] == "1.26.4"


def test_python_flag_is_checked_before_use(legacy_sklearn) -> None:
    with pytest.raises(ConfigError, match=r"cannot import scikit-learn, skl2onnx"):
        user_env(__import__("pathlib").Path("/usr/bin/false"), "1.3.2")
    with pytest.raises(ConfigError) as error:
        user_env(__import__("pathlib").Path(sys.executable), "1.3.2")
    assert (
        f"has scikit-learn {sklearn.__version__}, but the artifacts were pickled by 1.3.2"
        in str(error.value)
    )


def test_compile_names_the_python_flag_when_no_wheel_exists(sklearn_artifacts, tmp_path) -> None:
    """An artifact from a release this Python cannot install: exit 1 and what to do."""
    import yaml

    legacy = tmp_path / "legacy.pkl"
    raw = (sklearn_artifacts.root / "credit" / "transformer.pkl").read_bytes()
    legacy.write_bytes(raw.replace(sklearn.__version__.encode(), b"1.0.2"))
    config = tmp_path / "pipelines.yaml"
    config.write_text(
        yaml.safe_dump({"pipelines": {"old": {"transformer": "legacy.pkl", "graph_model": "m"}}})
    )
    result = subprocess.run(
        [script("logic-service"), "compile", "--config", str(config)],
        capture_output=True,
        text=True,
        env={**os.environ, "KIT_BUILD_CACHE": str(tmp_path / "cache")},
        timeout=600,
    )
    assert result.returncode == 1
    assert "old: cannot be compiled: cannot create the scikit-learn 1.0.2 build environment" in (
        result.stdout
    )
    assert "--python" in result.stdout

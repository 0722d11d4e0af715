"""deploy/tfserving/model-available, the graph tier's healthcheck and readiness probe, run for
real with bash against a real graph-service (which answers TF Serving's model status URL)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from devtools.savedmodels import write_dense_savedmodel
from devtools.servers import ServerProcess, free_port, script, start_server
from tests.deploy.dockerfiles import ROOT

PROBE = ROOT / "deploy" / "tfserving" / "model-available"

CONFIG = """model_config_list {{
{entries}}}
"""
ENTRY = """  config {{
    name: "{name}"
    base_path: "{base_path}"
    model_platform: "tensorflow"
  }}
"""


def models_config(path: Path, models: dict[str, Path]) -> Path:
    entries = "".join(ENTRY.format(name=name, base_path=base) for name, base in models.items())
    path.write_text(CONFIG.format(entries=entries))
    return path


@pytest.fixture(scope="module")
def graph(tmp_path_factory: pytest.TempPathFactory) -> tuple[ServerProcess, Path]:
    root = tmp_path_factory.mktemp("graph")
    write_dense_savedmodel(root / "alpha" / "1", 3)
    write_dense_savedmodel(root / "beta" / "1", 2)
    config = models_config(root / "models.config", {"alpha": root / "alpha", "beta": root / "beta"})
    port = free_port()
    server = start_server(
        [
            script("graph-service"),
            "--model_config_file",
            str(config),
            "--rest_api_port",
            str(port),
            "--rest_api_host",
            "127.0.0.1",
            "--port=0",  # REST only: the probe reads TF Serving's REST status URL
        ],
        port,
        root / "graph.log",
        ready_path="/v1/models/beta",
        ready_status=[200],
    )
    yield server, root
    server.stop()


def probe(config: Path, port: int, *names: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(PROBE), *names],
        env={"PATH": os.environ["PATH"], "MODELS_CONFIG": str(config), "REST_PORT": str(port)},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_healthy_when_every_model_in_models_config_is_available(graph) -> None:
    server, root = graph
    result = probe(root / "models.config", server.port)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_unhealthy_naming_a_model_that_is_not_available(graph, tmp_path: Path) -> None:
    server, root = graph
    config = models_config(
        tmp_path / "models.config", {"alpha": root / "alpha", "ghost": root / "ghost"}
    )
    result = probe(config, server.port)
    assert result.returncode == 1
    assert result.stderr.strip() == "model-available: model ghost has no AVAILABLE version"


def test_names_given_as_arguments_replace_the_config(graph, tmp_path: Path) -> None:
    server, _ = graph
    missing = tmp_path / "no-such.config"
    assert probe(missing, server.port, "alpha", "beta").returncode == 0
    assert probe(missing, server.port, "alpha", "gamma").returncode == 1


@pytest.mark.parametrize("content", [None, "model_config_list {\n}\n"], ids=["missing", "empty"])
def test_unhealthy_without_models(graph, tmp_path: Path, content: str | None) -> None:
    server, _ = graph
    config = tmp_path / "models.config"
    if content is not None:
        config.write_text(content)
    result = probe(config, server.port)
    assert result.returncode == 1
    assert result.stderr.startswith("model-available: ")


def test_unhealthy_when_nothing_listens(graph) -> None:
    _, root = graph
    result = probe(root / "models.config", free_port())
    assert result.returncode == 1
    assert "nothing listens" in result.stderr


def test_probe_is_executable_and_needs_only_bash_sed_grep() -> None:
    assert os.access(PROBE, os.X_OK)
    text = PROBE.read_text()
    assert text.startswith("#!/bin/bash\n")
    assert "curl" not in text.replace("no curl", "") and "wget" not in text

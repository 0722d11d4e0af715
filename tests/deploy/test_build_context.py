"""Every image builds from a fresh clone: nothing a Dockerfile copies is missing or ignored.

No Docker engine runs here, so the build context is computed the way `docker build` computes it:
the files a fresh clone holds (`git ls-files`) minus what .dockerignore excludes. Each COPY
source of each Dockerfile must bring at least one file from that set, and the project packages
the copied code imports must be copied too (else the image builds and fails at import).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.deploy.dockerfiles import (
    DOCKERFILES,
    ROOT,
    context_copies,
    context_files,
    dockerignore_patterns,
    ignored,
    source_files,
    tracked_files,
)


@pytest.fixture(scope="module")
def clone_files() -> list[str]:
    return tracked_files()


@pytest.fixture(scope="module")
def build_context(clone_files: list[str]) -> list[str]:
    return context_files(clone_files, (ROOT / ".dockerignore").read_text())


def missing_sources(dockerfile: str, context: list[str]) -> list[str]:
    return [
        f"{copy.dockerfile}: COPY {source} -> {copy.destination}"
        for copy in context_copies(ROOT / dockerfile)
        for source in copy.sources
        if not source_files(source, context)
    ]


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_every_copy_source_is_in_a_fresh_clone_build_context(
    dockerfile: str, build_context: list[str]
) -> None:
    assert context_copies(ROOT / dockerfile), f"{dockerfile} copies nothing from the context"
    assert missing_sources(dockerfile, build_context) == []


def test_a_copy_of_a_local_run_folder_is_caught(tmp_path: Path, build_context: list[str]) -> None:
    """The old graph image copied models/, which exists only after `make up`."""
    dockerfile = ROOT / "graph_service" / "Dockerfile"
    broken = dockerfile.with_name("Dockerfile.broken-copy-test")
    broken.write_text(dockerfile.read_text() + "\nCOPY models/ /models/\n")
    try:
        problems = missing_sources(str(broken.relative_to(ROOT)), build_context)
    finally:
        broken.unlink()
    assert problems == [f"{broken.relative_to(ROOT)}: COPY models/ -> /models/"]


def test_local_run_outputs_and_environments_stay_out_of_the_context() -> None:
    patterns = dockerignore_patterns((ROOT / ".dockerignore").read_text())
    for path in (
        "models/models.config",
        "models/credit/1/saved_model.pb",
        "run/graph.log",
        "examples/credit/artifacts/transformer.pkl",
        "examples/credit/artifacts/model.h5",
        ".venv/bin/python",
        ".git/HEAD",
        "tests/deploy/test_compose.py",
        "logic_service/__pycache__/app.cpython-311.pyc",
        "deploy/schemas/compose-spec.json",
    ):
        assert ignored(path, patterns), f"{path} would be sent to the Docker daemon"
    for path in ("examples/credit/pipelines.yaml", "examples/credit/train.py", "deploy/prepare.py"):
        assert not ignored(path, patterns), f"{path} is needed by an image"


def test_dockerignore_matcher_follows_docker_rules() -> None:
    patterns = dockerignore_patterns("**/*.pyc\nbuild\nexamples/*/artifacts\ndocs\n!docs/keep.md\n")
    assert ignored("a/b/c.pyc", patterns)
    assert ignored("c.pyc", patterns)
    assert ignored("build/lib/x.py", patterns)
    assert not ignored("src/build.py", patterns)
    assert ignored("examples/credit/artifacts/t.pkl", patterns)
    assert not ignored("examples/credit/pipelines.yaml", patterns)
    assert ignored("docs/other.md", patterns)
    assert not ignored("docs/keep.md", patterns)


def _project_packages() -> set[str]:
    return {path.parent.name for path in ROOT.glob("*/__init__.py")}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_copied_code_finds_every_project_package_it_imports(
    dockerfile: str, build_context: list[str]
) -> None:
    copied = sorted(
        {
            name
            for copy in context_copies(ROOT / dockerfile)
            for source in copy.sources
            for name in source_files(source, build_context)
        }
    )
    packages = _project_packages()
    shipped = {name.split("/")[0] for name in copied if name.split("/")[0] in packages}
    needed: dict[str, str] = {}
    for name in copied:
        if name.endswith(".py"):
            for module in _imports(ROOT / name) & packages:
                needed.setdefault(module, name)
    missing = {
        module: f"imported by {where}" for module, where in needed.items() if module not in shipped
    }
    assert missing == {}, f"{dockerfile} does not copy these packages"

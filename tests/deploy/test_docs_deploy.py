"""The README's ways in and the deployment page name commands and files that exist.

The README shows the three ways in on its first screen; docs/deployment.md (the old README's
Deploy section) says what was and was not run here. Every repository path either names
exists in a fresh clone.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

import pytest

from tests.deploy.dockerfiles import ROOT, tracked_files

README = (ROOT / "README.md").read_text()
DEPLOYMENT = (ROOT / "docs" / "deployment.md").read_text()


def section(text: str, title: str) -> str:
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def test_first_screen_shows_the_three_ways_in() -> None:
    first = README[: README.index("\n## How it fits together")]
    for command in (
        "make up",
        "docker compose up",
        "Dockerfile.convert --target bundle",
        "kubectl apply -k deploy/k8s",
    ):
        assert command in first, command
    assert len(first.splitlines()) < 40, "keep it to one screen"


def test_deployment_page_says_what_was_not_run_here() -> None:
    checked = section(DEPLOYMENT, "What was checked here, and what was not")
    assert "No Docker engine and no cluster" in checked
    assert "hadolint" in checked and "Compose" in checked and "schemas" in checked


@pytest.mark.parametrize(
    "where",
    ["README: Three ways in", "docs/deployment.md"],
)
def test_every_repository_path_named_exists_in_a_fresh_clone(where: str) -> None:
    files = set(tracked_files())
    folders = {str(parent) for name in files for parent in PurePosixPath(name).parents}
    text = section(README, "Three ways in") if where.startswith("README") else DEPLOYMENT
    named = set(
        re.findall(
            r"(?<![\w/.-])((?:deploy|graph_service|examples|tests)/[\w./-]*\w"
            r"|compose[\w.]*\.yaml|Dockerfile\.\w+)",
            text,
        )
    )
    assert named, "the text names no files"
    missing = {path for path in named if path.rstrip("/") not in files | folders}
    assert missing == set()

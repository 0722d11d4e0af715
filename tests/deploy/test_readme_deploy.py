"""The README's ways in and its Deploy section name commands and files that exist."""

from __future__ import annotations

import re
from pathlib import PurePosixPath

import pytest

from tests.deploy.dockerfiles import ROOT, tracked_files

README = (ROOT / "README.md").read_text()


def section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else None]


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


def test_deploy_section_says_what_was_not_run_here() -> None:
    deploy = section("Deploy")
    assert "No Docker engine and no cluster" in deploy
    assert "hadolint" in deploy and "Compose" in deploy and "schemas" in deploy


@pytest.mark.parametrize("heading", ["Three ways in", "Deploy"])
def test_every_repository_path_named_exists_in_a_fresh_clone(heading: str) -> None:
    files = set(tracked_files())
    folders = {str(parent) for name in files for parent in PurePosixPath(name).parents}
    text = section(heading)
    named = set(
        re.findall(
            r"(?<![\w/.-])((?:deploy|graph_service|examples|tests)/[\w./-]*\w"
            r"|compose[\w.]*\.yaml|Dockerfile\.\w+)",
            text,
        )
    )
    assert named, "the section names no files"
    missing = {path for path in named if path.rstrip("/") not in files | folders}
    assert missing == set()

"""The README stays the front door, and a reader of the old one-page README finds each section.

Until issue 18 the README held the whole manual (1,290 lines). It now holds the five things a
newcomer needs first; the manual is docs/, one page per job, and docs/README.md maps every
section heading of the old README (listed below, as they were at 5b171dd) to its new place.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
INDEX = (ROOT / "docs" / "README.md").read_text(encoding="utf-8")
MAX_README_LINES = 250

OLD_HEADINGS = [
    "tiered-serving-kit",
    "Three ways in",
    "How it fits together",
    "Converters: Keras and TF1 to TF Serving",
    "convert-h5",
    "convert-ckpt",
    "export-frozen: one file for Go, C and Java (libtensorflow)",
    "models.config, in the container and on a laptop",
    "Graph service",
    "gRPC",
    "Logic service",
    "The request path, and what it costs",
    "The pipeline file",
    "Compiled feature pipelines",
    "Request and response",
    "Errors",
    "Graph targets: batching, breaker, readiness",
    "Environment",
    "Probes, shutdown and worker loss",
    "Deploy",
    "Versions",
    "Docker compose (one host)",
    "Kubernetes",
    "What was checked here, and what was not",
    "Rolling out a new model version (`stable` / `canary`)",
    "Scaling",
    "Adding a second model",
    "Reliability",
    "Development",
    "Benchmarks",
    "Load testing your own deployment",
]


def test_readme_is_short() -> None:
    assert len(README.splitlines()) <= MAX_README_LINES


def test_readme_sections_are_the_front_door() -> None:
    headings = re.findall(r"^## (.+)$", README, flags=re.MULTILINE)
    assert headings == [
        "Three ways in",
        "How it fits together",
        "The one request",
        "A five-minute tour",
        "Figures",
        "Where to go next",
    ]


def test_readme_links_every_page_of_the_manual() -> None:
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert f"(docs/{page.name})" in README, page.name


def test_the_index_lists_every_page() -> None:
    for page in sorted((ROOT / "docs").glob("*.md")):
        if page.name != "README.md":
            assert f"]({page.name})" in INDEX, page.name


@pytest.mark.parametrize("heading", OLD_HEADINGS)
def test_every_old_section_has_a_row_in_where_did_it_go(heading: str) -> None:
    table = INDEX[INDEX.index("## Where did it go?") :]
    rows = [
        line.split(" | ")[0].lstrip("| ") for line in table.splitlines() if line.startswith("| ")
    ]
    assert any(row == heading or row.startswith(f"{heading} (") for row in rows), heading


def test_the_notes_were_folded_in() -> None:
    assert not (ROOT / "docs" / "notes").exists()


def test_every_logic_variable_is_documented() -> None:
    """Every LOGIC_* variable the logic tier reads has a row in the Environment table."""
    code = "\n".join(
        path.read_text(encoding="utf-8") for path in sorted((ROOT / "logic_service").rglob("*.py"))
    )
    read = set(re.findall(r"\bLOGIC_[A-Z][A-Z0-9_]*[A-Z0-9]\b", code))
    page = (ROOT / "docs" / "logic-service.md").read_text(encoding="utf-8")
    environment = page[page.index("\n## Environment\n") :]
    environment = environment[: environment.index("\n## ", 1)]
    assert len(read) > 25
    assert sorted(name for name in read if f"| `{name}` |" not in environment) == []

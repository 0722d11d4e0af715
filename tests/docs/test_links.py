"""Every relative link in the docs resolves, and every `make TARGET` they name exists.

Checked in README.md, docs/**/*.md and the other Markdown pages of the repository:

- a relative link (`[text](path)`, `![alt](path)`, `[ref]: path`) names a file or folder that
  exists, relative to the page;
- a `#anchor` (alone, or after a path to a Markdown page) is the slug of one of the target
  page's headings, by GitHub's rules: the heading's text lowercased, every character that is
  not a letter, digit, `_`, `-` or space dropped, spaces turned into `-`, and `-1`, `-2`, ...
  added to repeated slugs;
- a `make TARGET` written as a command (in a code block or an inline code span) names a
  target of the Makefile.

Links inside code are not links; URLs with a scheme (https:, mailto:) are not checked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"(`+)(.+?)\1", re.DOTALL)
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^[ ]{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$", re.MULTILINE)
HEADING = re.compile(r"^[ ]{0,3}(#{1,6})[ \t]+(.*?)[ \t]*#*[ \t]*$", re.MULTILINE)
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:|^//")
# `make` at a command's start (line, code span, or after $ ; && || | ( ), then options and
# VAR=value assignments, then the target.
MAKE = re.compile(
    r"(?:^|(?<=[;&|(`$])|(?<=\$ ))[ \t]*make((?:\s+(?:-C\s+\S+|-[A-Za-z]+|[A-Z_][A-Z0-9_]*=\S*))*)"
    r"\s+([a-z][a-z0-9_-]*)",
    re.MULTILINE,
)
MAKE_TARGET = re.compile(
    r"^([A-Za-z0-9_.][\w.-]*(?:[ \t]+[A-Za-z0-9_.][\w.-]*)*)[ \t]*:(?!=)", re.M
)


def pages(root: Path) -> list[Path]:
    """README.md, docs/**/*.md, and the Markdown pages of examples/ and benchmarks/."""
    found = [root / "README.md"] if (root / "README.md").exists() else []
    for folder in ("docs", "examples", "benchmarks"):
        found += sorted((root / folder).rglob("*.md"))
    return found


def without_fences(text: str) -> str:
    """The page with fenced blocks blanked (a `#` line there is not a heading)."""
    return FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)


def without_code(text: str) -> str:
    """The page with fenced blocks and inline code spans blanked (links there are not links)."""
    return INLINE_CODE.sub(lambda m: " " * len(m.group(0)), without_fences(text))


def code_texts(text: str) -> list[str]:
    """Fenced blocks and inline code spans: where commands are written."""
    fences = [m.group(0) for m in FENCE.finditer(text)]
    rest = FENCE.sub("", text)
    return fences + [m.group(2) for m in INLINE_CODE.finditer(rest)]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text (github-slugger, for the characters used here)."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links and images -> their text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML tags
    text = text.replace("`", "").replace("*", "")
    text = re.sub(r"(?<!\w)_+|_+(?!\w)", "", text)  # _emphasis_, not snake_case
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    result = set()
    for match in HEADING.finditer(without_fences(page.read_text(encoding="utf-8"))):
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.add(base if count == 0 else f"{base}-{count}")
    return result


def makefile_targets(makefile: Path) -> set[str]:
    targets = set()
    for match in MAKE_TARGET.finditer(makefile.read_text(encoding="utf-8")):
        if "$" not in match.group(1):
            targets.update(match.group(1).split())
    return targets


@dataclass(frozen=True)
class Problem:
    page: str
    target: str
    why: str

    def __str__(self) -> str:
        return f"{self.page}: {self.target}: {self.why}"


def link_problems(root: Path) -> list[Problem]:
    problems = []
    cache: dict[Path, set[str]] = {}
    for page in pages(root):
        text = without_code(page.read_text(encoding="utf-8"))
        name = page.relative_to(root).as_posix()
        for target in LINK.findall(text) + REFERENCE.findall(text):
            if SCHEME.match(target):
                continue
            path_part, _, anchor = target.partition("#")
            path = (page.parent / path_part).resolve() if path_part else page
            if not path.exists():
                problems.append(Problem(name, target, "no such file"))
                continue
            if not anchor:
                continue
            if path.suffix != ".md" or not path.is_file():
                problems.append(Problem(name, target, "an anchor into a page that is not Markdown"))
                continue
            if path not in cache:
                cache[path] = anchors(path)
            if anchor not in cache[path]:
                problems.append(
                    Problem(name, target, f"no heading of {path.name} has the anchor #{anchor}")
                )
    return problems


def make_problems(root: Path) -> list[Problem]:
    targets = makefile_targets(root / "Makefile")
    problems = []
    for page in pages(root):
        name = page.relative_to(root).as_posix()
        for code in code_texts(page.read_text(encoding="utf-8")):
            for match in MAKE.finditer(code):
                if match.group(2) not in targets:
                    problems.append(
                        Problem(name, f"make {match.group(2)}", "no such Makefile target")
                    )
    return problems


def test_every_relative_link_resolves() -> None:
    assert pages(ROOT), "no pages found"
    assert [str(p) for p in link_problems(ROOT)] == []


def test_every_make_target_named_exists() -> None:
    assert [str(p) for p in make_problems(ROOT)] == []


def test_the_docs_name_make_targets_at_all() -> None:
    """The make check is not vacuous: the README's own commands are found."""
    named = {
        match.group(2)
        for code in code_texts((ROOT / "README.md").read_text(encoding="utf-8"))
        for match in MAKE.finditer(code)
    }
    assert {"up", "demo", "test", "help"} <= named


# --------------------------------------------------------------------- the checker itself


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "Makefile").write_text(
        "VENV := .venv\n.PHONY: up test\n$(VENV)/bin/python:\n\tpython -m venv .venv\n"
        "up: $(VENV)/bin/python  ## start\n\ttrue\ntest:\n\ttrue\n"
    )
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "page.md").write_text(
        "# A page\n\n## Docker compose (one host)\n\n## `make up`, then `logic-service --check`\n\n"
        "## Rolling out (`stable` / `canary`)\n\n## Notes\n\n## Notes\n\n"
        "```sh\n# not a heading\nmake up\n```\n"
    )
    return tmp_path


def write_readme(tree: Path, body: str) -> None:
    (tree / "README.md").write_text(f"# Title\n\n## Section\n\n{body}\n")


@pytest.mark.parametrize(
    "link",
    [
        "docs/page.md",
        "docs/page.md#a-page",
        "docs/page.md#docker-compose-one-host",
        "docs/page.md#make-up-then-logic-service---check",
        "docs/page.md#rolling-out-stable--canary",
        "docs/page.md#notes-1",
        "docs/",
        "#section",
        "https://example.com/missing#nowhere",
    ],
)
def test_good_links_pass(tree: Path, link: str) -> None:
    write_readme(tree, f"See [there]({link}).")
    assert link_problems(tree) == []


@pytest.mark.parametrize(
    ("link", "why"),
    [
        ("docs/missing.md", "no such file"),
        ("docs/page.md#not-a-heading", "no heading of page.md"),
        ("docs/page.md#notes-2", "no heading of page.md"),
        ("#nowhere", "no heading of README.md"),
        ("Makefile#up", "not Markdown"),
    ],
)
def test_a_broken_link_fails(tree: Path, link: str, why: str) -> None:
    write_readme(tree, f"See [there]({link}), and ![a picture]({link}).")
    problems = link_problems(tree)
    assert len(problems) == 2, problems
    assert all(p.target == link and why in p.why for p in problems)


def test_links_inside_code_are_not_links(tree: Path) -> None:
    write_readme(tree, "`[x](missing.md)`\n\n```md\n[y](missing.md)\n```")
    assert link_problems(tree) == []


def test_a_reference_link_is_checked(tree: Path) -> None:
    write_readme(tree, "See [the page][p].\n\n[p]: docs/gone.md")
    assert [p.target for p in link_problems(tree)] == ["docs/gone.md"]


@pytest.mark.parametrize(
    ("text", "unknown"),
    [
        ("Run `make up` and `make test`.", []),
        ("```sh\nmake up   # in another terminal\n$ make PYTHON=python3.13 test\n```", []),
        ("`make PYTHON=python3.13\ninstall`", ["make install"]),
        ("Run `make bench-logic`.", ["make bench-logic"]),
        ("```sh\ncd x && make -C dir demo\n```", ["make demo"]),
        ("Make sure to make it work; `make` alone, `# make the most of it`.", []),
    ],
)
def test_make_targets_are_checked(tree: Path, text: str, unknown: list[str]) -> None:
    write_readme(tree, text)
    assert [p.target for p in make_problems(tree)] == unknown


def test_makefile_targets_are_parsed(tree: Path) -> None:
    assert makefile_targets(tree / "Makefile") == {".PHONY", "up", "test"}
    real = makefile_targets(ROOT / "Makefile")
    assert {"up", "demo", "test", "help", "bench-logic", "loadtest"} <= real
    assert not any("$" in t or t.endswith("python") for t in real)

"""Read Dockerfiles and .dockerignore the way `docker build` does, without a Docker engine.

Shared by the deploy tests: instruction lists with continuations joined, ARG defaults expanded,
the COPY sources each stage takes from the build context, and .dockerignore matching with
Docker's rules (patterns relative to the context root, `**` for any number of folders, a
matching folder excludes everything under it, `!pattern` re-includes, the last match wins).
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Every image of the project, all built with the repository root as context.
DOCKERFILES = [
    "Dockerfile.logic",
    "Dockerfile.convert",
    "graph_service/Dockerfile",
    "deploy/graph-service.Dockerfile",
]


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with line continuations joined and comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    result = []
    for line in lines:
        keyword, _, rest = line.partition(" ")
        result.append((keyword.upper(), rest.strip()))
    return result


def final_stage(path: Path, target: str | None = None) -> list[tuple[str, str]]:
    """The instructions of `target` (default: the last stage), without its base's."""
    steps = instructions(path)
    starts = [i for i, (keyword, _) in enumerate(steps) if keyword == "FROM"]
    if target is None:
        return steps[starts[-1] :]
    for number, start in enumerate(starts):
        if re.search(rf"\bAS\s+{re.escape(target)}$", steps[start][1], re.IGNORECASE):
            end = starts[number + 1] if number + 1 < len(starts) else len(steps)
            return steps[start:end]
    raise KeyError(f"{path.name} has no stage {target!r}")


def stage_names(path: Path) -> list[str]:
    return [
        match.group(1)
        for keyword, args in instructions(path)
        if keyword == "FROM" and (match := re.search(r"\bAS\s+(\S+)$", args, re.IGNORECASE))
    ]


def exec_form(args: str) -> list[str]:
    return json.loads(args)


@dataclass(frozen=True)
class Copy:
    dockerfile: str
    sources: tuple[str, ...]
    destination: str


def context_copies(path: Path) -> list[Copy]:
    """COPY/ADD instructions that read the build context (not --from a stage), ARGs expanded."""
    args: dict[str, str] = {}
    copies = []
    for keyword, rest in instructions(path):
        if keyword == "ARG":
            name, _, default = rest.partition("=")
            if default:
                args[name.strip()] = default.strip().strip('"')
            continue
        if keyword not in {"COPY", "ADD"}:
            continue
        words = exec_form(rest) if rest.startswith("[") else shlex.split(rest)
        flags = [word for word in words if word.startswith("--")]
        if any(flag.startswith("--from=") for flag in flags):
            continue
        paths = [word for word in words if not word.startswith("--")]

        def expand(text: str) -> str:
            return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m.group(1) or m.group(2)], text)

        *sources, destination = (expand(item) for item in paths)
        copies.append(Copy(str(path.relative_to(ROOT)), tuple(sources), destination))
    return copies


def dockerignore_patterns(text: str) -> list[tuple[bool, str]]:
    """(is_exception, cleaned pattern) in file order."""
    patterns = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exception = line.startswith("!")
        pattern = line.removeprefix("!").strip().strip("/")
        pattern = re.sub(r"^\./", "", pattern)
        patterns.append((exception, pattern))
    return patterns


def _pattern_matches(pattern: str, path: str) -> bool:
    """Docker's filepath.Match plus `**`: whole path components, `*` never crosses `/`."""
    regex = ""
    parts = pattern.split("/")
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        if part == "**":
            regex += "(?:.*/)?" if not last else ".*"
            continue
        piece = ""
        for char in part:
            piece += {"*": "[^/]*", "?": "[^/]"}.get(char, re.escape(char))
        regex += piece + ("" if last else "/")
    return re.fullmatch(regex, path) is not None


def ignored(path: str, patterns: list[tuple[bool, str]]) -> bool:
    """True when .dockerignore keeps `path` (relative, posix) out of the build context."""
    candidates = [path]
    parts = path.split("/")
    candidates += ["/".join(parts[:n]) for n in range(1, len(parts))]
    result = False
    for exception, pattern in patterns:
        if any(_pattern_matches(pattern, candidate) for candidate in candidates):
            result = not exception
    return result


def tracked_files() -> list[str]:
    """What a fresh clone holds: the files git tracks (committed or staged)."""
    output = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    return [name for name in output.split("\0") if name]


def context_files(files: list[str], dockerignore: str) -> list[str]:
    patterns = dockerignore_patterns(dockerignore)
    return [name for name in files if not ignored(name, patterns)]


def source_files(source: str, files: list[str]) -> list[str]:
    """Files of the context a COPY source brings in (a file, a folder, or a glob)."""
    source = source.strip("/") or "."
    if source == ".":
        return list(files)
    return [
        name
        for name in files
        if name == source or name.startswith(source + "/") or fnmatchcase(name, source)
    ]


__all__ = [
    "DOCKERFILES",
    "ROOT",
    "Copy",
    "context_copies",
    "context_files",
    "exec_form",
    "final_stage",
    "ignored",
    "instructions",
    "source_files",
    "stage_names",
    "tracked_files",
]

"""Build environments: an interpreter with exactly the scikit-learn version that pickled an artifact.

A pickle is only read correctly by the scikit-learn that wrote it (attributes are renamed and
added between releases), so the compile command converts each pipeline in an interpreter
with that version. The running one is used when it matches; otherwise a virtual environment
is created once per (scikit-learn version, Python version) under the cache folder, like a
`docker build` layer: pinned wheels only (`--only-binary=:all:`, nothing is compiled), the
conversion stack the kit itself runs (skl2onnx, onnx, onnxruntime), and a numpy/scipy/pandas
stack that release supports. It is created in a temporary folder and renamed into place only
once it imports, so a failed or interrupted build never leaves a half-made environment.
`--python PATH` names an interpreter the user prepared instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from logic_service.errors import ConfigError
from logic_service.pipeline.pickle_scan import version_key

CACHE_ENV = "KIT_BUILD_CACHE"
MARKER = "kit-build-env.json"
# What the compile worker imports, pinned to the versions the kit itself runs (requirements.txt).
CONVERSION_STACK = (
    "skl2onnx==1.20.0",
    "onnx==1.23.2",
    "onnxruntime==1.32.0",
    "joblib==1.6.0",
    "dill==0.4.1",
    "pyyaml==6.0.3",
)
# scikit-learn releases before 1.4.2 were built against numpy 1 (their compiled parts do not
# load under numpy 2); later ones against numpy 2. pandas 2.2 reads both and keeps the object
# dtype for strings those releases were tested with.
_NUMPY1_STACK = ("numpy==1.26.4", "scipy==1.13.1", "pandas==2.2.3")
_NUMPY2_STACK = ("numpy==2.2.6", "scipy==1.15.3", "pandas==2.2.3")
_FIRST_NUMPY2 = (1, 4, 2)
_IMPORT_CHECK = (
    "import json, sklearn, skl2onnx, onnx, onnxruntime, numpy, pandas, yaml, joblib; "
    "print(json.dumps({'scikit-learn': sklearn.__version__, 'skl2onnx': skl2onnx.__version__, "
    "'onnx': onnx.__version__, 'onnxruntime': onnxruntime.__version__, "
    "'numpy': numpy.__version__, 'pandas': pandas.__version__}))"
)

Say = Callable[[str], None]


@dataclass(frozen=True)
class BuildEnv:
    """An interpreter to compile in, and what it has."""

    python: Path
    sklearn_version: str
    origin: str  # "running" | "cached <folder>" | "created <folder>" | "--python"
    packages: dict[str, str]


def cache_root() -> Path:
    """$KIT_BUILD_CACHE, else $XDG_CACHE_HOME or ~/.cache, /tiered-serving-kit/build-envs."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit).expanduser().resolve()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tiered-serving-kit" / "build-envs"


def requirements(sklearn_version: str) -> tuple[str, ...]:
    """The pinned packages a build environment for `sklearn_version` gets."""
    stack = _NUMPY2_STACK if version_key(sklearn_version) >= _FIRST_NUMPY2 else _NUMPY1_STACK
    return (f"scikit-learn=={sklearn_version}", *stack, *CONVERSION_STACK)


def serving_requirements(sklearn_version: str) -> tuple[str, ...]:
    """What a logic tier serving pickles of `sklearn_version` itself needs instead of its own
    scikit-learn stack (Dockerfile.logic's SKLEARN_VERSION build argument installs these)."""
    return requirements(sklearn_version)[: 1 + len(_NUMPY1_STACK)]


def env_dir(sklearn_version: str, root: Path | None = None) -> Path:
    """Where the environment for this version and this Python lives in the cache."""
    pins = requirements(sklearn_version)
    digest = hashlib.sha256("\n".join(pins).encode()).hexdigest()[:10]
    python = f"py{sys.version_info.major}.{sys.version_info.minor}"
    return (root or cache_root()) / f"sklearn-{sklearn_version}-{python}-{digest}"


def running_env() -> BuildEnv:
    """This interpreter (its scikit-learn is the serving one)."""
    import sklearn

    return BuildEnv(Path(sys.executable), sklearn.__version__, "running", {})


def user_env(python: Path, wanted: str | None) -> BuildEnv:
    """`--python PATH`: it must import the conversion stack and hold the wanted version."""
    packages = _probe(python)
    if packages is None:
        raise ConfigError(
            f"--python {python}: cannot import scikit-learn, skl2onnx, onnx, onnxruntime, numpy, "
            "pandas, pyyaml and joblib there; install them in that environment "
            f"(e.g. {python} -m pip install {' '.join(CONVERSION_STACK[:3])})"
        )
    found = packages["scikit-learn"]
    if wanted is not None and found != wanted:
        raise ConfigError(
            f"--python {python} has scikit-learn {found}, but the artifacts were pickled by "
            f"{wanted}; install scikit-learn=={wanted} there or leave out --python"
        )
    return BuildEnv(python, found, "--python", packages)


def ensure_env(sklearn_version: str, say: Say, root: Path | None = None) -> BuildEnv:
    """The cached environment for `sklearn_version`, created (once) when it is missing."""
    target = env_dir(sklearn_version, root)
    python = target / "bin" / "python"
    if (target / MARKER).is_file():
        packages = json.loads((target / MARKER).read_text())["packages"]
        return BuildEnv(python, sklearn_version, f"cached {target}", packages)
    target.parent.mkdir(parents=True, exist_ok=True)
    pins = requirements(sklearn_version)
    say(
        f"scikit-learn {sklearn_version} build environment: creating {target} "
        "(once; later runs reuse it)"
    )
    say(f"  installing (wheels only): {' '.join(pins)}")
    staging = Path(tempfile.mkdtemp(prefix=f".creating-{target.name}-", dir=target.parent))
    try:
        _create(staging, pins, sklearn_version, say)
        packages = _probe(staging / "bin" / "python")
        if packages is None or packages.get("scikit-learn") != sklearn_version:
            raise ConfigError(
                f"the scikit-learn {sklearn_version} build environment installed but does not "
                f"import ({staging}); report it with the pip output above"
            )
        (staging / MARKER).write_text(json.dumps({"packages": packages, "pins": pins}, indent=1))
        try:
            staging.rename(target)
        except OSError:  # another compile made it meanwhile: use theirs
            if not (target / MARKER).is_file():
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    say(f"  ready: {target}")
    return BuildEnv(python, sklearn_version, f"created {target}", packages)


def _create(folder: Path, pins: tuple[str, ...], sklearn_version: str, say: Say) -> None:
    base = Path(getattr(sys, "_base_executable", sys.executable))
    result = subprocess.run([str(base), "-m", "venv", str(folder)], capture_output=True, text=True)
    if result.returncode != 0:
        raise ConfigError(
            f"cannot create a virtual environment with {base} ({_last_line(result.stderr)}); "
            "install the venv module (Debian: python3-venv) or pass --python"
        )
    command = [
        str(folder / "bin" / "python"),
        "-m",
        "pip",
        "install",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--no-input",
        "--progress-bar",
        "off",
        *pins,
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    assert process.stdout is not None
    lines = []
    for raw in process.stdout:
        line = raw.rstrip()
        lines.append(line)
        if line.startswith(("Collecting", "Downloading", "Installing", "Successfully")):
            say(f"  pip: {line.strip()}")
    if process.wait() != 0:
        raise ConfigError(_pip_failure(lines, sklearn_version))


def _pip_failure(lines: list[str], sklearn_version: str) -> str:
    """One line for what pip could not do, and what to do instead."""
    errors = [line.removeprefix("ERROR: ").strip() for line in lines if line.startswith("ERROR")]
    text = " ".join(lines)
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    # "(from versions: none)": the index offered no scikit-learn at all, so it was not reached.
    unreachable = r"NewConnectionError|name resolution|Network is unreachable|from versions: none"
    if re.search(unreachable, text):
        return (
            f"cannot create the scikit-learn {sklearn_version} build environment: the package "
            "index is not reachable (pip: network error); run the compile step where it is, or "
            "pass --python with an interpreter that has that version"
        )
    missing = next(
        (e for e in errors if "No matching distribution" in e or "Could not find a version" in e),
        None,
    )
    if missing:
        return (
            f"cannot create the scikit-learn {sklearn_version} build environment: no wheel for "
            f"Python {python} here (pip: {missing}); pass --python with a Python that has one "
            f"(scikit-learn {sklearn_version} supports older Pythons), or re-save the artifact "
            "with a newer scikit-learn"
        )
    detail = errors[-1] if errors else (lines[-1] if lines else "no output")
    return f"cannot create the scikit-learn {sklearn_version} build environment (pip: {detail})"


def _probe(python: Path) -> dict[str, str] | None:
    """The versions `python` imports, or None when it cannot import the conversion stack."""
    try:
        result = subprocess.run(
            [str(python), "-c", _IMPORT_CHECK], capture_output=True, text=True, timeout=120
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:
        return None
    try:
        return json.loads(result.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def main(argv: list[str] | None = None) -> int:
    """`python -m logic_service.compiler.envs --serving-pins 1.3.2`: the pins, a requirements
    file (one per line) on stdout."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m logic_service.compiler.envs",
        description="Print the pinned packages for a scikit-learn release (build environments "
        "and Dockerfile.logic's SKLEARN_VERSION).",
    )
    parser.add_argument("version", help="a scikit-learn release, e.g. 1.3.2")
    parser.add_argument(
        "--serving-pins",
        action="store_true",
        help="only what serving its pickles needs (scikit-learn, numpy, scipy, pandas)",
    )
    args = parser.parse_args(argv)
    if not re.fullmatch(r"\d+\.\d+(\.\d+)?", args.version):
        parser.error(f"{args.version!r} is not a scikit-learn release such as 1.3.2")
    pins = serving_requirements(args.version) if args.serving_pins else requirements(args.version)
    sys.stdout.write("".join(f"{pin}\n" for pin in pins))
    return 0


if __name__ == "__main__":
    sys.exit(main())

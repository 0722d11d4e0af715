"""Load the fitted artifacts a pipeline names: strictly, loudly, once, at start-up.

Pickles are where deployments break, so every failure names the file and what to do: a
sha256 pin that does not match, a file that is not a readable pickle or references what can
run commands (both found by `pickle_scan` before anything is unpickled), a class pickled from
a notebook's `__main__`, a module that cannot be imported. pickle, joblib (compressed too),
dill and .skops files load; which scikit-learn wrote each one is read from the file itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import logging
import re
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

import joblib

from logic_service.config import ArtifactRef
from logic_service.errors import ConfigError
from logic_service.pipeline.pickle_scan import PickleScan, PickleScanError, scan_file

log = logging.getLogger(__name__)

# `__main__` under gunicorn or python; `pytest.__main__` etc. when run as `python -m ...`.
_MAIN_ATTR = re.compile(r"Can't get attribute '([^']+)' on <module '(?:[\w.]+\.)?__main__'")
# Types skops flags but that carry no code: a dtype object. Everything else must be listed.
_SKOPS_HARMLESS = ("numpy.dtype",)
_PICKLE_SUFFIXES = {".pkl", ".pickle", ".joblib", ".jbl", ".dill", ".sav"}


@dataclass
class LoadedArtifact:
    """An unpickled object plus what /pipelines reports about where it came from."""

    obj: Any
    path: Path
    sha256: str
    sklearn_version: str | None
    warnings: list[str] = field(default_factory=list)
    format: str = "pickle"
    scan: PickleScan | None = None  # what the file holds, read before it was unpickled

    def describe(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "type": f"{type(self.obj).__module__}.{type(self.obj).__qualname__}",
            "format": self.format,
            "sha256": self.sha256,
            "sklearn_version": self.sklearn_version,
            "warnings": self.warnings,
        }


@dataclass(frozen=True)
class Inspected:
    """An artifact file checked and read without running it: its digest and what it holds."""

    ref: ArtifactRef
    sha256: str
    scan: PickleScan


def running_sklearn() -> str | None:
    """The scikit-learn this process would unpickle with, read without importing it (a
    service of compiled pipelines never needs to import scikit-learn at all)."""
    try:
        return metadata.version("scikit-learn")
    except metadata.PackageNotFoundError:
        return None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def import_modules(names: Sequence[str], base_dir: Path) -> list[ModuleType]:
    """Import the config's `imports:` (glue modules next to the file), naming failures."""
    _ensure_on_path(base_dir)
    modules = []
    for name in names:
        try:
            modules.append(importlib.import_module(name))
        except ImportError as error:
            raise ConfigError(
                f"imports: cannot import {name!r} ({error}); put {name}.py next to the pipeline "
                f"file ({base_dir}) or install it in the image"
            ) from None
    return modules


def resolve_hook(spec: str, base_dir: Path, where: str) -> Callable[..., Any]:
    """`module:function` -> the function; modules are found next to the pipeline file."""
    module_name, _, attr = spec.partition(":")
    _ensure_on_path(base_dir)
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ConfigError(
            f"{where}: cannot import {module_name!r} ({error}); put {module_name}.py next to "
            f"the pipeline file ({base_dir})"
        ) from None
    function = getattr(module, attr, None)
    if not callable(function):
        raise ConfigError(f"{where}: {module_name!r} has no function {attr!r}")
    return function


def inspect_artifact(ref: ArtifactRef) -> Inspected:
    """Check the file's pin and read what it holds without unpickling it: a damaged file, or
    one that references what can run commands, is refused here, before anything runs."""
    path = ref.path
    if not path.is_file():
        raise ConfigError(f"artifact {path} does not exist (paths are relative to the config file)")
    if path.suffix != ".skops" and path.suffix not in _PICKLE_SUFFIXES:
        raise ConfigError(
            f"artifact {path}: unknown file type {path.suffix!r} "
            f"(use {', '.join(sorted(_PICKLE_SUFFIXES))} or .skops)"
        )
    digest = file_sha256(path)
    if ref.sha256 and digest != ref.sha256:
        raise ConfigError(
            f"artifact {path}: sha256 is {digest}, the config pins {ref.sha256}; "
            "the file changed since it was pinned: deploy the pinned file or update the pin"
        )
    try:
        scan = scan_file(path)
    except PickleScanError as error:
        raise ConfigError(
            f"artifact {error}; re-save it from the training environment (joblib.dump or "
            "pickle.dump) and deploy the complete file"
        ) from None
    if scan.dangerous:
        raise ConfigError(
            f"artifact {path} references {', '.join(scan.dangerous)}, which can run commands "
            "when unpickled: refusing to load it; re-save the fitted objects alone (it was "
            "read without running it)"
        )
    return Inspected(ref, digest, scan)


def load_artifact(
    ref: ArtifactRef,
    glue_modules: Sequence[ModuleType] = (),
    skops_trusted: Sequence[str] = (),
    inspected: Inspected | None = None,
) -> LoadedArtifact:
    """Inspect (unless already done), then unpickle (pickle/joblib/dill) or skops-load."""
    inspected = inspected or inspect_artifact(ref)
    path, scan = ref.path, inspected.scan
    with warnings.catch_warnings():
        # The version a file was pickled with is read from the file (scan); sklearn's own
        # warning about it would only repeat that once per estimator.
        warnings.filterwarnings("ignore", message=".*unpickle estimator.*")
        if path.suffix == ".skops":
            obj = _load_skops(path, skops_trusted)
        else:
            obj = _load_pickle(path, glue_modules)
    running = running_sklearn()
    pickled_with = scan.sklearn_version or (running if _is_sklearn(obj) else None)
    notes = []
    if pickled_with is not None and pickled_with != running:
        notes.append(f"pickled with scikit-learn {pickled_with}, running {running}")
        log.warning("artifact %s: %s", path, notes[-1])
    return LoadedArtifact(obj, path, inspected.sha256, pickled_with, notes, scan.format, scan)


def _load_pickle(path: Path, glue_modules: Sequence[ModuleType]) -> Any:
    try:
        with _main_shim(glue_modules):
            return joblib.load(path)
    except AttributeError as error:
        match = _MAIN_ATTR.search(str(error))
        if match:
            raise ConfigError(
                f"artifact {path}: class {match.group(1)!r} was pickled from a script or "
                "notebook's __main__ and does not exist here; move it into a module and "
                "declare that module in the config: imports: [your_module]"
            ) from None
        raise ConfigError(f"artifact {path}: cannot unpickle: {error}") from None
    except ModuleNotFoundError as error:
        raise ConfigError(
            f"artifact {path}: needs module {error.name!r}, which is not importable; install it "
            f"or put {error.name}.py next to the config and list it under imports:"
        ) from None
    except Exception as error:  # unpickling runs arbitrary constructors; name the file
        raise ConfigError(
            f"artifact {path}: cannot load ({type(error).__name__}: {error})"
        ) from None


@contextlib.contextmanager
def _main_shim(glue_modules: Sequence[ModuleType]) -> Iterator[None]:
    """While unpickling, let `__main__.X` resolve to X from a declared `imports:` module.

    A notebook pickles its classes as `__main__.X`; under gunicorn `__main__` is gunicorn.
    Only names missing from `__main__` are added, and they are removed afterwards.
    """
    main = sys.modules["__main__"]
    added = []
    for module in glue_modules:
        for name, value in vars(module).items():
            if not name.startswith("_") and not hasattr(main, name):
                setattr(main, name, value)
                added.append(name)
    try:
        yield
    finally:
        for name in added:
            with contextlib.suppress(AttributeError):
                delattr(main, name)


def _load_skops(path: Path, trusted: Sequence[str]) -> Any:
    import skops.io as sio

    try:
        allowed = {*trusted, *_SKOPS_HARMLESS}
        untrusted = [name for name in sio.get_untrusted_types(file=path) if name not in allowed]
    except Exception as error:  # skops raises several types for a damaged file
        raise ConfigError(f"artifact {path}: not a readable .skops file ({error})") from None
    if untrusted:
        raise ConfigError(
            f"artifact {path}: contains types skops does not trust by default: "
            f"{', '.join(untrusted)}; review them and list them under skops_trusted: in the config"
        )
    return sio.load(path, trusted=sorted(allowed))


def _is_sklearn(obj: Any) -> bool:
    return type(obj).__module__.startswith("sklearn.")


def _ensure_on_path(base_dir: Path) -> None:
    entry = str(base_dir)
    if entry not in sys.path:
        sys.path.insert(0, entry)

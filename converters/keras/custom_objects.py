"""Resolve `--custom-objects MODULE[:ATTR]` into the name -> object map Keras loaders take."""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Iterable
from typing import Any

from converters.errors import UsageError


def _import(module_name: str) -> Any:
    # Like `python -m`, look in the current folder first: users point at their own module.
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(
            f"--custom-objects {module_name}: cannot import it ({exc}); pass an importable "
            "module path such as mypkg.layers (run from the folder that holds it or set PYTHONPATH)"
        ) from exc


def _public_members(module: Any) -> dict[str, Any]:
    """Classes and functions defined in the module itself (not the ones it imports)."""
    return {
        name: obj
        for name, obj in vars(module).items()
        if not name.startswith("_")
        and (inspect.isclass(obj) or inspect.isfunction(obj))
        and getattr(obj, "__module__", None) == module.__name__
    }


def resolve_one(spec: str) -> dict[str, Any]:
    """MODULE: every class/function it defines; MODULE:ATTR: that dict, class or function."""
    module_name, _, attr = spec.partition(":")
    if not module_name:
        raise UsageError(f"--custom-objects {spec!r}: use MODULE or MODULE:ATTR")
    module = _import(module_name)
    if not attr:
        members = _public_members(module)
        if not members:
            raise UsageError(f"--custom-objects {spec}: module defines no classes or functions")
        return members
    if not hasattr(module, attr):
        raise UsageError(f"--custom-objects {spec}: module {module_name} has no attribute {attr!r}")
    value = getattr(module, attr)
    if isinstance(value, dict):
        return dict(value)
    if inspect.isclass(value) or callable(value):
        return {getattr(value, "__name__", attr): value}
    raise UsageError(
        f"--custom-objects {spec}: {attr} is a {type(value).__name__}; "
        "point at a dict of name -> class, a class or a function"
    )


def resolve(specs: Iterable[str]) -> dict[str, Any]:
    """Merge every --custom-objects flag, later ones winning."""
    merged: dict[str, Any] = {}
    for spec in specs:
        merged.update(resolve_one(spec))
    return merged

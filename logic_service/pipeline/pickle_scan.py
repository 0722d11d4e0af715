"""What a pickle, joblib or dill file holds, read without running any of its code.

Unpickling runs whatever constructors the file names, so before a service (or the compile
command) unpickles an artifact it reads the stream with an unpickler whose `find_class` hands
back an inert stand-in for every class and function the file references: the stand-in records
its arguments and state and does nothing else. Only numpy's array reconstruction and joblib's
array wrapper are the real ones, so arrays are read as data (object arrays are nested pickles,
read through the same `find_class`). From that we learn, per file: which scikit-learn
version pickled it (every estimator's `_sklearn_version` state), every global it references
(classes from `__main__`, third-party modules, dill's, or something that can run commands),
and what the top object is. A `.skops` file is a zip of JSON: its states are read the same way
without loading it. Compressed joblib files are read through joblib's own decompressors.
"""

from __future__ import annotations

import json
import pickle
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib.numpy_pickle as joblib_pickle

# Real (data-only) reconstructors: numpy arrays, scalars and dtypes, joblib's array wrappers.
_REAL = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("joblib.numpy_pickle", "NumpyArrayWrapper"),
}
# Globals through which a pickle can reach the operating system or run arbitrary code.
_DANGEROUS_MODULES = (
    "os",
    "posix",
    "nt",
    "subprocess",
    "socket",
    "shutil",
    "pty",
    "runpy",
    "ctypes",
    "webbrowser",
    "importlib",
    "code",
    "sys",
    "multiprocessing",
)
_DANGEROUS_BUILTINS = {"eval", "exec", "compile", "open", "__import__", "breakpoint", "input"}
_SKOPS_SCHEMA = "schema.json"


class PickleScanError(Exception):
    """The file cannot be read as a pickle at all (truncated, corrupt, not a pickle)."""


@dataclass
class PickleScan:
    """What one artifact file holds, learnt without running it."""

    path: Path
    format: str  # pickle | joblib | dill | skops, with "+zlib" etc. for compressed joblib files
    top: str  # module.qualname of the top object (builtins.dict for a dict of objects)
    globals: frozenset[str] = frozenset()
    # scikit-learn version -> the estimator classes that say they were pickled by it
    sklearn_versions: dict[str, set[str]] = field(default_factory=dict)

    @property
    def sklearn_version(self) -> str | None:
        """The version that pickled the file's estimators (the newest when they disagree)."""
        if not self.sklearn_versions:
            return None
        return max(self.sklearn_versions, key=version_key)

    @property
    def needs_dill(self) -> bool:
        return any(name.startswith("dill.") for name in self.globals)

    @property
    def main_classes(self) -> list[str]:
        """Classes and functions pickled from a script's or notebook's `__main__`."""
        return sorted(
            name.partition(".")[2] for name in self.globals if _module(name) == "__main__"
        )

    @property
    def dangerous(self) -> list[str]:
        """Globals that can reach the operating system or run code when unpickled."""
        found = []
        for name in self.globals:
            module, attr = _module(name), name.rpartition(".")[2]
            root = module.split(".")[0]
            if root in _DANGEROUS_MODULES or (module == "builtins" and attr in _DANGEROUS_BUILTINS):
                found.append(name)
        return sorted(found)

    @property
    def modules(self) -> list[str]:
        """Top-level packages the file needs importable (besides the standard library)."""
        roots = {_module(name).split(".")[0] for name in self.globals}
        return sorted(roots - {"builtins", "copyreg", "collections", "_codecs", "__main__"})

    def describe(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "top": self.top,
            "sklearn_version": self.sklearn_version,
            "modules": self.modules,
        }


def version_key(version: str) -> tuple[int, ...]:
    """'1.3.2' -> (1, 3, 2); pre-release tails ('1.4.1.post1', '1.6.dev0') are cut off."""
    parts = []
    for piece in version.split("."):
        digits = ""
        for char in piece:
            if not char.isdigit():
                break
            digits += char
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def scan_file(path: Path) -> PickleScan:
    """Read `path` (pickle, joblib incl. compressed, dill, or .skops) without executing it."""
    if path.suffix == ".skops":
        return _scan_skops(path)
    recorder = _Recorder()
    try:
        with path.open("rb") as handle:
            compressor = _compressor(handle)
            with joblib_pickle._validate_fileobject_and_memmap(handle, str(path), None) as (
                stream,
                _,
            ):
                if isinstance(stream, str):  # joblib < 0.10: arrays in companion .npy files
                    raise PickleScanError("written by joblib < 0.10 (arrays in separate files)")
                top = _ScanUnpickler(str(path), stream, recorder).load()
    except PickleScanError as error:
        raise PickleScanError(f"{path}: not a readable pickle: {error}") from None
    except KeyError:  # pickle's dispatch table has no such opcode
        raise PickleScanError(f"{path}: not a pickle stream (a byte is no pickle opcode)") from None
    except Exception as error:  # a damaged stream raises anything the opcodes lead to
        detail = str(error).splitlines()[0] if str(error) else ""
        raise PickleScanError(
            f"{path}: not a readable pickle (truncated or corrupt? "
            f"{type(error).__name__}: {detail})"[:300]
        ) from None
    names = frozenset(recorder.globals)
    kind = "pickle"
    if "joblib.numpy_pickle.NumpyArrayWrapper" in names or compressor:
        kind = "joblib"  # joblib after `import dill` pickles some types dill's way: needs_dill
    elif any(name.startswith("dill.") for name in names):
        kind = "dill"
    if compressor:
        kind += f"+{compressor}"
    return PickleScan(path, kind, _describe_top(top), names, recorder.versions)


class _Recorder:
    """What the stand-ins saw while the stream was read."""

    def __init__(self) -> None:
        self.globals: set[str] = set()
        self.versions: dict[str, set[str]] = {}
        self._stubs: dict[tuple[str, str], type[_Stub]] = {}

    def stub(self, module: str, name: str) -> type[_Stub]:
        key = (module, name)
        if key not in self._stubs:
            self._stubs[key] = _stub_class(module, name, self)
        return self._stubs[key]

    def state(self, owner: str, state: Any) -> None:
        for version in _versions_in(state):
            self.versions.setdefault(version, set()).add(owner.rpartition(".")[2])


class _Stub:
    """An inert stand-in for a class or function a pickle names: calling it, building it,
    setting its state or items only records; no code of the file's classes runs."""

    stub_of = ""
    recorder: _Recorder

    def __new__(cls, *args: Any, **kwargs: Any) -> _Stub:
        instance = object.__new__(cls)
        instance.__dict__["_args"] = args
        return instance

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        return None

    def __call__(self, *args: Any, **kwargs: Any) -> _Stub:
        """What a stand-in returns (dill's `_load_type`, a factory) may itself be called."""
        module, _, name = self.stub_of.rpartition(".")
        return self.recorder.stub(module, f"{name}()")(*args)

    def __setstate__(self, state: Any) -> None:
        self.__dict__["_state"] = state
        self.recorder.state(self.stub_of, state)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.__dict__.setdefault("_items", {})[key] = value

    def append(self, value: Any) -> None:
        self.__dict__.setdefault("_list", []).append(value)

    def extend(self, values: Any) -> None:
        self.__dict__.setdefault("_list", []).extend(values)


def _stub_class(module: str, name: str, recorder: _Recorder) -> type[_Stub]:
    label = name if name.isidentifier() else "stub"
    return type(label, (_Stub,), {"stub_of": f"{module}.{name}", "recorder": recorder})


class _ScanUnpickler(joblib_pickle.NumpyUnpickler):
    """joblib's unpickler (plain pickles are a subset of what it reads) with inert classes."""

    def __init__(self, filename: str, stream: Any, recorder: _Recorder) -> None:
        super().__init__(filename, stream, ensure_native_byte_order=True)
        self._recorder = recorder

    def find_class(self, module: str, name: str) -> Any:
        self._recorder.globals.add(f"{module}.{name}")
        if (module, name) in _REAL:
            try:
                return super().find_class(module, name)
            except (ImportError, AttributeError):
                pass  # numpy 2's `numpy._core` under numpy 1: a stand-in will do for a scan
        return self._recorder.stub(module, name)

    def persistent_load(self, pid: Any) -> Any:
        raise PickleScanError("it uses persistent ids (not a scikit-learn pickle)")

    def load_build(self) -> None:
        """joblib writes arrays' data right after their wrapper: numbers are read as data, an
        object array (a nested pickle) through this same inert unpickler."""
        pickle._Unpickler.load_build(self)  # type: ignore[attr-defined]
        if not isinstance(self.stack[-1], joblib_pickle.NumpyArrayWrapper):
            return
        wrapper = self.stack.pop()
        if wrapper.dtype.hasobject:
            array = _ScanUnpickler(self.filename, self.file_handle, self._recorder).load()
        else:
            array = wrapper.read(self, self.ensure_native_byte_order)
        self.stack.append(array)

    dispatch = joblib_pickle.NumpyUnpickler.dispatch.copy()
    dispatch[pickle.BUILD[0]] = load_build


def _versions_in(state: Any) -> Iterator[str]:
    if isinstance(state, tuple) and len(state) == 2:  # (state, slotstate)
        for part in state:
            yield from _versions_in(part)
    elif isinstance(state, dict):
        version = state.get("_sklearn_version")
        if isinstance(version, str):
            yield version


def _describe_top(top: Any) -> str:
    if isinstance(top, _Stub):
        return top.stub_of
    return f"{type(top).__module__}.{type(top).__qualname__}"


def _module(name: str) -> str:
    return name.rpartition(".")[0]


def _compressor(handle: Any) -> str | None:
    """joblib's compression of the file (zlib, gzip, bz2, lzma, xz, lz4), or None."""
    from joblib.numpy_pickle_utils import _detect_compressor

    found = _detect_compressor(handle)
    return None if found in ("not-compressed", "compat") else found


def _scan_skops(path: Path) -> PickleScan:
    """A .skops file's schema: every object's module/class and state, as JSON."""
    try:
        with zipfile.ZipFile(path) as archive:
            schema = json.loads(archive.read(_SKOPS_SCHEMA))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as error:
        raise PickleScanError(f"{path}: not a readable .skops file ({error})") from None
    names: set[str] = set()
    versions: dict[str, set[str]] = {}
    for node in _json_nodes(schema):
        module, cls = node.get("__module__"), node.get("__class__")
        if isinstance(module, str) and isinstance(cls, str):
            names.add(f"{module}.{cls}")
            content = node.get("content")
            if isinstance(content, dict):
                state = content.get("content", content)
                version = (
                    _skops_string(state.get("_sklearn_version"))
                    if isinstance(state, dict)
                    else None
                )
                if version:
                    versions.setdefault(version, set()).add(cls)
    top = f"{schema.get('__module__', '')}.{schema.get('__class__', '')}"
    return PickleScan(path, "skops", top, frozenset(names), versions)


def _skops_string(node: Any) -> str | None:
    """A str node's value (skops writes it JSON-encoded when `is_json`)."""
    if not (isinstance(node, dict) and node.get("__class__") == "str"):
        return None
    content = node.get("content")
    if node.get("is_json") and isinstance(content, str):
        try:
            content = json.loads(content)
        except ValueError:
            return None
    return content if isinstance(content, str) else None


def _json_nodes(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _json_nodes(value)
    elif isinstance(node, list):
        for value in node:
            yield from _json_nodes(value)

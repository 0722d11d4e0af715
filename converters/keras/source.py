"""Read what a Keras file says about itself before any loader deserialises it.

The model config is read straight from the file (h5 attributes, the `.keras` zip, or the
architecture JSON) so the converter can refuse serialized Python code and name missing
custom classes itself: tf-keras ignores Keras 3's safe mode on `.h5` files.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from converters.errors import ConversionError, UsageError

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
# Container classes the loaders build themselves; never custom.
_BUILTIN_CONTAINERS = {"Functional", "Model", "Sequential", "InputLayer"}


@dataclass(frozen=True)
class KerasSource:
    """One model to convert: where its parts are and what the file records about them."""

    path: Path
    kind: str  # "h5" (full model), "keras" (Keras 3 zip), "json+weights", "keras3-weights"
    model_config: dict[str, Any]
    keras_version: str | None = None
    backend: str | None = None
    architecture: Path | None = None
    has_training_config: bool = False

    def describe(self) -> str:
        written = f"Keras {self.keras_version}" if self.keras_version else "unknown Keras"
        backend = f", backend {self.backend}" if self.backend else ""
        forms = {"h5": "full-model HDF5", "keras": ".keras archive"}
        form = forms.get(self.kind) or f"architecture JSON {self.architecture} + HDF5 weights"
        return f"{form} written by {written}{backend}"


def _text(value: Any) -> str:
    """h5 attributes are bytes when old Keras wrote them, str when h5py>=3 wrote them."""
    if hasattr(value, "tobytes") and not isinstance(value, bytes | str):
        value = value.tobytes()
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _require_file(path: Path, what: str) -> None:
    if not path.exists():
        raise UsageError(f"{what} {path}: no such file; check the path")
    if not path.is_file():
        raise UsageError(f"{what} {path}: is a folder, not a file; pass the model file itself")


def _is_hdf5(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE


def _open_h5(path: Path) -> Any:
    import h5py

    try:
        return h5py.File(path, "r")
    except OSError as exc:
        reason = str(exc).split("(")[0].strip() or "unreadable"
        raise ConversionError(
            f"{path}: HDF5 file cannot be read ({reason}); it is truncated or corrupt, "
            "copy it again or re-save it from Keras"
        ) from exc


def _parse_config(text: str, where: str) -> dict[str, Any]:
    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConversionError(f"{where}: model config is not valid JSON ({exc})") from exc
    if not isinstance(config, dict) or "class_name" not in config:
        raise ConversionError(f"{where}: model config has no class_name; not a Keras model")
    return config


def _read_h5(path: Path) -> KerasSource:
    with _open_h5(path) as handle:
        attrs = handle.attrs
        if "model_config" not in attrs:
            hint = (
                "pass its architecture with --architecture model.json"
                if "layer_names" in attrs or "model_weights" in handle or "layers" in handle
                else "it is not a Keras model file"
            )
            raise UsageError(f"{path}: HDF5 file holds no model config (weights only?); {hint}")
        weights = handle["model_weights"].attrs if "model_weights" in handle else attrs
        version = attrs.get("keras_version", weights.get("keras_version"))
        backend = attrs.get("backend", weights.get("backend"))
        return KerasSource(
            path=path,
            kind="h5",
            model_config=_parse_config(_text(attrs["model_config"]), str(path)),
            keras_version=_text(version) if version is not None else None,
            backend=_text(backend) if backend is not None else None,
            has_training_config="training_config" in attrs,
        )


def _read_keras_zip(path: Path) -> KerasSource:
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if "config.json" not in names:
                raise UsageError(f"{path}: zip file has no config.json; not a .keras model")
            config = _parse_config(archive.read("config.json").decode("utf-8"), str(path))
            meta = {}
            if "metadata.json" in names:
                meta = json.loads(archive.read("metadata.json").decode("utf-8"))
    except zipfile.BadZipFile as exc:
        raise ConversionError(f"{path}: .keras archive is truncated or corrupt ({exc})") from exc
    return KerasSource(
        path=path,
        kind="keras",
        model_config=config,
        keras_version=meta.get("keras_version"),
        has_training_config="compile_config" in config,
    )


def _read_weights_h5(path: Path, architecture: Path) -> KerasSource:
    _require_file(architecture, "--architecture")
    try:
        text = architecture.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--architecture {architecture}: cannot read it ({exc})") from exc
    config = _parse_config(text, f"--architecture {architecture}")
    if not _is_hdf5(path):
        raise UsageError(f"{path}: not an HDF5 weights file; pass the .h5 written by save_weights")
    with _open_h5(path) as handle:
        group = handle.get("model_weights", handle)
        # Keras 2 (and Keras 3's legacy writer) list layer_names; Keras 3's own
        # `.weights.h5` format stores a `layers` group instead.
        keras3_layout = "layer_names" not in group.attrs and "layers" in handle
        if "layer_names" not in group.attrs and not keras3_layout:
            raise UsageError(f"{path}: HDF5 file holds no Keras weights (no layer_names)")
        version = group.attrs.get("keras_version")
        backend = group.attrs.get("backend")
    if version is None and keras3_layout:
        version = "3 (.weights.h5 layout)"
    return KerasSource(
        path=path,
        kind="keras3-weights" if keras3_layout else "json+weights",
        model_config=config,
        keras_version=_text(version) if version is not None else config.get("keras_version"),
        backend=_text(backend) if backend is not None else config.get("backend"),
        architecture=architecture,
    )


def read_source(path: Path, architecture: Path | None = None) -> KerasSource:
    """Identify the file by its content (not its suffix) and read its model config."""
    path = Path(path)
    _require_file(path, "model file")
    if architecture is not None:
        return _read_weights_h5(path, Path(architecture))
    if _is_hdf5(path):
        return _read_h5(path)
    if zipfile.is_zipfile(path):
        return _read_keras_zip(path)
    if path.suffix.lower() == ".json":
        raise UsageError(
            f"{path}: is an architecture JSON; pass the weights .h5 as SRC and this file "
            "as --architecture"
        )
    raise UsageError(
        f"{path}: not a Keras model (neither HDF5 nor a .keras archive); pass a .h5, "
        ".hdf5 or .keras file"
    )


def _layer_name(node: dict[str, Any]) -> str:
    config = node.get("config")
    name = config.get("name") if isinstance(config, dict) else None
    return str(name or node.get("name") or node.get("class_name"))


def _walk_layers(node: Any, found: list[dict[str, Any]]) -> None:
    """Every layer config, nested models and wrapped layers included."""
    if isinstance(node, dict):
        if isinstance(node.get("class_name"), str) and isinstance(node.get("config"), dict):
            found.append(node)
        for value in node.values():
            _walk_layers(value, found)
    elif isinstance(node, list):
        for value in node:
            _walk_layers(value, found)


def _holds_code(node: Any) -> bool:
    """Keras 2 marshals lambdas as function_type 'lambda'; Keras 3 as class '__lambda__'."""
    if isinstance(node, dict):
        if node.get("function_type") == "lambda" or node.get("class_name") == "__lambda__":
            return True
        return any(_holds_code(v) for v in node.values())
    if isinstance(node, list):
        return any(_holds_code(v) for v in node)
    return False


def code_layers(config: dict[str, Any]) -> list[str]:
    """Names of layers whose config carries Python code that loading would execute."""
    layers: list[dict[str, Any]] = []
    _walk_layers(config, layers)
    names = []
    for layer in layers:
        if layer["class_name"] == "Lambda" or (
            layer["class_name"] not in _BUILTIN_CONTAINERS and _own_fields_hold_code(layer)
        ):
            label = f"{_layer_name(layer)} ({layer['class_name']})"
            if label not in names:
                names.append(label)
    return names


def _own_fields_hold_code(layer: dict[str, Any]) -> bool:
    config = layer["config"]
    return any(_holds_code(v) for k, v in config.items() if k != "layers")

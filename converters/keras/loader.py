"""Deserialise a Keras model for inference: Keras 3 first, tf-keras when Keras 3 cannot.

Nothing is compiled (old optimizers and losses need not be rebuildable), and code stored
in the file is refused before either loader sees it unless the user passed --unsafe.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from converters.errors import ConversionError
from converters.keras.source import KerasSource, code_layers

log = logging.getLogger(__name__)

KERAS3 = "keras 3"
TF_KERAS = "tf-keras"
_MISSING = re.compile(r"(?:Could not locate (?:class|function)|Unknown [a-z ]+?:) '([^']+)'")
_BUILTIN = {"Functional", "Model", "Sequential", "InputLayer"}  # never a user's missing class
_SUFFIX = {
    "h5": (".h5", ".hdf5"),
    "keras": (".keras",),
    "json+weights": (".h5", ".hdf5"),
    "keras3-weights": (".weights.h5",),
}


@dataclass
class LoadedModel:
    """A model ready to trace, and which library built it."""

    model: Any
    loader: str  # KERAS3 or TF_KERAS
    loader_version: str
    source: KerasSource
    fallback_reason: str | None = None

    def describe(self) -> str:
        text = f"loaded with {self.loader} {self.loader_version} (inference only, not compiled)"
        if self.fallback_reason:
            text += f"; Keras 3 could not read it: {self.fallback_reason}"
        return text


def refuse_code(source: KerasSource) -> None:
    """Lambda layers and marshalled functions run arbitrary code on load: opt-in only."""
    layers = code_layers(source.model_config)
    if layers:
        raise ConversionError(
            f"{source.path}: layer(s) {', '.join(layers)} hold Python code that loading "
            "would execute; review the file and pass --unsafe if you trust it"
        )


@contextmanager
def _with_suffix(path: Path, suffixes: tuple[str, ...]) -> Iterator[Path]:
    """Keras picks its reader by file name: give suffix-less files a name it accepts."""
    name = path.name.lower()
    if name.endswith(suffixes) and (
        suffixes[0] == ".weights.h5" or not name.endswith(".weights.h5")
    ):
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="convert-h5-") as folder:
        link = Path(folder) / f"model{suffixes[0]}"
        link.symlink_to(path.resolve())
        yield link


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    # Keras 3 buries the cause after a dump of the whole layer config.
    if "Exception encountered:" in text:
        head = text.split(" using config=")[0]
        text = f"{head}: {text.split('Exception encountered:')[-1].strip()}"
    return f"{type(exc).__name__}: {text[:240]}{'...' if len(text) > 240 else ''}"


def _keras3_from_config(source: KerasSource, custom_objects: dict[str, Any], unsafe: bool) -> Any:
    """Keras 3 JSON names its modules; Keras 2 JSON goes through Keras 3's legacy reader,
    the same one it uses for Keras 2 `.h5` files."""
    import keras
    from keras.src.legacy.saving import saving_utils
    from keras.src.saving.serialization_lib import SafeModeScope

    with SafeModeScope(not unsafe):
        if "module" in source.model_config:
            return keras.models.model_from_json(
                json.dumps(source.model_config), custom_objects=custom_objects
            )
        return saving_utils.model_from_config(source.model_config, custom_objects=custom_objects)


def _load_keras3(source: KerasSource, custom_objects: dict[str, Any], unsafe: bool) -> Any:
    import keras

    suffixes = _SUFFIX[source.kind]
    if source.architecture is not None:
        model = _keras3_from_config(source, custom_objects, unsafe)
        with _with_suffix(source.path, suffixes) as path:
            model.load_weights(str(path))
        return model
    with _with_suffix(source.path, suffixes) as path:
        return keras.models.load_model(
            str(path), custom_objects=custom_objects, compile=False, safe_mode=not unsafe
        )


def _load_tf_keras(source: KerasSource, custom_objects: dict[str, Any], unsafe: bool) -> Any:
    """tf-keras has no safe mode for h5 files: refuse_code() has already guarded."""
    import tf_keras

    del unsafe
    suffixes = _SUFFIX[source.kind]
    if source.kind == "keras3-weights":
        raise ConversionError("tf-keras cannot read Keras 3 .weights.h5 files")
    if source.architecture is not None:
        model = tf_keras.models.model_from_json(
            source.architecture.read_text(encoding="utf-8"), custom_objects=custom_objects
        )
        with _with_suffix(source.path, suffixes) as path:
            model.load_weights(str(path))
        return model
    with _with_suffix(source.path, suffixes) as path:
        return tf_keras.models.load_model(str(path), custom_objects=custom_objects, compile=False)


def _version(module_name: str) -> str:
    import importlib

    return str(getattr(importlib.import_module(module_name), "__version__", "?"))


def load_model(
    source: KerasSource, custom_objects: dict[str, Any] | None = None, *, unsafe: bool = False
) -> LoadedModel:
    """Load with Keras 3, fall back to tf-keras, and explain both failures if neither works."""
    if not unsafe:
        refuse_code(source)
    custom_objects = dict(custom_objects or {})
    attempts: list[tuple[str, str, Callable[..., Any]]] = [
        (KERAS3, "keras", _load_keras3),
        (TF_KERAS, "tf_keras", _load_tf_keras),
    ]
    errors: dict[str, BaseException] = {}
    for loader, module_name, load in attempts:
        try:
            model = load(source, custom_objects, unsafe)
        except Exception as exc:  # each loader has its own exception zoo; judged below
            log.info("%s could not load %s: %s", loader, source.path, exc)
            errors[loader] = exc
            continue
        reason = _one_line(errors[KERAS3]) if KERAS3 in errors else None
        return LoadedModel(model, loader, _version(module_name), source, reason)

    missing = []
    for exc in errors.values():
        for name in _MISSING.findall(str(exc)):
            short = name.split(">")[-1]
            if short not in missing and short not in custom_objects and short not in _BUILTIN:
                missing.append(short)
    if missing:
        raise ConversionError(
            f"{source.path}: the model needs custom object(s) {', '.join(missing)} that "
            "Keras does not know; pass --custom-objects MODULE[:ATTR] naming the module "
            "that defines them"
        )
    details = "; ".join(f"{loader}: {_one_line(exc)}" for loader, exc in errors.items())
    raise ConversionError(f"{source.path}: neither Keras 3 nor tf-keras can load it ({details})")

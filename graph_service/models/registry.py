"""Which versions of which models are served, brought in line with models.config and disk.

`sync` applies a version policy to the version folders on disk, loads what is new, and only
then unloads what is no longer wanted, so a model never goes without a working version
because a newer one failed. Requests take a reference to a `Servable` and keep it for the
whole call: unloading drops it from the table, not from under a running request.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from converters.models_config import ModelEntry, VersionPolicy, list_versions, resolve_base_path
from graph_service.errors import InvalidArgumentError, NotFoundError
from graph_service.models.servable import LoadError, Servable, load_servable

logger = logging.getLogger(__name__)

AVAILABLE = "AVAILABLE"
END = "END"

Loader = Callable[[str, int, Path], Servable]


@dataclass
class VersionState:
    """A version's state as TF Serving reports it, plus what we need to retry or serve it."""

    version: int
    state: str
    error_code: str = "OK"
    error_message: str = ""
    servable: Servable | None = None
    fingerprint: tuple = ()

    def as_status(self) -> dict:
        return {
            "version": str(self.version),
            "state": self.state,
            "status": {"error_code": self.error_code, "error_message": self.error_message},
        }


@dataclass
class ModelState:
    """One model: its versions (every one ever tracked) and its labels."""

    name: str
    base_dir: Path
    versions: dict[int, VersionState] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)
    # Labels the config points at versions that are not available: {label: wanted version}.
    waiting_labels: dict[str, int] = field(default_factory=dict)
    # The base folder held no version folders at the last poll (warned once, not every poll).
    empty: bool = False

    def available(self) -> list[int]:
        return sorted(v for v, s in self.versions.items() if s.state == AVAILABLE)


def aspired_versions(policy: VersionPolicy, on_disk: list[int]) -> list[int]:
    """The versions a policy asks for, among those on disk (TF Serving's rules)."""
    if policy.kind == "all":
        return list(on_disk)
    if policy.kind == "specific":
        return [v for v in on_disk if v in set(policy.versions)]
    return on_disk[-max(policy.num_versions, 1) :]


def _fingerprint(version_dir: Path) -> tuple:
    """Changes when a (half-copied) version folder is completed, so a failed load is retried."""
    parts = []
    for rel in ("saved_model.pb", "variables/variables.index"):
        try:
            stat = (version_dir / rel).stat()
            parts.append((rel, stat.st_size, stat.st_mtime_ns))
        except OSError:
            parts.append((rel, None))
    data = sorted(
        (p.name, p.stat().st_size)
        for p in (version_dir / "variables").glob("variables.data-*")
        if p.is_file()
    )
    return (*parts, tuple(data))


class ModelRegistry:
    """Thread-safe table of models; `sync` is called by one thread (startup, then the watcher)."""

    def __init__(
        self,
        config_dir: Path,
        *,
        loader: Loader = load_servable,
        allow_labels_for_unavailable: bool = False,
    ) -> None:
        self._config_dir = Path(config_dir)
        self._loader = loader
        self._allow_unavailable_labels = allow_labels_for_unavailable
        self._lock = threading.Lock()
        self._models: dict[str, ModelState] = {}

    # ------------------------------------------------------------------ requests

    def names(self) -> list[str]:
        with self._lock:
            return list(self._models)

    def _model(self, name: str) -> ModelState | None:
        with self._lock:
            return self._models.get(name)

    def servable(self, name: str, version: int | None = None, label: str | None = None) -> Servable:
        """The servable a request addresses: latest available, a version, or a label."""
        model = self._model(name)
        if label is not None:
            if model is None or label not in model.labels:
                raise InvalidArgumentError(f"Unrecognized servable version label: {label}")
            version = model.labels[label]
        if version is None:
            if model is not None and model.available():
                state = model.versions[model.available()[-1]]
                if state.servable is not None:
                    return state.servable
            raise NotFoundError(f"Servable not found for request: Latest({name})")
        state = model.versions.get(version) if model is not None else None
        if state is None or state.state != AVAILABLE or state.servable is None:
            raise NotFoundError(f"Servable not found for request: Specific({name}, {version})")
        return state.servable

    def status(self, name: str, version: int | None = None, label: str | None = None) -> dict:
        """TF Serving's GetModelStatus body: every tracked version, newest first."""
        model = self._model(name)
        if model is None or not model.versions:
            raise NotFoundError(f"Could not find any versions of model {name}")
        if label is not None:
            if label not in model.labels:
                raise InvalidArgumentError(f"Unrecognized servable version label: {label}")
            version = model.labels[label]
        if version is not None:
            state = model.versions.get(version)
            if state is None:
                raise NotFoundError(f"Could not find version {version} of model {name}")
            return {"model_version_status": [state.as_status()]}
        ordered = sorted(model.versions.values(), key=lambda s: s.version, reverse=True)
        return {"model_version_status": [s.as_status() for s in ordered]}

    # ------------------------------------------------------------------ reloads

    def sync(self, entries: Iterable[ModelEntry]) -> None:
        """Bring the table in line with config entries and the version folders on disk."""
        entries = list(entries)
        wanted = {e.name for e in entries}
        for entry in entries:
            self._sync_model(entry)
        with self._lock:
            for name in [n for n in self._models if n not in wanted]:
                logger.info("model %s left models.config: unloading it", name)
                del self._models[name]

    def _sync_model(self, entry: ModelEntry) -> None:
        base_dir = resolve_base_path(entry.base_path, self._config_dir)
        with self._lock:
            current = self._models.get(entry.name)
        model = ModelState(entry.name, base_dir)
        if current is not None and current.base_dir == base_dir:
            model.versions = dict(current.versions)
            model.labels = dict(current.labels)
            model.waiting_labels = dict(current.waiting_labels)
            model.empty = current.empty
        on_disk = list_versions(base_dir)
        if not on_disk and not model.empty:
            logger.warning("model %s: no version folders under %s", entry.name, base_dir)
        model.empty = not on_disk
        aspired = aspired_versions(entry.policy, on_disk)
        for version in aspired:
            self._load_if_needed(model, version, base_dir / _dir_name(base_dir, version))
        # Unload what is no longer aspired, but only once an aspired version serves.
        if any(model.versions[v].state == AVAILABLE for v in aspired if v in model.versions):
            for version, state in list(model.versions.items()):
                if version not in aspired and state.state == AVAILABLE:
                    logger.info("model %s: unloading version %d", entry.name, version)
                    model.versions[version] = VersionState(version, END)
        model.labels = self._labels(entry, model)
        with self._lock:
            self._models[entry.name] = model

    def _load_if_needed(self, model: ModelState, version: int, version_dir: Path) -> None:
        state = model.versions.get(version)
        fingerprint = _fingerprint(version_dir)
        if state is not None and state.state == AVAILABLE:
            return
        if state is not None and state.error_code != "OK" and state.fingerprint == fingerprint:
            return  # failed before and nothing changed on disk since: do not retry
        try:
            servable = self._loader(model.name, version, version_dir)
        except LoadError as exc:
            logger.error("model %s version %d failed to load: %s", model.name, version, exc)
            model.versions[version] = VersionState(
                version, END, exc.code, str(exc), fingerprint=fingerprint
            )
            return
        model.versions[version] = VersionState(
            version, AVAILABLE, servable=servable, fingerprint=fingerprint
        )

    def _labels(self, entry: ModelEntry, model: ModelState) -> dict[str, int]:
        """Labels may only point at available versions, unless explicitly allowed.

        A label held back is reported when that starts and when it ends, not on every poll.
        """
        labels, waiting = {}, {}
        for label, version in entry.labels.items():
            state = model.versions.get(version)
            if self._allow_unavailable_labels or (state is not None and state.state == AVAILABLE):
                labels[label] = version
                continue
            waiting[label] = version
            if label in model.labels:
                labels[label] = model.labels[label]
            if model.waiting_labels.get(label) == version:
                continue
            if label in labels:
                logger.warning(
                    "model %s: label %s cannot move to version %d (not available); keeps %d",
                    entry.name,
                    label,
                    version,
                    labels[label],
                )
            else:
                logger.warning(
                    "model %s: label %s points at version %d, which is not available",
                    entry.name,
                    label,
                    version,
                )
        for label, version in model.waiting_labels.items():
            if waiting.get(label) != version:
                now = f"points at {labels[label]}" if label in labels else "is not set"
                logger.info(
                    "model %s: label %s no longer waits for version %d; it %s",
                    entry.name,
                    label,
                    version,
                    now,
                )
        model.waiting_labels = waiting
        return labels

    def close(self) -> None:
        """Unload every model (at shutdown, once no call runs)."""
        with self._lock:
            models, self._models = list(self._models.values()), {}
        for model in models:
            for state in model.versions.values():
                if state.servable is not None:
                    state.servable.close()

    def load_errors(self, name: str) -> str:
        """Why a model's versions failed to load, one clause per version ('' when none did)."""
        model = self._model(name)
        if model is None:
            return ""
        return "; ".join(
            f"version {s.version}: {s.error_message}"
            for s in sorted(model.versions.values(), key=lambda s: s.version)
            if s.error_code != "OK"
        )

    def unavailable_models(self) -> list[str]:
        """Names of configured models without an available version (empty when all serve)."""
        with self._lock:
            return [n for n, m in self._models.items() if not m.available()]


def _dir_name(base_dir: Path, version: int) -> str:
    """The folder holding `version` ("001" parses as 1, as in TF Serving)."""
    for child in base_dir.iterdir():
        if child.is_dir() and child.name.isdigit() and int(child.name) == version:
            return child.name
    return str(version)

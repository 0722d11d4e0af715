"""Read and write TF Serving's models.config through its own protobuf schema.

The file is text-format `ModelServerConfig`. Entries are kept in their order; writes are
atomic (temp file + rename) so a crash never leaves a half-written config for TF Serving
to poll. Comments are not preserved (text_format drops them).
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2 as pb

from converters.errors import ModelsConfigError, UsageError

CONFIG_FILENAME = "models.config"
# Where the official TF Serving container sees the models folder (deploy/ mounts it there).
CONTAINER_MODEL_ROOT = "/models"
_MODEL_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")


def validate_model_name(name: str) -> str:
    """TF Serving model names are letters, digits, '_', '-' and '.' (and not '.'/'..')."""
    if not name or not _MODEL_NAME.match(name) or name in {".", ".."}:
        raise UsageError(
            f"invalid model name {name!r}: use letters, digits, '_', '-' or '.' (e.g. credit_v2)"
        )
    return name


@dataclass
class VersionPolicy:
    """`latest` N versions (TF Serving's default, N=1), `all`, or `specific` versions."""

    kind: str = "latest"
    num_versions: int = 1
    versions: list[int] = field(default_factory=list)

    def describe(self) -> str:
        if self.kind == "latest":
            return f"latest {self.num_versions}"
        if self.kind == "all":
            return "all"
        return "specific " + ",".join(str(v) for v in self.versions)

    @classmethod
    def parse(cls, text: str) -> VersionPolicy:
        """Parse the CLI form: `latest`, `latest:N`, `all`, `specific:1,2`."""
        kind, _, arg = text.partition(":")
        try:
            if kind == "latest":
                policy = cls("latest", int(arg) if arg else 1)
                if policy.num_versions < 1:
                    raise ValueError
                return policy
            if kind == "all" and not arg:
                return cls("all")
            if kind == "specific" and arg:
                return cls("specific", versions=sorted({int(v) for v in arg.split(",")}))
        except ValueError:
            pass
        raise UsageError(
            f"invalid version policy {text!r}: use latest, latest:N, all or specific:1,2"
        )


@dataclass
class ModelEntry:
    """One `config { ... }` block, in plain Python."""

    name: str
    base_path: str
    model_platform: str = "tensorflow"
    policy: VersionPolicy = field(default_factory=VersionPolicy)
    labels: dict[str, int] = field(default_factory=dict)


def default_base_path(name: str) -> str:
    """The container convention: models mounted at /models, one folder per model."""
    return f"{CONTAINER_MODEL_ROOT}/{name}"


def resolve_base_path(
    base_path: str, config_dir: Path, container_root: str = CONTAINER_MODEL_ROOT
) -> Path:
    """Where a base_path lives on this machine.

    Inside the TF Serving container `/models/credit` exists as written. Outside it, the
    same file is read from the models folder itself, so a base_path under the container
    root that does not exist here is taken relative to the folder holding models.config.
    Relative paths are relative to that folder too.
    """
    path = Path(base_path)
    if not path.is_absolute():
        return (config_dir / path).resolve()
    root = Path(container_root)
    if not path.exists() and (path == root or root in path.parents):
        return (config_dir / path.relative_to(root)).resolve()
    return path


def _entry_from_proto(cfg: pb.ModelConfig) -> ModelEntry:
    which = cfg.model_version_policy.WhichOneof("policy_choice")
    if which == "all":
        policy = VersionPolicy("all")
    elif which == "specific":
        policy = VersionPolicy(
            "specific", versions=list(cfg.model_version_policy.specific.versions)
        )
    elif which == "latest":
        policy = VersionPolicy("latest", cfg.model_version_policy.latest.num_versions or 1)
    else:
        policy = VersionPolicy()
    return ModelEntry(
        name=cfg.name,
        base_path=cfg.base_path,
        model_platform=cfg.model_platform or "tensorflow",
        policy=policy,
        labels=dict(sorted(cfg.version_labels.items(), key=lambda kv: (kv[1], kv[0]))),
    )


def _entry_to_proto(entry: ModelEntry, cfg: pb.ModelConfig) -> None:
    cfg.name = entry.name
    cfg.base_path = entry.base_path
    cfg.model_platform = entry.model_platform
    cfg.ClearField("model_version_policy")
    if entry.policy.kind == "all":
        cfg.model_version_policy.all.SetInParent()
    elif entry.policy.kind == "specific":
        cfg.model_version_policy.specific.versions.extend(entry.policy.versions)
    else:
        cfg.model_version_policy.latest.num_versions = entry.policy.num_versions
    cfg.ClearField("version_labels")
    for label, version in entry.labels.items():
        cfg.version_labels[label] = version


class ModelsConfig:
    """An ordered set of model entries backed by a models.config file."""

    def __init__(self, path: Path, proto: pb.ModelServerConfig | None = None) -> None:
        self.path = Path(path)
        self._proto = proto if proto is not None else pb.ModelServerConfig()

    @classmethod
    def load(cls, path: Path, *, missing_ok: bool = False) -> ModelsConfig:
        """Parse `path`; a missing file is an empty config when `missing_ok`."""
        path = Path(path)
        if not path.exists():
            if missing_ok:
                return cls(path)
            raise ModelsConfigError(
                f"{path}: no such models.config; convert a model first or create it with "
                "'models-config add NAME'"
            )
        return cls(path, parse_text(path.read_text(encoding="utf-8"), source=str(path)))

    @property
    def entries(self) -> list[ModelEntry]:
        return [_entry_from_proto(c) for c in self._proto.model_config_list.config]

    def names(self) -> list[str]:
        return [c.name for c in self._proto.model_config_list.config]

    def get(self, name: str) -> ModelEntry | None:
        for cfg in self._proto.model_config_list.config:
            if cfg.name == name:
                return _entry_from_proto(cfg)
        return None

    def upsert(self, entry: ModelEntry) -> bool:
        """Add `entry`, or replace the entry of that name in place; True when added."""
        validate_model_name(entry.name)
        for cfg in self._proto.model_config_list.config:
            if cfg.name == entry.name:
                _entry_to_proto(entry, cfg)
                return False
        _entry_to_proto(entry, self._proto.model_config_list.config.add())
        return True

    def remove(self, name: str) -> None:
        configs = self._proto.model_config_list.config
        for index, cfg in enumerate(configs):
            if cfg.name == name:
                del configs[index]
                return
        raise ModelsConfigError(
            f"{self.path}: no model named {name!r} (known: {', '.join(self.names()) or 'none'})"
        )

    def to_text(self) -> str:
        return text_format.MessageToString(self._proto)

    def save(self) -> None:
        """Write atomically: readers (TF Serving polls this file) see old or new, never half."""
        write_atomic(self.path, self.to_text())


def parse_text(text: str, source: str = "models.config") -> pb.ModelServerConfig:
    proto = pb.ModelServerConfig()
    try:
        text_format.Parse(text, proto)
    except text_format.ParseError as exc:
        raise ModelsConfigError(
            f"{source}: not a valid ModelServerConfig ({exc}); fix the file or restore it"
        ) from exc
    if proto.WhichOneof("config") == "custom_model_config":
        raise ModelsConfigError(
            f"{source}: custom_model_config is not supported; use model_config_list"
        )
    return proto


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a temp file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def list_versions(model_dir: Path) -> list[int]:
    """Integer version folders under a model's base path, as TF Serving sees them."""
    if not model_dir.is_dir():
        return []
    return sorted(
        int(child.name) for child in model_dir.iterdir() if child.is_dir() and child.name.isdigit()
    )


_REMOTE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def check(config: ModelsConfig, container_root: str = CONTAINER_MODEL_ROOT) -> list[str]:
    """Problems TF Serving would hit with this config: one readable line each."""
    problems: list[str] = []
    seen: set[str] = set()
    config_dir = config.path.parent
    for entry in config.entries:
        where = f"model {entry.name!r}"
        if entry.name in seen:
            problems.append(f"{where}: listed twice; remove one entry")
        seen.add(entry.name)
        if not _MODEL_NAME.match(entry.name or ""):
            problems.append(f"{where}: invalid name; use letters, digits, '_', '-' or '.'")
        if not entry.base_path:
            problems.append(f"{where}: base_path is empty")
            continue
        if entry.model_platform != "tensorflow":
            problems.append(f"{where}: model_platform {entry.model_platform!r} is not 'tensorflow'")
        if _REMOTE.match(entry.base_path):
            # gs:// and other file systems TF Serving reads itself: nothing to list from here.
            continue
        local = resolve_base_path(entry.base_path, config_dir, container_root)
        versions = list_versions(local)
        if not versions:
            problems.append(f"{where}: no version folders under {local}; convert a model into it")
        for version in versions:
            if (
                not (local / str(version) / "saved_model.pb").exists()
                and not (local / f"{version}").joinpath("saved_model.pbtxt").exists()
            ):
                problems.append(f"{where}: version {version} has no saved_model.pb")
        if entry.policy.kind == "specific":
            for version in entry.policy.versions:
                if version not in versions:
                    problems.append(f"{where}: policy names version {version}, not on disk")
        for label, version in entry.labels.items():
            if version not in versions:
                problems.append(
                    f"{where}: label {label!r} points at version {version}, not on disk"
                )
    return problems

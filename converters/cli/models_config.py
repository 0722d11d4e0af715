"""`models-config`: list, add, label, remove and check entries of a TF Serving models.config."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from converters.cli.common import add_debug_flag, new_parser, run_cli
from converters.errors import ModelsConfigError, UsageError
from converters.models_config import (
    CONTAINER_MODEL_ROOT,
    ModelEntry,
    ModelsConfig,
    VersionPolicy,
    check,
    default_base_path,
    list_versions,
    resolve_base_path,
    validate_model_name,
)

EPILOG = """\
examples:
  models-config list
  models-config add credit --policy latest:2
  models-config label credit stable=1 canary=2
  models-config label credit --delete canary
  models-config remove churn
  models-config check            # exit 1 and one line per problem if TF Serving would choke

The file is read and written with TF Serving's ModelServerConfig protobuf schema; other
entries and their order are kept, comments are not. base_path defaults to /models/NAME (the
TF Serving container's mount); outside the container it resolves to the folder holding
models.config, so the same file serves both.
"""


def _parse_label(text: str) -> tuple[str, int]:
    key, sep, value = text.partition("=")
    if not sep or not key or not value.isdigit():
        raise UsageError(f"invalid label {text!r}: use LABEL=VERSION, e.g. stable=1")
    return key, int(value)


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("models-config", __doc__, EPILOG)
    parser.add_argument(
        "--file",
        type=Path,
        default=Path("models/models.config"),
        help="the models.config to read/write (default: models/models.config)",
    )
    parser.add_argument(
        "--container-root",
        default=CONTAINER_MODEL_ROOT,
        help="where the container mounts the models folder (default: /models)",
    )
    add_debug_flag(parser)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    commands.add_parser("list", help="one line per model: versions on disk, policy, labels")

    add = commands.add_parser("add", help="add a model, or update its policy/labels/base_path")
    add.add_argument("name")
    add.add_argument("--base-path", help="default: /models/NAME (kept as is for an existing entry)")
    add.add_argument(
        "--policy", type=VersionPolicy.parse, help="latest, latest:N, all, specific:1,2"
    )
    add.add_argument("--label", action="append", default=[], metavar="LABEL=VERSION")

    label = commands.add_parser("label", help="point version labels (stable, canary) at versions")
    label.add_argument("name")
    label.add_argument("assignments", nargs="*", metavar="LABEL=VERSION")
    label.add_argument("--delete", action="append", default=[], metavar="LABEL")

    remove = commands.add_parser("remove", help="drop a model's entry (its files stay on disk)")
    remove.add_argument("name")

    commands.add_parser("check", help="report what TF Serving would fail on; exit 1 if anything")
    return parser


def _describe(entry: ModelEntry, config_dir: Path, container_root: str) -> str:
    versions = list_versions(resolve_base_path(entry.base_path, config_dir, container_root))
    labels = " ".join(f"{k}={v}" for k, v in entry.labels.items()) or "-"
    on_disk = ",".join(map(str, versions)) or "none"
    return (
        f"{entry.name:<20} versions {on_disk:<10} policy {entry.policy.describe():<12} "
        f"labels {labels:<20} base_path {entry.base_path}"
    )


def run(args: argparse.Namespace) -> int:
    path: Path = args.file
    if args.command == "list":
        config = ModelsConfig.load(path)
        for entry in config.entries:
            print(_describe(entry, path.parent, args.container_root))
        if not config.entries:
            print(f"{path}: no models")
        return 0
    if args.command == "check":
        config = ModelsConfig.load(path)
        problems = check(config, args.container_root)
        for problem in problems:
            print(f"{path}: {problem}")
        if not problems:
            print(f"{path}: {len(config.entries)} model(s), no problems")
        return 1 if problems else 0

    name = validate_model_name(args.name)
    if args.command == "remove":
        config = ModelsConfig.load(path)
        config.remove(name)
        config.save()
        print(f"{path}: removed {name} (its version folders were left on disk)")
        return 0

    config = ModelsConfig.load(path, missing_ok=args.command == "add")
    entry = config.get(name)
    if args.command == "add":
        entry = entry or ModelEntry(name=name, base_path=default_base_path(name))
        if args.base_path:
            entry.base_path = args.base_path
        if args.policy:
            entry.policy = args.policy
        assignments = [_parse_label(text) for text in args.label]
    else:
        if entry is None:
            raise ModelsConfigError(f"{path}: no model named {name!r}; add it first")
        assignments = [_parse_label(text) for text in args.assignments]
        for label in args.delete:
            if entry.labels.pop(label, None) is None:
                raise UsageError(f"model {name!r} has no label {label!r}")
        if not assignments and not args.delete:
            raise UsageError("give LABEL=VERSION assignments or --delete LABEL")
    entry.labels.update(assignments)
    added = config.upsert(entry)
    config.save()
    verb = "added" if added else "updated"
    print(f"{path}: {verb} {_describe(entry, path.parent, args.container_root)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(run, build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())

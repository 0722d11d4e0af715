"""Fill the models and pipelines volumes before the graph and logic tiers start (compose `prepare`).

Runs in the image built from Dockerfile.convert (the converters' dependency group), once per
`docker compose up`, and exits 0 only when both folders are ready to serve:

1. pipelines folder: without a pipelines.yaml it receives the bundled example (examples/credit),
   unless the user brought their own folder (--own, set by compose when KIT_PIPELINES is given):
   then a missing pipelines.yaml is an error, never silently replaced by the example.
2. artifacts: a transformer the pipeline file names but that does not exist yet is made by the
   folder's train.py when there is one (the example's), else it is an error.
3. models: each graph_model missing from models.config (or without a version folder) is converted
   with convert-h5 from artifacts/model.h5 next to pipelines.yaml; the converter's summary is
   printed. Anything already there is reused, so a second `up` starts in seconds.
4. `models-config check` must pass, so TF Serving never starts on an empty or half-written folder.
5. pipelines: `logic-service compile` compiles each pipeline into the pipelines folder
   (compiled/NAME/), in the scikit-learn that pickled its artifacts (another release's build
   environment is made once under $KIT_BUILD_CACHE, the `build-envs` volume in compose), so the
   logic tier serves them without unpickling anything. A pipeline that cannot be compiled
   fails the step with the compiler's one line each, as any other failure here does.

Every failure is one line on stderr and a non-zero exit (2: bad input, else the tool's own code),
which makes compose stop the stack before `graph` starts.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

EXAMPLE_FILES = ("pipelines.yaml", "train.py", "README.md", "requests")


class PrepareError(Exception):
    """One line for the user; `code` is the exit status."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def say(message: str) -> None:
    sys.stdout.write(f"prepare: {message}\n")
    sys.stdout.flush()


def tool(name: str) -> str:
    """A console script of the running environment (/opt/venv/bin in the image)."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    if not found:
        raise PrepareError(f"{name} is not installed in this image; rebuild Dockerfile.convert")
    return found


def run(argv: Sequence[str], what: str) -> None:
    """Run a step with its output passed through (compose shows it), failing with its exit code."""
    say(what)
    result = subprocess.run(list(argv), check=False)
    if result.returncode != 0:
        raise PrepareError(f"{what} failed (exit code {result.returncode})", result.returncode)


def ensure_pipeline_file(pipelines: Path, example: Path, own: bool) -> Path:
    config = pipelines / "pipelines.yaml"
    if config.exists():
        return config
    if own:
        raise PrepareError(
            f"no pipelines.yaml in the pipeline folder mounted at {pipelines} (KIT_PIPELINES): "
            "point KIT_PIPELINES at the folder holding pipelines.yaml and its transformers"
        )
    if not (example / "pipelines.yaml").exists():
        raise PrepareError(
            f"{pipelines} has no pipelines.yaml and there is no example at {example}"
        )
    pipelines.mkdir(parents=True, exist_ok=True)
    for name in EXAMPLE_FILES:
        source = example / name
        if source.is_dir():
            shutil.copytree(source, pipelines / name, dirs_exist_ok=True)
        elif source.exists():
            shutil.copy2(source, pipelines / name)
    say(f"copied the example from {example} into {pipelines}")
    return config


def read_pipelines(config: Path) -> dict[str, dict]:
    try:
        document = yaml.safe_load(config.read_text())
        pipelines = document["pipelines"]
        if not isinstance(pipelines, dict) or not pipelines:
            raise TypeError("pipelines is empty")
    except (yaml.YAMLError, KeyError, TypeError) as exc:
        raise PrepareError(f"{config}: expected a `pipelines:` mapping ({exc})") from None
    return {str(name): dict(entry or {}) for name, entry in pipelines.items()}


def missing_transformers(config: Path, pipelines: dict[str, dict]) -> list[Path]:
    paths = []
    for entry in pipelines.values():
        for key in ("transformer", "transformers"):
            value = entry.get(key)
            values = value if isinstance(value, list) else [value] if value else []
            paths += [config.parent / str(item) for item in values]
    return [path for path in paths if not path.exists()]


def ensure_artifacts(config: Path, pipelines: dict[str, dict], own: bool) -> None:
    missing = missing_transformers(config, pipelines)
    if not missing:
        say("transformers present: reusing them")
        return
    train = config.parent / "train.py"
    if own or not train.exists():
        raise PrepareError(
            f"{missing[0]} does not exist: put the fitted transformer there (pipelines.yaml names it)"
        )
    run(
        [sys.executable, str(train), "--out", str(config.parent / "artifacts")],
        "training the example",
    )
    if still := missing_transformers(config, pipelines):
        raise PrepareError(f"{train} ran but {still[0]} is still missing")


def models_to_convert(models: Path, names: Sequence[str]) -> list[str]:
    from converters.errors import ModelsConfigError
    from converters.models_config import ModelsConfig, list_versions, resolve_base_path

    try:
        config = ModelsConfig.load(models / "models.config", missing_ok=True)
    except ModelsConfigError as exc:
        raise PrepareError(str(exc)) from None
    todo = []
    for name in names:
        entry = config.get(name)
        if entry is None or not list_versions(resolve_base_path(entry.base_path, models)):
            todo.append(name)
    return todo


def ensure_models(models: Path, config: Path, pipelines: dict[str, dict]) -> None:
    names = sorted({str(e["graph_model"]) for e in pipelines.values() if e.get("graph_model")})
    todo = models_to_convert(models, names)
    if not todo:
        say(f"models present in {models}: reusing {', '.join(names) or 'none'}")
        return
    h5 = config.parent / "artifacts" / "model.h5"
    if not h5.exists():
        raise PrepareError(
            f"model {todo[0]!r} is not in {models / 'models.config'} and there is no {h5} to "
            "convert: run convert-h5 through this image first "
            "(see docs/deployment.md, Bring your own model)"
        )
    if len(todo) > 1:
        raise PrepareError(
            f"models {', '.join(todo)} are missing from {models / 'models.config'}; only one "
            f"can come from {h5}: convert the others with convert-h5 first"
        )
    models.mkdir(parents=True, exist_ok=True)
    run(
        [tool("convert-h5"), str(h5), "--name", todo[0], "--models-dir", str(models)],
        f"converting {h5} into {models / todo[0]}",
    )


def check_models(models: Path) -> None:
    run(
        [tool("models-config"), "--file", str(models / "models.config"), "check"],
        "checking models.config",
    )


def compile_pipelines(config: Path) -> None:
    run(
        [tool("logic-service"), "compile", "--config", str(config)],
        f"compiling the pipelines of {config}",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="prepare",
        description=__doc__.split("\n\n")[0],
        epilog="In compose: `docker compose run --rm prepare` reruns it; "
        "`docker compose down -v` empties the volumes.",
    )
    parser.add_argument("--models", type=Path, default=Path("/models"), help="models folder")
    parser.add_argument(
        "--pipelines", type=Path, default=Path("/srv/pipelines"), help="pipeline folder"
    )
    parser.add_argument(
        "--example",
        type=Path,
        default=Path("/opt/kit/examples/credit"),
        help="example copied into an empty pipeline folder",
    )
    parser.add_argument(
        "--own",
        action="store_true",
        default=bool(os.environ.get("KIT_PIPELINES")),
        help="the pipeline folder is the user's: never copy the example or train into it "
        "(default: on when KIT_PIPELINES is set, as compose passes it)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = ensure_pipeline_file(args.pipelines, args.example, args.own)
        pipelines = read_pipelines(config)
        ensure_artifacts(config, pipelines, args.own)
        ensure_models(args.models, config, pipelines)
        check_models(args.models)
        compile_pipelines(config)
    except PrepareError as exc:
        sys.stderr.write(f"prepare: error: {exc}\n")
        return exc.code
    say(f"ready: {', '.join(pipelines)} in {args.pipelines}, models in {args.models}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

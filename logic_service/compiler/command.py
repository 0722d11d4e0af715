"""`logic-service compile`: compile each pipeline ahead of time, in its pickles' own scikit-learn.

For every pipeline of a pipeline file: read which scikit-learn version pickled each artifact
(without unpickling it), pick an interpreter with exactly that version (this one when it
matches, a cached build environment otherwise, or `--python`), run the compile step there
(`worker.py`: load, convert, parity gate, self-test) and publish the result atomically as
`compiled/NAME/`. The service then serves those files without unpickling anything. A
pipeline that cannot be compiled gets one line saying why and what to do, and its previous
build (if any) is left as it was. Exit 0 when every pipeline that can be compiled was, 1
when one could not be, 2 for a bad command line or pipeline file.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sklearn

import logic_service
from logic_service.compiler.envs import BuildEnv, cache_root, ensure_env, running_env, user_env
from logic_service.config import PipelineSpec, ServiceConfig, load_config
from logic_service.errors import ConfigError, LogicError
from logic_service.pipeline.artifacts import inspect_artifact
from logic_service.pipeline.bundle import CONTRACT, FEATURES, MODEL, REPORT, publish, staging_dir

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
WORKER_TIMEOUT = 900.0

Say = Callable[[str], None]


@dataclass
class Plan:
    """What the command will do with one pipeline, decided before anything runs."""

    name: str
    spec: PipelineSpec
    skip: str = ""  # compiled by design never (a hook, engine: sklearn)
    error: str = ""  # cannot be compiled, known before trying
    sklearn_version: str | None = None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="logic-service compile",
        description=(
            "Compile each pipeline of a pipeline file ahead of time: convert its fitted "
            "scikit-learn artifacts to ONNX in the scikit-learn version that pickled them, check "
            "the result against scikit-learn (parity gate) and score its contract rows "
            "(self-test), and write compiled/NAME/ next to the file. logic-service then serves "
            "those files without unpickling anything, whatever scikit-learn it runs."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"""what it writes, per pipeline (atomically: a failed build leaves the last one):
  compiled/NAME/features.onnx   the transformers as one graph
  compiled/NAME/model.onnx      the in-process model (a `model:` pipeline)
  compiled/NAME/contract.json   columns, kinds, categories, nullability, fitted values
  compiled/NAME/report.json     versions, parity, self-test, sha256 of sources and files

build environments: when an artifact was pickled by another scikit-learn than this one
({sklearn.__version__}), a virtual environment with that version (and the conversion stack
this kit runs) is created once, from wheels, under $KIT_BUILD_CACHE or
~/.cache/tiered-serving-kit/build-envs, and reused; --python uses yours instead.

not compiled, by design: pipelines with a preprocess hook (Python glue) or engine: sklearn;
they serve through their pickles, which needs the scikit-learn that pickled them.

exit codes: 0 every compilable pipeline compiled, 1 one could not be (one line each, saying
why and what to do), 2 bad command line or pipeline file

examples:
  logic-service compile --config examples/credit/pipelines.yaml
  logic-service compile --config pipelines.yaml --pipeline students --python ~/envs/sk13/bin/python
""",
    )
    parser.add_argument("--config", metavar="FILE", help="pipeline file (default: $LOGIC_CONFIG)")
    parser.add_argument(
        "--out",
        metavar="DIR",
        type=Path,
        help="write the builds here instead of the file's compiled_dir (default: compiled/ next "
        "to the file); serve them with compiled_dir: DIR or LOGIC_COMPILED_DIR=DIR",
    )
    parser.add_argument(
        "--pipeline",
        metavar="NAME",
        action="append",
        help="compile only this pipeline (repeatable; default: all)",
    )
    parser.add_argument(
        "--python",
        metavar="PATH",
        type=Path,
        help="compile in this interpreter (it must have the artifacts' scikit-learn, skl2onnx, "
        "onnx, onnxruntime, pandas, pyyaml) instead of a cached build environment",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    path = args.config or os.environ.get("LOGIC_CONFIG")
    if not path:
        print("logic-service compile: error: no pipeline file: pass --config FILE", file=sys.stderr)
        return EXIT_USAGE
    try:
        config = load_config(Path(path))
        names = _names(config, args.pipeline)
    except LogicError as error:
        print(f"logic-service compile: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    out = args.out.resolve() if args.out else config.compiled_dir
    return compile_pipelines(config, names, out, args.python, _say)


def compile_pipelines(
    config: ServiceConfig,
    names: list[str],
    out: Path,
    python: Path | None,
    say: Say,
) -> int:
    """Plan, then build each compilable pipeline; the exit code."""
    plans = [_plan(config.pipelines[name], config) for name in names]
    failed = False
    envs: dict[str | None, BuildEnv | str] = {}
    for plan in plans:
        if plan.skip:
            say(f"{plan.name}: not compiled: {plan.skip}")
            continue
        if plan.error:
            say(f"{plan.name}: cannot be compiled: {plan.error}")
            failed = True
            continue
        env = envs.get(plan.sklearn_version)
        if env is None:
            env = envs[plan.sklearn_version] = _environment(plan.sklearn_version, python, say)
        if isinstance(env, str):
            say(f"{plan.name}: cannot be compiled: {env}")
            failed = True
            continue
        failed |= not _build(plan, config, out, env, say)
    if out != config.compiled_dir and not failed:
        say(
            f"builds written to {out}: serve them with `compiled_dir: {out}` in {config.path.name} "
            f"or LOGIC_COMPILED_DIR={out}"
        )
    return EXIT_FAILED if failed else EXIT_OK


def _names(config: ServiceConfig, wanted: list[str] | None) -> list[str]:
    if not wanted:
        return list(config.pipelines)
    unknown = [name for name in wanted if name not in config.pipelines]
    if unknown:
        raise ConfigError(
            f"--pipeline {', '.join(unknown)}: not in {config.path} (has: "
            f"{', '.join(config.pipelines)})"
        )
    return wanted


def _plan(spec: PipelineSpec, config: ServiceConfig) -> Plan:
    """Read the artifacts (without unpickling) and decide: skip, fail early, or build in X."""
    plan = Plan(spec.name, spec)
    try:
        inspected = [inspect_artifact(ref) for _, ref in spec.artifact_refs()]
    except ConfigError as error:
        plan.error = str(error)
        return plan
    versions = {i.scan.sklearn_version for i in inspected if i.scan.sklearn_version}
    pickled = ", ".join(sorted(versions)) or sklearn.__version__
    if not spec.compilable:
        why = "a preprocess hook is Python glue code" if spec.preprocess else "engine: sklearn"
        plan.skip = f"{why}; it serves through its pickles, with scikit-learn {pickled}" + (
            ""
            if versions <= {sklearn.__version__}
            else f" (build the logic image with --build-arg SKLEARN_VERSION={pickled})"
        )
        return plan
    if len(versions) > 1:
        each = ", ".join(
            f"{i.ref.path.name}: {i.scan.sklearn_version}"
            for i in inspected
            if i.scan.sklearn_version
        )
        plan.error = (
            f"its artifacts were pickled by different scikit-learn versions ({each}); re-save "
            "them with one version"
        )
        return plan
    plan.sklearn_version = versions.pop() if versions else None
    return plan


def _environment(version: str | None, python: Path | None, say: Say) -> BuildEnv | str:
    """The interpreter for `version` (None: no artifact says; this one), or why there is none."""
    try:
        if python is not None:
            return user_env(python, version)
        if version is None or version == sklearn.__version__:
            return running_env()
        return ensure_env(version, say, cache_root())
    except ConfigError as error:
        return str(error)


def _build(plan: Plan, config: ServiceConfig, out: Path, env: BuildEnv, say: Say) -> bool:
    """Run the worker for one pipeline and publish its build; False (and one line) on failure."""
    target = out / plan.name
    staging = staging_dir(target)
    try:
        answer = _run_worker(
            env, {"config": str(config.path), "pipeline": plan.name, "staging": str(staging)}
        )
        if not answer.get("ok"):
            say(f"{plan.name}: cannot be compiled: {_advice(answer.get('error', ''), plan, env)}")
            return False
        publish(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    report = answer["report"]
    _summary(plan.name, report, target=target, env=env, config=config, say=say)
    return True


def _run_worker(env: BuildEnv, job: dict[str, str]) -> dict[str, Any]:
    """The compile step in `env`'s interpreter, with this kit's code on its path only."""
    with tempfile.TemporaryDirectory(prefix="kit-compile-") as shim:
        os.symlink(Path(logic_service.__file__).parent, Path(shim) / "logic_service")
        environ = {
            **os.environ,
            "PYTHONPATH": shim,
            "PYTHONNOUSERSITE": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        try:
            result = subprocess.run(
                [str(env.python), "-s", "-m", "logic_service.compiler.worker"],
                input=json.dumps(job),
                capture_output=True,
                text=True,
                env=environ,
                timeout=WORKER_TIMEOUT,
            )
        except subprocess.TimeoutExpired:
            return {"ok": False, "error": f"the compile step took more than {WORKER_TIMEOUT:.0f}s"}
    lines = [line for line in result.stdout.strip().splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        tail = [line for line in result.stderr.strip().splitlines() if line.strip()][-1:] or [
            "no output"
        ]
        return {"ok": False, "error": f"the compile step in {env.python} failed: {tail[0]}"}
    return json.loads(lines[-1])


def _advice(error: str, plan: Plan, env: BuildEnv) -> str:
    """The worker's one line, plus what to do where the build environment is the fix."""
    if "needs module" in error and env.origin != "running":
        return (
            f"{error} (in the build environment: {env.python} -m pip install MODULE, or pass "
            "--python with an environment that has it)"
        )
    version = plan.sklearn_version or sklearn.__version__
    return (
        f"{error}; it can still serve through its pickles with scikit-learn {version}: set "
        f"engine: sklearn and build the logic image with --build-arg SKLEARN_VERSION={version}"
    )


def _summary(
    name: str,
    report: dict[str, Any],
    *,
    target: Path,
    env: BuildEnv,
    config: ServiceConfig,
    say: Say,
) -> None:
    built = report["built_with"]
    where = (
        "this interpreter"
        if env.origin == "running"
        else env.origin.removeprefix("cached ").removeprefix("created ")
    )
    say(f"{name}: compiled in scikit-learn {built['scikit-learn']} ({where})")
    for source in report["sources"]:
        version = source.get("sklearn_version") or "no scikit-learn version in it"
        kind = source.get("format", "json")
        say(f"  source    {source['path']}: {kind}, {version}, sha256 {source['sha256'][:16]}...")
    parity = report["parity"]
    say(
        f"  parity    max |diff| {parity['max_diff']:.2g} on {parity['rows']} rows "
        f"(atol {report['spec']['parity_atol']:g})"
    )
    test = report["self_test"]
    say(f"  self-test {test['scored']} of {test['rows']} rows scored")
    files = [f for f in (FEATURES, MODEL) if (target / f).exists()]
    shown = os.path.relpath(target, config.base_dir)
    say(f"  wrote     {shown}/ ({', '.join([*files, CONTRACT, REPORT])})")


def _say(line: str) -> None:
    print(line, flush=True)

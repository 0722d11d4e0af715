"""`logic-service compile` on artifacts pickled by real scikit-learn releases, then served.

Every artifact here was fitted and pickled by the release it names, in that release's own
build environment (devtools/legacy_sklearn.py), with the scores that release computes: the
compiled pipeline must reproduce them, served by this kit's newer scikit-learn without
unpickling anything.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import requests
import sklearn
import yaml

from devtools.legacy_sklearn import LEGACY_VERSIONS, LegacyArtifacts
from devtools.logic_tier import start_logic_service
from devtools.servers import ServerProcess, script
from logic_service.config import load_config
from logic_service.pipeline.artifacts import file_sha256
from logic_service.pipeline.loader import load_pipelines

# float32 inside the compiled graph, float64 in scikit-learn: scores agree to about 1e-6.
RTOL = 1e-5
# Each release saved its files as users do; the tests go round the formats.
FORMAT_FOR = {"1.2.2": "pkl", "1.3.2": "joblib", "1.5.2": "dill", sklearn.__version__: "z.joblib"}

AUDIT_HOOK = """
import os, sys

def _audit(event, args):
    if event == "pickle.find_class":
        seen = f"find_class {args[0]}.{args[1]}"
    elif event == "import" and args[0].split(".")[0] == "sklearn":
        seen = f"import {args[0]}"
    else:
        return
    with open(os.environ["PICKLE_AUDIT_LOG"], "a") as log:
        log.write(f"{os.getpid()} {seen}\\n")

sys.addaudithook(_audit)
"""


def compile_cli(
    config: Path, *extra: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [script("logic-service"), "compile", "--config", str(config), *extra],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )


def check_cli(config: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [script("logic-service"), "--config", str(config), "--check"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def workspace(legacy: LegacyArtifacts, tmp_path: Path, kind: str | None = None) -> Path:
    """A deployment folder of this release's `simple` pipeline: its files and pipelines.yaml."""
    kind = kind or FORMAT_FOR[legacy.version]
    folder = tmp_path / f"deploy-{legacy.version}"
    shutil.copytree(legacy.root / "simple", folder / "simple")
    document = {
        "pipelines": {
            "students": {
                "transformer": f"simple/preprocessor.{kind}",
                "model": f"simple/model.{kind}",
            }
        }
    }
    config = folder / "pipelines.yaml"
    config.write_text(yaml.safe_dump(document, sort_keys=False))
    return config


def tree_digest(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): file_sha256(path)
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def _assert_serves_its_scores(server: ServerProcess, legacy: LegacyArtifacts) -> None:
    """/get_score gives what the artifacts gave in the release that pickled them."""
    response = requests.post(server.url + "/get_score", json={"data": legacy.records}, timeout=30)
    assert response.status_code == 200, response.text
    np.testing.assert_allclose(response.json()["data"], legacy.expected["simple/model"], rtol=RTOL)


@pytest.mark.parametrize("version", [*LEGACY_VERSIONS, sklearn.__version__])
def test_each_release_compiles_and_scores_as_it_did(legacy_sklearn, version, tmp_path) -> None:
    legacy = legacy_sklearn(version)
    config = workspace(legacy, tmp_path)
    result = compile_cli(config)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"students: compiled in scikit-learn {version}" in result.stdout
    assert "  parity    max |diff|" in result.stdout and "  self-test " in result.stdout
    folder = config.parent / "compiled" / "students"
    assert sorted(p.name for p in folder.iterdir()) == [
        "contract.json",
        "features.onnx",
        "model.onnx",
        "report.json",
    ]
    report = json.loads((folder / "report.json").read_text())
    assert report["built_with"]["scikit-learn"] == version
    assert {s["path"]: s["sha256"] for s in report["sources"]} == {
        f"simple/{n}.{FORMAT_FOR[version]}": file_sha256(
            config.parent / "simple" / f"{n}.{FORMAT_FOR[version]}"
        )
        for n in ("preprocessor", "model")
    }
    assert report["parity"]["passed"] and report["self_test"]["scored"] > 0
    # Served by this kit's own scikit-learn, from the build: that release's scores.
    pipeline = load_pipelines(load_config(config))["students"]
    assert pipeline.engine == "onnx" and pipeline.build is not None
    assert pipeline.loaded() == []  # nothing was unpickled
    scores = pipeline.predict_local(pipeline.prepare(legacy.records).features)
    np.testing.assert_allclose(scores, legacy.expected["simple/model"], rtol=RTOL)


@pytest.mark.parametrize("version", [*LEGACY_VERSIONS, sklearn.__version__])
def test_the_public_template_from_each_release_compiles_and_scores_as_it_did(
    legacy_sklearn, version, tmp_path
) -> None:
    """The commonest public end-to-end template, string imputer and all: before this kit
    could compile it, a 1.3.2 pickle loaded, said ready and answered 500 to every request."""
    legacy = legacy_sklearn(version)
    kind = FORMAT_FOR[version]
    folder = tmp_path / "template"
    shutil.copytree(legacy.root / "template", folder / "template")
    config = folder / "pipelines.yaml"
    pipelines = {
        "ridge": {
            "transformer": f"template/preprocessor.{kind}",
            "model": f"template/model.{kind}",
        },
        "boosted": {
            "transformer": f"template/preprocessor.{kind}",
            "model": f"template/boosted.{kind}",
        },
    }
    config.write_text(yaml.safe_dump({"pipelines": pipelines}, sort_keys=False))
    result = compile_cli(config)
    assert result.returncode == 0, result.stdout + result.stderr
    loaded = load_pipelines(load_config(config))
    for name, expected in (("ridge", "template/model"), ("boosted", "template/boosted")):
        pipeline = loaded[name]
        assert pipeline.engine == "onnx" and pipeline.loaded() == []
        scores = pipeline.predict_local(pipeline.prepare(legacy.records).features)
        np.testing.assert_allclose(scores, legacy.expected[expected], rtol=RTOL, err_msg=name)


def test_before_its_build_an_older_pickle_is_refused_with_the_command(
    legacy_sklearn, tmp_path
) -> None:
    config = workspace(legacy_sklearn("1.3.2"), tmp_path)
    result = check_cli(config)
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("logic-service: error: ")
    assert f"pickled by scikit-learn 1.3.2 and this service runs {sklearn.__version__}" in last
    assert f"logic-service compile --config {config}" in last
    assert "Traceback" not in result.stderr


def test_served_from_its_build_nothing_is_unpickled(legacy_sklearn, tmp_path) -> None:
    """The running service never calls pickle's find_class, nor even imports scikit-learn
    (audited in every process, master and workers)."""
    legacy = legacy_sklearn("1.5.2")
    config = workspace(legacy, tmp_path)
    assert compile_cli(config).returncode == 0
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(AUDIT_HOOK)
    audit = tmp_path / "find_class.log"
    audited = {**os.environ, "PYTHONPATH": str(hook), "PICKLE_AUDIT_LOG": str(audit)}
    # The hook works: a process that does unpickle is caught.
    control = "import pickle, sklearn; pickle.loads(pickle.dumps(range(3)))"
    subprocess.run([sys.executable, "-c", control], env=audited, check=True)
    assert "find_class builtins.range" in audit.read_text()
    assert "import sklearn" in audit.read_text()
    audit.write_text("")
    server = start_logic_service(
        config,
        tmp_path / "logic.log",
        env={"PYTHONPATH": str(hook), "PICKLE_AUDIT_LOG": str(audit)},
    )
    try:
        _assert_serves_its_scores(server, legacy)
        info = requests.get(server.url + "/pipelines", timeout=10).json()["data"]["pipelines"][0]
        assert info["engine"]["name"] == "onnx" and "nothing unpickled" in info["engine"]["reason"]
        assert info["build"]["built_with"]["scikit-learn"] == "1.5.2"
        assert {a["sklearn_version"] for a in info["artifacts"]} == {"1.5.2"}
    finally:
        server.stop()
    assert audit.read_text() == "", audit.read_text()[:500]


def test_a_build_shipped_without_its_sources_serves_and_says_so(legacy_sklearn, tmp_path):
    """A deployment may ship the compiled files alone: no pickles, no samples file. It serves,
    /pipelines notes each source it could not check, and /openapi.json still has an example
    (the contract's rows: the samples read at start, here none)."""
    legacy = legacy_sklearn("1.3.2")
    config = workspace(legacy, tmp_path)
    work = config.parent
    (work / "samples.json").write_text(json.dumps(legacy.records[:3]))
    document = yaml.safe_load(config.read_text())
    document["pipelines"]["students"]["samples"] = "samples.json"
    config.write_text(yaml.safe_dump(document, sort_keys=False))
    assert compile_cli(config).returncode == 0
    shutil.rmtree(work / "simple")
    (work / "samples.json").unlink()
    server = start_logic_service(config, tmp_path / "logic.log")
    try:
        _assert_serves_its_scores(server, legacy)
        info = requests.get(server.url + "/pipelines", timeout=10).json()["data"]["pipelines"][0]
        absent = sorted(note.split()[1] for note in info["warnings"] if "is not present" in note)
        assert absent == ["samples.json", "simple/model.joblib", "simple/preprocessor.joblib"]
        spec = requests.get(server.url + "/openapi.json", timeout=10)
        assert spec.status_code == 200, spec.text
        body = spec.json()["paths"]["/get_score"]["post"]["requestBody"]["content"]
        example = body["application/json"]["examples"]["students"]["value"]
        assert example["model"] == "students" and example["data"]
        assert set(example["data"][0]) == set(legacy.records[0])
    finally:
        server.stop()


def test_a_stale_build_is_refused_naming_both_digests(legacy_sklearn, tmp_path) -> None:
    config = workspace(legacy_sklearn("1.3.2"), tmp_path)
    work = config.parent
    assert compile_cli(config).returncode == 0
    built = file_sha256(work / "simple" / "preprocessor.joblib")
    # A retrained preprocessor is deployed, the build is not redone.
    shutil.copy(legacy_sklearn("1.2.2").root / "simple" / "preprocessor.joblib", work / "simple")
    now = file_sha256(work / "simple" / "preprocessor.joblib")
    result = check_cli(config)
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert "is stale" in last and built in last and now in last
    assert "logic-service compile --config" in last


def test_a_compiled_file_edited_by_hand_is_refused(legacy_sklearn, tmp_path) -> None:
    config = workspace(legacy_sklearn("1.3.2"), tmp_path)
    work = config.parent
    assert compile_cli(config).returncode == 0
    contract = work / "compiled" / "students" / "contract.json"
    contract.write_text(contract.read_text().replace('"nullable": false', '"nullable": true', 1))
    result = check_cli(config)
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert f"compiled file {contract} was changed after it was built" in last


def test_a_failed_compile_leaves_the_previous_build_as_it_was(legacy_sklearn, tmp_path) -> None:
    config = workspace(legacy_sklearn("1.3.2"), tmp_path)
    work = config.parent
    assert compile_cli(config).returncode == 0
    before = tree_digest(work / "compiled")
    preprocessor = work / "simple" / "preprocessor.joblib"
    preprocessor.write_bytes(preprocessor.read_bytes()[:200])  # a truncated upload
    result = compile_cli(config)
    assert result.returncode == 1
    assert result.stdout.strip().splitlines() == [
        line
        for line in result.stdout.strip().splitlines()
        if line.startswith("students: cannot be compiled: ")
    ]
    assert f"{preprocessor}: not a readable pickle" in result.stdout
    assert tree_digest(work / "compiled") == before  # untouched, no staging left behind


def test_what_cannot_be_compiled_says_why_and_the_rest_is_skipped_or_built(
    legacy_sklearn, tmp_path
) -> None:
    config = workspace(legacy_sklearn("1.3.2"), tmp_path)
    work = config.parent
    shutil.copy(
        legacy_sklearn("1.5.2").root / "simple" / "model.dill", work / "simple" / "model_152.dill"
    )
    document = {
        "pipelines": {
            "mixed": {
                "transformer": "simple/preprocessor.joblib",
                "model": "simple/model_152.dill",
            },
            "glue": {
                "artifacts": {"pre": "simple/preprocessor.joblib"},
                "preprocess": "glue_module:preprocess",
                "columns": {"reading_score": "number"},
                "model": "simple/model.joblib",
            },
            "fine": {"transformer": "simple/preprocessor.joblib", "model": "simple/model.joblib"},
        }
    }
    config.write_text(yaml.safe_dump(document, sort_keys=False))
    result = compile_cli(config)
    assert result.returncode == 1
    out = result.stdout
    assert (
        "mixed: cannot be compiled: its artifacts were pickled by different scikit-learn versions "
        "(preprocessor.joblib: 1.3.2, model_152.dill: 1.5.2); re-save them with one version"
    ) in out
    assert (
        "glue: not compiled: a preprocess hook is Python glue code; it serves through its pickles, "
        "with scikit-learn 1.3.2 (build the logic image with --build-arg SKLEARN_VERSION=1.3.2)"
    ) in out
    assert "fine: compiled in scikit-learn 1.3.2" in out
    assert (work / "compiled" / "fine" / "report.json").is_file()
    assert not (work / "compiled" / "mixed").exists()


def test_usage_errors_exit_2(legacy_sklearn, tmp_path) -> None:
    config = workspace(legacy_sklearn("1.3.2"), tmp_path)
    result = compile_cli(config, "--pipeline", "nope")
    assert result.returncode == 2
    assert "--pipeline nope: not in" in result.stderr and "(has: students)" in result.stderr
    result = compile_cli(tmp_path / "absent.yaml")
    assert result.returncode == 2 and "does not exist" in result.stderr
    help_text = subprocess.run(
        [script("logic-service"), "compile", "--help"], capture_output=True, text=True
    ).stdout
    assert "build environments" in help_text and "--python" in help_text


def test_out_elsewhere_is_served_with_logic_compiled_dir(legacy_sklearn, tmp_path) -> None:
    config = workspace(legacy_sklearn("1.3.2"), tmp_path)
    out = tmp_path / "builds"
    result = compile_cli(config, "--out", str(out))
    assert result.returncode == 0
    assert f"LOGIC_COMPILED_DIR={out}" in result.stdout
    assert (out / "students" / "report.json").is_file()
    checked = check_cli(config, {"LOGIC_COMPILED_DIR": str(out)})
    assert checked.returncode == 0, checked.stderr
    assert "engine: onnx" in checked.stdout and "self-test:" in checked.stdout


COVERAGE_KINDS = ("template", "string_imputers", "one_hot", "ordinal", "functions")


@pytest.mark.parametrize("version", LEGACY_VERSIONS)
def test_every_converter_compiles_what_older_releases_fitted(legacy_sklearn, version, tmp_path):
    """Each kind of step the compiled engine converts, fitted by an older release (the same
    devtools/sklearn_fits.py functions the session's own tests fit): compiled in that release,
    served here with its features."""
    legacy = legacy_sklearn(version)
    folder = tmp_path / "coverage"
    shutil.copytree(legacy.root / "coverage", folder / "coverage")
    config = folder / "pipelines.yaml"
    document = {
        name: {"transformer": f"coverage/{name}.joblib", "graph_model": "unused"}
        for name in COVERAGE_KINDS
    }
    config.write_text(
        yaml.safe_dump({"graph_service_url": "http://127.0.0.1:9", "pipelines": document})
    )
    result = compile_cli(config)
    assert result.returncode == 0, result.stdout + result.stderr
    loaded = load_pipelines(load_config(config))
    for name in COVERAGE_KINDS:
        pipeline = loaded[name]
        assert pipeline.engine == "onnx" and pipeline.loaded() == [], name
        features = pipeline.prepare(legacy.coverage_records).features
        np.testing.assert_allclose(
            features, legacy.expected[f"coverage/{name}"], rtol=RTOL, atol=1e-5, err_msg=name
        )

"""deploy/prepare.py, compose's one-shot `prepare` service, run for real on temporary folders.

The same script the convert image runs: it trains the real example, converts it with the real
convert-h5, checks models.config, reuses everything on a second run, and fails with one line and
a non-zero exit (so compose never starts `graph`) on a bad model or a missing pipeline folder.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.deploy.dockerfiles import ROOT

PREPARE = ROOT / "deploy" / "prepare.py"
EXAMPLE = ROOT / "examples" / "credit"


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    seconds: float


def prepare(models: Path, pipelines: Path, *extra: str, env: dict | None = None) -> Run:
    started = time.monotonic()
    result = subprocess.run(
        [
            sys.executable,
            str(PREPARE),
            "--models",
            str(models),
            "--pipelines",
            str(pipelines),
            "--example",
            str(EXAMPLE),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    return Run(result.returncode, result.stdout, result.stderr, time.monotonic() - started)


@pytest.fixture(scope="module")
def volumes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Run]:
    """Empty `models` and `pipelines` folders, as fresh named volumes are, after one prepare."""
    root = tmp_path_factory.mktemp("volumes")
    models, pipelines = root / "models", root / "pipelines"
    models.mkdir()
    pipelines.mkdir()
    return models, pipelines, prepare(models, pipelines)


def test_first_run_trains_converts_and_checks(volumes: tuple[Path, Path, Run]) -> None:
    models, pipelines, run = volumes
    assert run.returncode == 0, run.stdout + run.stderr
    assert (pipelines / "pipelines.yaml").read_text() == (EXAMPLE / "pipelines.yaml").read_text()
    assert (pipelines / "artifacts" / "transformer.pkl").exists()
    assert "training the example" in run.stdout
    # convert-h5's own summary (signature, where it wrote) reaches compose's log, then the check.
    assert "serving_default" in run.stdout, run.stdout
    assert str(models / "credit" / "1") in run.stdout, run.stdout
    assert run.stdout.index("checking models.config") > run.stdout.index("serving_default")
    assert (models / "credit" / "1" / "saved_model.pb").exists()
    assert 'name: "credit"' in (models / "models.config").read_text()
    assert 'base_path: "/models/credit"' in (models / "models.config").read_text()
    # ... and the pipeline is compiled into the pipelines volume, after the models check.
    assert run.stdout.index("compiling the pipelines") > run.stdout.index("checking models.config")
    assert "credit: compiled in scikit-learn" in run.stdout
    assert (pipelines / "compiled" / "credit" / "report.json").is_file()


def test_what_prepare_writes_is_readable_by_the_serving_users(
    volumes: tuple[Path, Path, Run],
) -> None:
    """prepare runs as uid 10001; TF Serving reads the models as nobody (65534) and the logic
    tier the pipelines as 10001, so everything must be world-readable (dirs traversable)."""
    models, pipelines, run = volumes
    assert run.returncode == 0
    for root in (models, pipelines):
        for path in [root, *root.rglob("*")]:
            mode = path.stat().st_mode
            wanted = 0o005 if path.is_dir() else 0o004
            assert mode & wanted == wanted, f"{path} is {oct(mode & 0o777)}"
    assert not list(models.rglob(".staging-*")), "no staging leftovers in the volume"


def test_second_run_reuses_what_the_volumes_hold(volumes: tuple[Path, Path, Run]) -> None:
    models, pipelines, first = volumes
    assert first.returncode == 0
    before = sorted(path.name for path in (models / "credit").iterdir())
    run = prepare(models, pipelines)
    assert run.returncode == 0, run.stderr
    assert "training" not in run.stdout
    assert "converting" not in run.stdout
    assert "reusing credit" in run.stdout
    assert sorted(path.name for path in (models / "credit").iterdir()) == before == ["1"]
    assert run.seconds < first.seconds / 3


def test_a_bad_model_file_stops_with_one_line_and_leaves_no_model(
    volumes: tuple[Path, Path, Run], tmp_path: Path
) -> None:
    _, good_pipelines, first = volumes
    assert first.returncode == 0
    pipelines, models = tmp_path / "pipelines", tmp_path / "models"
    (pipelines / "artifacts").mkdir(parents=True)
    models.mkdir()
    shutil.copy(good_pipelines / "pipelines.yaml", pipelines)
    shutil.copy(good_pipelines / "artifacts" / "transformer.pkl", pipelines / "artifacts")
    (pipelines / "artifacts" / "model.h5").write_bytes(b"this is not an HDF5 file\n" * 10)
    run = prepare(models, pipelines, "--own")
    assert run.returncode != 0
    errors = [line for line in run.stderr.splitlines() if line.strip()]
    assert errors[-1].startswith("prepare: error: converting"), run.stderr
    # The converter's own one-line reason is there too, naming the file.
    assert any("model.h5" in line and "error" in line.lower() for line in errors[:-1]), run.stderr
    assert "Traceback" not in run.stderr
    assert not (models / "models.config").exists()
    assert not (models / "credit").exists(), "no half-written model folder"


def test_own_pipeline_folder_without_pipelines_yaml_is_refused(tmp_path: Path) -> None:
    """KIT_PIPELINES pointing at a wrong folder (docker creates it empty): one line, exit 2,
    and the user's folder is not filled with the example."""
    pipelines = tmp_path / "mine"
    pipelines.mkdir()
    run = prepare(tmp_path / "models", pipelines, env={"KIT_PIPELINES": "./mine", "PATH": ""})
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1
    assert "no pipelines.yaml" in run.stderr and "KIT_PIPELINES" in run.stderr
    assert list(pipelines.iterdir()) == []


def test_own_pipeline_with_a_missing_transformer_is_not_retrained(tmp_path: Path) -> None:
    pipelines = tmp_path / "mine"
    pipelines.mkdir()
    shutil.copy(EXAMPLE / "pipelines.yaml", pipelines)
    shutil.copy(EXAMPLE / "train.py", pipelines)
    run = prepare(tmp_path / "models", pipelines, "--own")
    assert run.returncode == 2
    assert "transformer.pkl does not exist" in run.stderr
    assert not (pipelines / "artifacts").exists()


def test_a_model_missing_from_own_models_folder_says_how_to_convert(tmp_path: Path) -> None:
    pipelines = tmp_path / "mine"
    (pipelines / "artifacts").mkdir(parents=True)
    shutil.copy(EXAMPLE / "pipelines.yaml", pipelines)
    (pipelines / "artifacts" / "transformer.pkl").write_bytes(b"x")
    run = prepare(tmp_path / "models", pipelines, "--own")
    assert run.returncode == 2
    assert "model 'credit' is not in" in run.stderr
    assert "convert-h5" in run.stderr

"""Two real versions of one graph model, labelled, for the traffic tests (routes, shadow, reload).

`credit/1` and `credit/2` are dense SavedModels over the credit transformer's features with
different weights (seeds), so every answer says which version computed it; `expected` is the
offline computation of either. models.config keeps both loaded, `stable` -> 1, `canary` -> 2.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from devtools.logic_tier import start_logic_service
from devtools.savedmodels import dense_reference, write_dense_savedmodel, write_models_config
from devtools.servers import ServerProcess
from devtools.sklearn_artifacts import SklearnArtifacts, credit_records

SEEDS = {1: 3, 2: 11}  # version -> weights seed
LABELS = {"stable": 1, "canary": 2}


def version_policy(versions: list[int], labels: dict[str, int]) -> str:
    """A models.config entry's body: keep `versions` loaded, point `labels` at them."""
    listed = " ".join(f"versions: {v}" for v in versions)
    text = f"    model_version_policy {{ specific {{ {listed} }} }}\n"
    for label, version in labels.items():
        text += f'    version_labels {{ key: "{label}" value: {version} }}\n'
    return text


@dataclass
class TrafficBed:
    """Artifacts, a models/ folder with two labelled versions, and pipeline files for them."""

    artifacts: SklearnArtifacts
    models: Path
    width: int

    @property
    def models_config(self) -> Path:
        return self.models / "models.config"

    def records(self, n: int, seed: int = 1) -> list[dict[str, Any]]:
        return credit_records(n, seed)

    def expected(self, records: list[dict[str, Any]], version: int) -> list[float]:
        """What version `version` scores for these records, computed here."""
        features = self.artifacts.credit_features(records)
        return [float(row[0]) for row in dense_reference(features, seed=SEEDS[version])]

    def pipeline_document(self, traffic: dict[str, Any] | None, **pipeline: Any) -> dict:
        body: dict[str, Any] = {"transformer": "credit/transformer.pkl", "graph_model": "credit"}
        body.update(pipeline)
        if traffic is not None:
            body["traffic"] = traffic
        return {"pipelines": {"credit": body}}

    def write_pipelines(self, path: Path, traffic: dict[str, Any] | None, **pipeline: Any) -> Path:
        """A pipeline file at `path` whose artifact paths point into the shared artifacts."""
        document = self.pipeline_document(traffic, **pipeline)
        body = document["pipelines"]["credit"]
        body["transformer"] = str(self.artifacts.root / body["transformer"])
        tmp = path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(document, sort_keys=False))
        tmp.replace(path)  # one rename: a reader sees the old file or the new one
        return path


def build_traffic_bed(artifacts: SklearnArtifacts, root: Path) -> TrafficBed:
    width = artifacts.credit_features(credit_records(1)).shape[1]
    models = root / "models"
    for version, seed in SEEDS.items():
        write_dense_savedmodel(models / "credit" / str(version), width, seed=seed)
    write_models_config(models / "models.config", {"credit": version_policy([1, 2], LABELS)})
    return TrafficBed(artifacts, models, width)


@pytest.fixture(scope="session")
def traffic_bed(
    sklearn_artifacts: SklearnArtifacts, tmp_path_factory: pytest.TempPathFactory
) -> TrafficBed:
    """`credit` versions 1 (stable) and 2 (canary) on disk, over the credit transformer."""
    return build_traffic_bed(sklearn_artifacts, tmp_path_factory.mktemp("traffic_models"))


def start_traffic_logic(
    bed: TrafficBed,
    graph_url: str,
    folder: Path,
    traffic: dict[str, Any] | None,
    *,
    env: dict[str, str] | None = None,
    workers: int = 2,
    threads: int = 4,
    **pipeline: Any,
) -> ServerProcess:
    """`logic-service` under gunicorn over `folder/pipelines.yaml`, returned once /ready is 200
    (every version it routes to has had its signature read)."""
    config = bed.write_pipelines(folder / "pipelines.yaml", traffic, **pipeline)
    return start_logic_service(
        config,
        folder / "logic.log",
        env={"GRAPH_SERVICE_URL": graph_url, "LOGIC_ACCESS_LOG": "", **(env or {})},
        workers=workers,
        threads=threads,
        ready_path="/ready",
        timeout=120,  # the start and the signature reads, 60 s each
    )


def scores(body: dict[str, Any]) -> list[float]:
    """One float per record of a /get_score answer, whether it gives `p` or `[p]` per record."""
    return [float(p[0] if isinstance(p, list) else p) for p in body["data"]]


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """GET /metrics as {(sample name, sorted labels): value}."""
    text = requests.get(url + "/metrics", timeout=10).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def metric(url: str, name: str, **labels: str) -> float:
    """The sum of sample `name` over the series whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(
        value
        for (sample, series), value in scrape(url).items()
        if sample == name and wanted <= set(series)
    )

"""A compiled build's contract, written and read back, is the contract the service validates with."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from logic_service.config import load_config
from logic_service.pipeline.bundle import contract_from_json, contract_json
from logic_service.pipeline.loader import load_pipelines

KINDS = ("template", "string_imputers", "one_hot", "ordinal", "functions")


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


@pytest.fixture(scope="module")
def pipelines(coverage_artifacts):
    document = {
        "graph_service_url": "http://127.0.0.1:9",
        "pipelines": {
            name: {"transformer": f"coverage/{name}.pkl", "graph_model": "unused"} for name in KINDS
        },
    }
    path = coverage_artifacts.root / "bundle_roundtrip.yaml"
    path.write_text(json.dumps(document))
    return load_pipelines(load_config(path))


@pytest.mark.parametrize("name", KINDS)
def test_every_column_survives_the_round_trip(pipelines, name) -> None:
    pipeline = pipelines[name]
    written = json.loads(json.dumps(contract_json(pipeline.schema, pipeline.contract)))
    schema, contract = contract_from_json(written)
    assert schema == pipeline.schema
    assert contract.layout == pipeline.contract.layout
    for column, original in pipeline.contract.columns.items():
        read = contract.columns[column]
        for field in dataclasses.fields(original):
            if field.name == "categories" and original.categories is not None:
                # a fitted missing value is written as null: still missing, still not known
                assert read.known_values == original.known_values, column
                continue
            assert _same(getattr(read, field.name), getattr(original, field.name)), (
                column,
                field.name,
            )

"""One real graph-service for the traffic tests: `credit` versions 1 (stable) and 2 (canary)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devtools.savedmodels import start_graph_service
from devtools.servers import ServerProcess
from devtools.traffic import TrafficBed


@pytest.fixture(scope="package")
def graph(
    traffic_bed: TrafficBed, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    server = start_graph_service(traffic_bed.models_config, tmp_path_factory.mktemp("graph"))
    yield server
    server.stop()

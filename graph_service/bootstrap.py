"""Assemble a serving process from settings: model entries, first load, watcher, WSGI app.

Runs inside the server process that serves requests (the gunicorn worker), never at import.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from converters.models_config import ModelEntry, ModelsConfig
from graph_service.metrics import Metrics
from graph_service.models.pools import ModelPools, default_limit
from graph_service.models.registry import ModelRegistry
from graph_service.models.servable import load_servable
from graph_service.models.watcher import ConfigWatcher
from graph_service.rest.app import GraphServiceApp, create_app
from graph_service.settings import Settings

if TYPE_CHECKING:
    from graph_service.grpc.server import GrpcServer

logger = logging.getLogger(__name__)


class StartupError(Exception):
    """The service cannot start serving; the message says which model and why."""


@dataclass
class Service:
    """A running service's parts, so the server can stop them in order."""

    app: GraphServiceApp
    registry: ModelRegistry
    watcher: ConfigWatcher
    pools: ModelPools
    metrics: Metrics
    grpc: GrpcServer | None = None

    def close(self, grace: float = 10.0) -> None:
        """Stop gRPC (calls in flight finish), the watcher, then the model slots and models."""
        if self.grpc is not None:
            self.grpc.stop().wait()
        self.watcher.stop()
        if not self.pools.close(grace):
            logger.warning("shutdown: model calls still running after %.0f s", grace)
        self.registry.close()


def model_source(settings: Settings) -> tuple[Path, Callable[[], list[ModelEntry]]]:
    """(folder base paths are relative to, function returning the current model entries)."""
    if settings.model_config_file is not None:
        path = Path(settings.model_config_file).resolve()
        return path.parent, lambda: ModelsConfig.load(path).entries
    entry = ModelEntry(name=settings.model_name or "", base_path=settings.model_base_path or "")
    return Path.cwd(), lambda: [entry]


def build_service(settings: Settings) -> Service:
    """Load every configured model (as TF Serving does before opening its port), then watch."""
    config_dir, read_entries = model_source(settings)
    entries = read_entries()
    registry = ModelRegistry(
        config_dir,
        loader=functools.partial(load_servable, run_timeout_ms=settings.rest_api_timeout_in_ms),
        allow_labels_for_unavailable=settings.allow_version_labels_for_unavailable_models,
    )
    registry.sync(entries)
    missing = registry.unavailable_models()
    if missing:
        details = [
            f"{name} ({registry.load_errors(name) or 'no version folders'})" for name in missing
        ]
        raise StartupError(
            "no loadable version for model(s) "
            + ", ".join(details)
            + "; convert a model into its base_path or fix models.config"
        )
    watcher = ConfigWatcher(
        registry,
        read_entries,
        entries,
        config_poll_seconds=settings.model_config_file_poll_wait_seconds
        if settings.model_config_file
        else 0.0,
        fs_poll_seconds=settings.file_system_poll_wait_seconds,
    )
    limit = settings.model_max_inflight

    def slots() -> int:
        return limit or default_limit(settings.rest_api_num_threads, len(registry.names()))

    pools = ModelPools(slots)
    metrics = Metrics()
    metrics.bind(watcher.error_counts, pools.inflight)
    app = create_app(registry, settings, pools=pools, metrics=metrics, config_status=watcher.status)
    grpc = _start_grpc(settings, registry, watcher, pools, metrics)
    watcher.start()
    return Service(app, registry, watcher, pools, metrics, grpc)


def _start_grpc(
    settings: Settings,
    registry: ModelRegistry,
    watcher: ConfigWatcher,
    pools: ModelPools,
    metrics: Metrics,
) -> GrpcServer | None:
    """TF Serving's gRPC API on --port (None when --port=0), created here: after the fork.

    It shares REST's per-model slots and metrics, so --model_max_inflight bounds both fronts.
    """
    if not settings.grpc_port:
        logger.info("gRPC off (--port=0): serving REST only")
        return None
    from graph_service.grpc.server import GrpcServer, GrpcStartError

    try:
        return GrpcServer.start(
            registry,
            watcher,
            pools=pools,
            metrics=metrics,
            host=settings.rest_api_host,
            port=settings.grpc_port,
            max_threads=settings.grpc_max_threads,
            max_message_bytes=settings.max_body_bytes,
        )
    except GrpcStartError as exc:
        raise StartupError(str(exc)) from None

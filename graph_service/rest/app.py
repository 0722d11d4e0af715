"""The WSGI application: URL routing (TF Serving's REST paths) and the single error funnel.

`create_app` takes a registry and settings and returns a WSGI callable; it loads nothing
itself. Every failure, ours or werkzeug's, leaves through `errors.status_and_body` as
`{"error": ...}` JSON. Besides TF Serving's /v1/ paths it answers
GET /monitoring/prometheus/metrics (TF Serving's path for its Prometheus exporter) and
GET /monitoring/config (the config watcher's state and the last error it survived).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import orjson
from werkzeug.exceptions import HTTPException
from werkzeug.routing import BaseConverter, Map, Rule
from werkzeug.wrappers import Request, Response

from graph_service.errors import (
    InvalidArgumentError,
    NotFoundError,
    ServingError,
    status_and_body,
)
from graph_service.metrics import Metrics
from graph_service.models.pools import ModelPools, default_limit
from graph_service.models.registry import ModelRegistry
from graph_service.rest.handlers import Handlers
from graph_service.rest.request_body import read_body
from graph_service.settings import Settings
from tfs_protocol.errors import CodecError

logger = logging.getLogger(__name__)

JSON = "application/json"
PROMETHEUS = "text/plain; version=0.0.4; charset=utf-8"
MAX_VERSION = 2**63 - 1  # versions are int64 in TF Serving


class SegmentConverter(BaseConverter):
    """A model name or label: anything but '/' and ':' (TF Serving's `[^/:]+`)."""

    regex = r"[^/:]+"


class VerbConverter(BaseConverter):
    regex = r"classify|regress|predict"


def _url_map() -> Map:
    prefixes = [
        "/v1/models/<seg:name>",
        "/v1/models/<seg:name>/versions/<int:version>",
        "/v1/models/<seg:name>/labels/<seg:label>",
    ]
    rules = []
    for prefix in prefixes:
        rules.append(Rule(prefix, endpoint="status", methods=["GET"]))
        rules.append(Rule(prefix + "/metadata", endpoint="metadata", methods=["GET"]))
        rules.append(Rule(prefix + ":<verb:verb>", endpoint="verb", methods=["POST"]))
    rules.append(Rule("/monitoring/prometheus/metrics", endpoint="metrics", methods=["GET"]))
    rules.append(Rule("/monitoring/config", endpoint="config", methods=["GET"]))
    return Map(
        rules,
        converters={"seg": SegmentConverter, "verb": VerbConverter},
        strict_slashes=False,
        merge_slashes=False,
    )


class GraphServiceApp:
    """TF Serving's REST API over a model registry."""

    def __init__(
        self,
        handlers: Handlers,
        settings: Settings,
        metrics: Metrics,
        config_status: Callable[[], dict] = dict,
    ) -> None:
        self._handlers = handlers
        self._settings = settings
        self._metrics = metrics
        self._config_status = config_status
        self._url_map = _url_map()

    def __call__(self, environ: dict, start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        started = time.perf_counter()
        content_type = JSON
        try:
            status, body, content_type = 200, *self._dispatch(request, started)
        except Exception as exc:
            status, body = status_and_body(exc)
        response = Response(body, status=status, content_type=content_type)
        logger.debug(
            "%s %s %d %.1fms",
            request.method,
            request.path,
            status,
            (time.perf_counter() - started) * 1000,
        )
        return response(environ, start_response)

    def _dispatch(self, request: Request, started: float) -> tuple[bytes, str]:
        adapter = self._url_map.bind_to_environ(request.environ)
        try:
            endpoint, args = adapter.match()
        except HTTPException:
            if request.path.rstrip("/").lower() == "/v1/models":
                raise InvalidArgumentError("Missing model name in request.") from None
            if request.path.lower().startswith("/v1/"):
                # TF Serving answers every unmatched /v1/ request this way (400).
                raise InvalidArgumentError(
                    f"Malformed request: {request.method} {request.path}"
                ) from None
            raise NotFoundError(
                f"No such path: {request.method} {request.path}; TF Serving's REST API is "
                "under /v1/models/NAME"
            ) from None
        if endpoint == "metrics":
            return self._metrics.render(), PROMETHEUS
        if endpoint == "config":
            return orjson.dumps(self._config_status()), JSON
        name, version, label = args["name"], args.get("version"), args.get("label")
        if version is not None and version > MAX_VERSION:
            raise InvalidArgumentError(f"Failed to convert version: {version} to numeric.")
        if endpoint == "status":
            return self._handlers.status(name, version, label), JSON
        if endpoint == "metadata":
            return self._handlers.metadata(name, version, label), JSON
        api = args["verb"]
        code = "OK"
        try:
            body = read_body(request, self._settings.max_body_bytes)
            return getattr(self._handlers, api)(body, name, version, label), JSON
        except (ServingError, CodecError) as exc:
            code = exc.code
            raise
        except Exception:
            code = "UNKNOWN"
            raise
        finally:
            self._metrics.record_request(name, api, code, time.perf_counter() - started)


def create_app(
    registry: ModelRegistry,
    settings: Settings,
    *,
    pools: ModelPools | None = None,
    metrics: Metrics | None = None,
    config_status: Callable[[], dict] = dict,
) -> GraphServiceApp:
    """The WSGI app; per-model call slots and metrics are made here unless given."""
    if pools is None:
        limit = settings.model_max_inflight

        def slots() -> int:
            return limit or default_limit(settings.rest_api_num_threads, len(registry.names()))

        pools = ModelPools(slots)
    metrics = metrics or Metrics()
    handlers = Handlers(registry, pools, metrics)
    return GraphServiceApp(handlers, settings, metrics, config_status)

"""The Flask app factory: settings in, a ready application out.

Everything is loaded here, once per process (under gunicorn's preload_app: once, in the
master, before the workers fork), and kept on `app.extensions["logic_service"]`.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import orjson
from flask import Blueprint, Flask, Response, current_app, g, request

from logic_service.config import ServiceConfig, load_config
from logic_service.errors import ConfigError
from logic_service.graph.address import validate_url
from logic_service.graph.client import GraphClient
from logic_service.http.codecs import encode_body
from logic_service.http.drain import refuse_if_draining
from logic_service.http.error_handlers import register_error_handlers
from logic_service.http.openapi import routes as openapi_routes
from logic_service.http.request_log import (
    REQUEST_ID_HEADER,
    RequestInfo,
    configure_logging,
)
from logic_service.http.score_endpoint import ScoreEndpoint
from logic_service.metrics import Metrics
from logic_service.pipeline.loader import load_pipelines
from logic_service.scoring import Scorer
from logic_service.settings import Settings
from logic_service.traffic.reload import FileState, TrafficReloader

log = logging.getLogger(__name__)

EXTENSION = "logic_service"

routes = Blueprint("logic_service", __name__)


@dataclass
class ServiceState:
    """Per-app state the views read: settings, parsed file, data plane, metrics."""

    settings: Settings
    config: ServiceConfig
    scorer: Scorer
    metrics: Metrics
    reloader: TrafficReloader


def create_app(settings: Settings | None = None) -> Flask:
    """Build the app; raises ConfigError (the service must not start) on any bad artifact."""
    settings = settings if settings is not None else Settings.from_env()
    configure_logging(settings.json_logs)
    started_from = FileState.read(settings.config_path)  # before parsing: a later edit is seen
    config = load_config(settings.config_path)
    if settings.compiled_dir is not None:
        config = dataclasses.replace(config, compiled_dir=settings.compiled_dir)
    pipelines = load_pipelines(config)
    graph_url = settings.graph_service_url or config.graph_service_url
    graph_backed = [p.name for p in pipelines.values() if p.graph_backed]
    if graph_backed and not graph_url:
        raise ConfigError(
            f"pipeline(s) {', '.join(graph_backed)} use graph_model but no graph address is "
            "set: add graph_service_url to the pipeline file or set GRAPH_SERVICE_URL"
        )
    client = None
    if graph_backed:
        assert graph_url is not None
        source = (
            "GRAPH_SERVICE_URL"
            if settings.graph_service_url
            else f"{config.path}: graph_service_url"
        )
        graph_url = validate_url(graph_url, source)
        client = GraphClient(
            graph_url,
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            connect_retries=settings.connect_retries,
            pool_size=settings.pool_size,
        )
    metrics = Metrics()
    for pipeline in pipelines.values():
        metrics.watch(pipeline)
    scorer = Scorer(pipelines, client, config.default, settings, metrics)
    for name, problem in scorer.load_signatures().items():
        log.warning(
            "graph %s: signature not read yet (%s); read again in the background, "
            "/ready says 503 until then",
            name,
            problem,
        )
    reloader = TrafficReloader(
        config, scorer.traffic, started_from, poll_seconds=settings.traffic_poll_seconds
    )
    reloader.start(min(5.0, settings.read_timeout))

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_content_length
    app.extensions[EXTENSION] = ServiceState(settings, config, scorer, metrics, reloader)
    register_error_handlers(app)
    # POST /get_score is served before Flask: the hot path (score_endpoint.py).
    app.wsgi_app = ScoreEndpoint(  # type: ignore[method-assign]
        app.wsgi_app,
        scorer,
        metrics,
        max_content_length=settings.max_content_length,
        request_timeout=settings.request_timeout,
    )
    app.register_blueprint(routes)
    app.register_blueprint(openapi_routes)
    app.before_request(_begin)
    app.after_request(_finish)
    log.info(
        "logic service ready to serve %d pipeline(s) from %s (graph tier: %s)",
        len(pipelines),
        config.path,
        graph_url if graph_backed else "not used",
    )
    return app


def warm_up(app: Flask) -> None:
    """Per-process start-up after gunicorn's fork: the compiled pipelines' onnxruntime sessions,
    so a worker's first request does not pay for them."""
    for pipeline in app.extensions[EXTENSION].scorer.pipelines.values():
        pipeline.open_sessions()


def traffic_reloader(app: Flask) -> TrafficReloader:
    """The app's traffic reloader, for gunicorn's hooks (SIGHUP in the master, the workers'
    followers): logic_service/traffic/reload.py."""
    return app.extensions[EXTENSION].reloader


def _state() -> ServiceState:
    return current_app.extensions[EXTENSION]


def _json(payload: object, status: int = 200) -> Response:
    return Response(encode_body(payload), status=status, mimetype="application/json")


@routes.get("/health")
def health() -> Response:
    """Liveness: the process is up and its artifacts are loaded (they are, or it would not be)."""
    names = list(_state().scorer.pipelines)
    return _json({"msg": "alive", "code": 200, "data": {"status": "up", "pipelines": names}})


@routes.get("/ready")
def ready() -> Response:
    """Readiness: this pod can do its own work (artifacts loaded, each graph signature read
    once). The graph's health is the breakers' job: reported in `data.graph`, never a
    reason to leave the Service. Never calls the graph, never waits on a lock."""
    refuse_if_draining(request.environ)
    readiness = _state().scorer.readiness()
    data = {"pipelines": readiness.reasons, "graph": readiness.targets}
    if not readiness.ready:
        failing = "; ".join(
            f"pipeline {name!r}: {reason}"
            for name, reason in readiness.reasons.items()
            if reason != "ready"
        )
        return _json({"msg": f"not ready: {failing}", "code": 503, "data": data}, 503)
    return _json({"msg": "ready", "code": 200, "data": data})


@routes.get("/pipelines")
def pipelines() -> Response:
    scorer = _state().scorer
    snapshot = scorer.traffic.snapshot()
    data = {
        "default": scorer.default,
        "pipelines": [
            scorer.describe(pipeline, snapshot) for pipeline in scorer.pipelines.values()
        ],
    }
    return _json({"msg": "Successful!", "code": 200, "data": data})


@routes.get("/metrics")
def metrics() -> Response:
    body, content_type = _state().metrics.exposition()
    return Response(body, content_type=content_type)


def _begin() -> None:
    g.info = RequestInfo.begin(request.headers.get(REQUEST_ID_HEADER))


def _finish(response: Response) -> Response:
    """Stamp the request id, time the request, write its one log line (the routes Flask
    serves; POST /get_score has its own in ScoreEndpoint)."""
    info: RequestInfo | None = g.get("info")
    if info is None:  # a hook before ours failed: still answer with an id and a log line
        info = RequestInfo.begin(None)
    response.headers[REQUEST_ID_HEADER] = info.request_id
    status = response.status_code
    error = None
    if status >= 400 and response.mimetype == "application/json":
        try:
            error = orjson.loads(response.get_data()).get("msg")
        except (orjson.JSONDecodeError, AttributeError):
            error = None
    info.finish(request.method, request.path, status, error)
    return response

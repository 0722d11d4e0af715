"""TF Serving's gRPC API (PredictionService, ModelService) over the same registry as REST.

Runs in the gunicorn worker that loaded the models, beside the REST threads: a grpc.server
must be created after the fork, and sharing the process means one copy of every model.
The servicers subclass tensorflow-serving-api's generated base classes; each method reads
top to bottom (resolve the servable, decode, run, encode) and every failure goes through
`grpc_errors`, so one bad call ends that call only. Model calls take the same per-model
slots as REST (`handlers.run_model`: RESOURCE_EXHAUSTED when a model's slots are full) and
are counted in the same metrics with entrypoint "GRPC", under TF Serving's gRPC API names
(Predict, Classify, Regress; prediction_service_impl.cc). Method names are the proto's (N802).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from converters.errors import ConverterError
from converters.models_config import ModelsConfig, validate_model_name
from graph_service.errors import InvalidArgumentError, NotFoundError, ServingError
from graph_service.grpc import codec as grpc_codec
from graph_service.grpc.errors import canonical_code, reports_errors
from graph_service.metrics import Metrics
from graph_service.models.pools import ModelPools
from graph_service.models.registry import ModelRegistry
from graph_service.models.servable import CLASSIFY_METHOD, REGRESS_METHOD, Servable
from graph_service.models.watcher import ConfigWatcher
from graph_service.ports import grpc_port_error
from graph_service.rest.handlers import (
    classification_outputs,
    example_input,
    regression_outputs,
    run_model,
)
from tfs_protocol.constants import DEFAULT_SIGNATURE

logger = logging.getLogger(__name__)

# grpcio reports "no deadline" as None or as a remaining time of centuries.
_NO_DEADLINE_SECONDS = 10 * 365 * 24 * 3600
# Seconds in-flight calls get to finish on SIGTERM; fits in gunicorn's graceful_timeout.
STOP_GRACE_SECONDS = 5.0


class GrpcStartError(Exception):
    """The gRPC port cannot be opened; the message says which and what to do."""


def resolve(registry: ModelRegistry, request: Any) -> Servable:
    """The servable a request's model_spec addresses (latest, a version, or a label).

    A version that exists but failed to load answers FAILED_PRECONDITION, as TF Serving
    does for a model that could not be loaded; unknown models and versions are NOT_FOUND.
    """
    if not request.HasField("model_spec"):
        raise InvalidArgumentError("Missing ModelSpec")
    spec = request.model_spec
    version = spec.version.value if spec.WhichOneof("version_choice") == "version" else None
    label = spec.version_label if spec.WhichOneof("version_choice") == "version_label" else None
    try:
        return registry.servable(spec.name, version, label)
    except NotFoundError as exc:
        failure = _load_failure(registry, spec.name, version)
        if failure is None:
            raise
        raise ServingError(f"{exc.message}: {failure}", "FAILED_PRECONDITION") from None


def _load_failure(registry: ModelRegistry, name: str, version: int | None) -> str | None:
    """Why the addressed version is not served, when it is because it failed to load."""
    try:
        statuses = registry.status(name)["model_version_status"]
    except ServingError:
        return None
    if version is None and any(s["state"] == "AVAILABLE" for s in statuses):
        return None
    failed = [
        s
        for s in statuses
        if s["status"]["error_code"] != "OK" and (version is None or s["version"] == str(version))
    ]
    if not failed:
        return None
    first = failed[0]
    return f"version {first['version']} failed to load: {first['status']['error_message']}"


def run_timeout_ms(context: grpc.ServicerContext) -> int:
    """The run's RunOptions.timeout_in_ms for a gRPC call: what is left of the caller's
    deadline, as TF Serving sets it (prediction_service_impl.cc); 0 (no limit) without one.
    --rest_api_timeout_in_ms is REST's alone."""
    remaining = context.time_remaining()
    if remaining is None or remaining > _NO_DEADLINE_SECONDS:
        return 0
    return max(1, int(remaining * 1000))


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Predict, Classify, Regress, MultiInference and GetModelMetadata."""

    def __init__(self, registry: ModelRegistry, pools: ModelPools, metrics: Metrics) -> None:
        self._registry = registry
        self._pools = pools
        self._metrics = metrics

    @contextmanager
    def _counted(self, model: str, api: str) -> Iterator[None]:
        """request_count and request_latency for one call, whatever code it ends with."""
        started = time.perf_counter()
        code = "OK"
        try:
            yield
        except Exception as exc:
            code = canonical_code(exc)
            raise
        finally:
            seconds = time.perf_counter() - started
            self._metrics.record_request(model, api, code, seconds, entrypoint="GRPC")

    @reports_errors
    def Predict(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        with self._counted(request.model_spec.name, "Predict"):
            servable = resolve(self._registry, request)
            key = request.model_spec.signature_name or DEFAULT_SIGNATURE
            if key not in servable.signature_defs:
                # predict_util.cc answers a missing signature with FAILED_PRECONDITION.
                raise ServingError(
                    f'Serving signature key "{key}" not found.', "FAILED_PRECONDITION"
                )
            signature = servable.signature(key)
            inputs = grpc_codec.decode_inputs(request.inputs, signature)
            aliases = grpc_codec.output_aliases(request.output_filter, signature)
            outputs = self._run(servable, key, inputs, "Predict", run_timeout_ms(context))
            response = predict_pb2.PredictResponse()
            grpc_codec.fill_model_spec(response.model_spec, servable.name, servable.version, key)
            for alias in aliases:
                grpc_codec.encode_tensor(outputs[alias], response.outputs[alias])
            return response

    @reports_errors
    def Classify(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        response = classification_pb2.ClassificationResponse()
        return self._one_task(request, "Classify", self._classify, response, context)

    @reports_errors
    def Regress(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        response = regression_pb2.RegressionResponse()
        return self._one_task(request, "Regress", self._regress, response, context)

    def _one_task(
        self,
        request: Any,
        method: str,
        run: Callable[[Any, str, Any, Any, int], None],
        response: Any,
        context: grpc.ServicerContext,
    ) -> Any:
        """Classify and Regress: one signature over `request.input` into `response.result`."""
        with self._counted(request.model_spec.name, method):
            servable = resolve(self._registry, request)
            key = request.model_spec.signature_name or DEFAULT_SIGNATURE
            run(servable, key, request.input, response.result, run_timeout_ms(context))
            grpc_codec.fill_model_spec(response.model_spec, servable.name, servable.version, key)
            return response

    @reports_errors
    def MultiInference(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        """Several classify/regress signatures of one model over one input (multi_inference.cc)."""
        model = request.tasks[0].model_spec.name if request.tasks else ""
        with self._counted(model, "MultiInference"):
            return self._multi_inference(request, run_timeout_ms(context))

    def _multi_inference(self, request: Any, timeout_ms: int) -> Any:
        if not request.tasks:
            raise InvalidArgumentError("Expected at least one task")
        servable = resolve(self._registry, request.tasks[0])
        seen: set[str] = set()
        for task in request.tasks:
            if not task.model_spec.name:
                raise InvalidArgumentError("Found ModelSpec with an empty model name.")
            if task.model_spec.name != request.tasks[0].model_spec.name:
                raise InvalidArgumentError(
                    "All ModelSpecs in a MultiInferenceRequest must access the same model name."
                )
            key = task.model_spec.signature_name or DEFAULT_SIGNATURE
            if key in seen:
                raise InvalidArgumentError(f"Duplicate evaluation of signature: {key}")
            seen.add(key)
            if task.method_name not in (CLASSIFY_METHOD, REGRESS_METHOD):
                raise ServingError(
                    f"Unsupported signature method_name: {task.method_name}", "UNIMPLEMENTED"
                )
        response = inference_pb2.MultiInferenceResponse()
        for task in request.tasks:
            key = task.model_spec.signature_name or DEFAULT_SIGNATURE
            result = response.results.add()
            if task.method_name == CLASSIFY_METHOD:
                self._classify(
                    servable, key, request.input, result.classification_result, timeout_ms
                )
            else:
                self._regress(servable, key, request.input, result.regression_result, timeout_ms)
            grpc_codec.fill_model_spec(result.model_spec, servable.name, servable.version, key)
        return response

    @reports_errors
    def GetModelMetadata(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        if not request.HasField("model_spec"):
            raise InvalidArgumentError("Missing ModelSpec")
        if not request.metadata_field:
            raise InvalidArgumentError(
                "GetModelMetadataRequest must specify at least one metadata_field"
            )
        for field in request.metadata_field:
            if field != "signature_def":
                raise InvalidArgumentError(f"Metadata field {field} is not supported")
        servable = resolve(self._registry, request)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        grpc_codec.fill_model_spec(response.model_spec, servable.name, servable.version)
        response.metadata["signature_def"].Pack(
            grpc_codec.signature_def_map(servable.signature_defs)
        )
        return response

    def _run(self, servable: Servable, key: str, inputs: dict, api: str, timeout_ms: int) -> dict:
        """The model call, in one of the model's slots shared with REST."""
        return run_model(
            servable,
            key,
            inputs,
            api,
            pools=self._pools,
            metrics=self._metrics,
            timeout_ms=timeout_ms,
        )

    def _classify(
        self, servable: Servable, key: str, input_proto: Any, result: Any, timeout_ms: int
    ) -> None:
        input_key = example_input(servable, key, CLASSIFY_METHOD, "classification")
        examples = grpc_codec.serialized_examples(input_proto)
        outputs = self._run(servable, key, {input_key: examples}, "Classify", timeout_ms)
        classes, scores = classification_outputs(outputs)
        grpc_codec.fill_classification(result, classes, scores)

    def _regress(
        self, servable: Servable, key: str, input_proto: Any, result: Any, timeout_ms: int
    ) -> None:
        input_key = example_input(servable, key, REGRESS_METHOD, "regression")
        examples = grpc_codec.serialized_examples(input_proto)
        outputs = self._run(servable, key, {input_key: examples}, "Regress", timeout_ms)
        values = regression_outputs(outputs)
        grpc_codec.fill_regression(result, values)


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    """GetModelStatus, and HandleReloadConfigRequest through the config watcher's path."""

    def __init__(self, registry: ModelRegistry, watcher: ConfigWatcher) -> None:
        self._registry = registry
        self._watcher = watcher

    @reports_errors
    def GetModelStatus(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        if not request.HasField("model_spec"):
            raise InvalidArgumentError("Missing ModelSpec")
        spec = request.model_spec
        choice = spec.WhichOneof("version_choice")
        status = self._registry.status(
            spec.name,
            spec.version.value if choice == "version" else None,
            spec.version_label if choice == "version_label" else None,
        )
        response = get_model_status_pb2.GetModelStatusResponse()
        grpc_codec.fill_model_status(response, status)
        return response

    @reports_errors
    def HandleReloadConfigRequest(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        """Serve a new ModelServerConfig; answers once its models are loaded or have failed."""
        config = request.config
        if config.WhichOneof("config") != "model_config_list":
            raise InvalidArgumentError(
                "ServerModelConfig type not supported by HandleReloadConfigRequest. "
                "Only ModelConfigList is currently supported"
            )
        entries = ModelsConfig(Path("HandleReloadConfigRequest"), config).entries
        names = [entry.name for entry in entries]
        for entry in entries:
            if names.count(entry.name) > 1:
                raise InvalidArgumentError(f"Illegal to list model {entry.name} multiple times")
            try:
                validate_model_name(entry.name)
            except ConverterError as exc:
                raise InvalidArgumentError(str(exc)) from None
            if not entry.base_path:
                raise InvalidArgumentError(f"Model {entry.name}: base_path is empty")
            if entry.model_platform != "tensorflow":
                raise InvalidArgumentError(
                    f"Model {entry.name}: unsupported model_platform "
                    f'"{entry.model_platform}"; graph-service serves "tensorflow" SavedModels'
                )
        logger.info("HandleReloadConfigRequest: serving %s", ", ".join(names) or "no models")
        self._watcher.apply(entries)
        failed = [name for name in self._registry.unavailable_models() if name in names]
        if failed:
            details = ", ".join(
                f"{{{name}: {self._registry.load_errors(name) or 'no version folders'}}}"
                for name in failed
            )
            raise ServingError(
                f"{len(failed)} model(s) did not become available: {{{details}}}", "UNKNOWN"
            )
        response = model_management_pb2.ReloadConfigResponse()
        grpc_codec.fill_status(response.status, "OK", "")
        return response


class GrpcServer:
    """A started grpc.server bound to one port; `stop` gives in-flight calls a grace period."""

    def __init__(self, server: grpc.Server, port: int) -> None:
        self._server = server
        self.port = port
        self._stopped: threading.Event | None = None

    @classmethod
    def start(
        cls,
        registry: ModelRegistry,
        watcher: ConfigWatcher,
        *,
        pools: ModelPools,
        metrics: Metrics,
        host: str,
        port: int,
        max_threads: int,
        max_message_bytes: int,
    ) -> GrpcServer:
        """Create, bind and start the server (call after the fork, in the serving process)."""
        server = grpc.server(
            ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix="graph-grpc"),
            options=[
                # Without this, a second server could bind the same port and share its calls.
                ("grpc.so_reuseport", 0),
                ("grpc.max_receive_message_length", max_message_bytes),
                ("grpc.max_send_message_length", -1),
            ],
        )
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            PredictionServicer(registry, pools, metrics), server
        )
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(
            ModelServicer(registry, watcher), server
        )
        address = f"{host}:{port}"
        try:
            bound = server.add_insecure_port(address)
        except RuntimeError as exc:
            raise GrpcStartError(grpc_port_error(address, exc)) from None
        if not bound:
            raise GrpcStartError(grpc_port_error(address))
        server.start()
        logger.info("gRPC API (PredictionService, ModelService) on %s", address)
        return cls(server, bound)

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> threading.Event:
        """Refuse new calls now; calls in flight get `grace` seconds. Safe to call twice."""
        if self._stopped is None:
            logger.info("gRPC server stopping (grace %.0fs)", grace)
            self._stopped = self._server.stop(grace)
        return self._stopped

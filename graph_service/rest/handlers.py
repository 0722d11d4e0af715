"""The request paths of the REST API, each readable top to bottom: parse, resolve, run, encode.

Order follows TF Serving's http_rest_api_handler.cc: the body is parsed before the servable
is resolved, so a malformed body is a 400 whatever the model.
"""

from __future__ import annotations

import time

import numpy as np

from graph_service.errors import InvalidArgumentError
from graph_service.metrics import Metrics
from graph_service.models.metadata import model_metadata
from graph_service.models.pools import ModelPools
from graph_service.models.registry import ModelRegistry
from graph_service.models.servable import CLASSIFY_METHOD, REGRESS_METHOD, Servable
from graph_service.rest import example_codec
from tfs_protocol import json_codec as codecs


class Handlers:
    """Endpoints bound to one registry, the per-model call slots and the metrics."""

    def __init__(self, registry: ModelRegistry, pools: ModelPools, metrics: Metrics) -> None:
        self._registry = registry
        self._pools = pools
        self._metrics = metrics

    def status(self, name: str, version: int | None, label: str | None) -> bytes:
        return codecs.encode_json(self._registry.status(name, version, label))

    def metadata(self, name: str, version: int | None, label: str | None) -> bytes:
        servable = self._registry.servable(name, version, label)
        return codecs.encode_json(model_metadata(servable))

    def predict(self, body: bytes, name: str, version: int | None, label: str | None) -> bytes:
        doc = codecs.parse_json(body)
        servable = self._registry.servable(name, version, label)
        signature = codecs.signature_name(doc)
        fmt, inputs = codecs.decode_predict_request(doc, servable.input_dtypes(signature))
        outputs = self._run(servable, signature, inputs, "predict")
        return codecs.encode_predict_response(outputs, fmt)

    def classify(self, body: bytes, name: str, version: int | None, label: str | None) -> bytes:
        doc = codecs.parse_json(body)
        servable = self._registry.servable(name, version, label)
        signature = codecs.signature_name(doc)
        input_key = example_input(servable, signature, CLASSIFY_METHOD, "classification")
        outputs = self._run(
            servable, signature, {input_key: example_codec.decode_examples(doc)}, "classify"
        )
        return codecs.encode_classification(*classification_outputs(outputs))

    def regress(self, body: bytes, name: str, version: int | None, label: str | None) -> bytes:
        doc = codecs.parse_json(body)
        servable = self._registry.servable(name, version, label)
        signature = codecs.signature_name(doc)
        input_key = example_input(servable, signature, REGRESS_METHOD, "regression")
        outputs = self._run(
            servable, signature, {input_key: example_codec.decode_examples(doc)}, "regress"
        )
        return codecs.encode_regression(regression_outputs(outputs))

    def _run(
        self, servable: Servable, signature: str, inputs: dict[str, np.ndarray], api: str
    ) -> dict:
        return run_model(servable, signature, inputs, api, pools=self._pools, metrics=self._metrics)


def run_model(
    servable: Servable,
    signature: str,
    inputs: dict[str, np.ndarray],
    api: str,
    *,
    pools: ModelPools,
    metrics: Metrics,
    timeout_ms: int | None = None,
) -> dict[str, np.ndarray]:
    """Call the model in one of its slots (429 when none is free); TF enforces the deadline
    (REST's, or `timeout_ms` for a gRPC caller's own).

    The one way both fronts (REST and gRPC) run a model, so they share the per-model slots.
    """
    with pools.slot(servable.name):
        started = time.perf_counter()
        outputs = servable.run(signature, inputs, timeout_ms)
    metrics.record_runtime(servable.name, api, time.perf_counter() - started)
    return outputs


def example_input(servable: Servable, signature: str, method: str, kind: str) -> str:
    """The one string input key of a classify/regress signature, checked as TF Serving does.

    Shared by the REST and gRPC fronts, so both refuse the same signatures the same way.
    """
    sig = servable.signature(signature)
    if sig.method_name != method:
        raise InvalidArgumentError(
            f"Expected {kind} signature method_name to be {method}. Was: {sig.method_name}"
        )
    if len(sig.inputs) != 1:
        raise InvalidArgumentError("Expected one input Tensor.")
    return next(iter(sig.inputs))


def classification_outputs(
    outputs: dict[str, np.ndarray],
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(classes, scores) of a classify signature's outputs; either may be absent, not both."""
    classes, scores = outputs.get("classes"), outputs.get("scores")
    if classes is None and scores is None:
        raise InvalidArgumentError(
            "Expected classification signature outputs 'classes' and/or 'scores'"
        )
    for tensor in (classes, scores):
        if tensor is not None and tensor.ndim != 2:
            raise InvalidArgumentError(
                f"Expected classification output shape [batch_size, num_classes], got {list(tensor.shape)}"
            )
    return classes, scores


def regression_outputs(outputs: dict[str, np.ndarray]) -> np.ndarray:
    """The `outputs` tensor of a regress signature, [batch_size] or [batch_size, 1]."""
    values = outputs.get("outputs")
    if values is None:
        raise InvalidArgumentError("Expected regression signature output 'outputs'")
    if not (values.ndim == 1 or (values.ndim == 2 and values.shape[1] == 1)):
        raise InvalidArgumentError(
            "Expected output Tensor shape to be either [batch_size] or [batch_size, 1] "
            f"but got {list(values.shape)}"
        )
    return values

"""The request paths of the REST API, each readable top to bottom: parse, resolve, run, encode.

Order follows TF Serving's http_rest_api_handler.cc: the body is parsed before the servable
is resolved, so a malformed body is a 400 whatever the model.
"""

from __future__ import annotations

import time

import numpy as np

from graph_service import example_codec
from graph_service.errors import InvalidArgumentError
from graph_service.metadata import model_metadata
from graph_service.metrics import Metrics
from graph_service.pools import ModelPools
from graph_service.registry import ModelRegistry
from graph_service.servable import CLASSIFY_METHOD, REGRESS_METHOD, Servable
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
        signature, input_key = _example_signature(servable, doc, CLASSIFY_METHOD, "classification")
        outputs = self._run(
            servable, signature, {input_key: example_codec.decode_examples(doc)}, "classify"
        )
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
        return codecs.encode_classification(classes, scores)

    def regress(self, body: bytes, name: str, version: int | None, label: str | None) -> bytes:
        doc = codecs.parse_json(body)
        servable = self._registry.servable(name, version, label)
        signature, input_key = _example_signature(servable, doc, REGRESS_METHOD, "regression")
        outputs = self._run(
            servable, signature, {input_key: example_codec.decode_examples(doc)}, "regress"
        )
        values = outputs.get("outputs")
        if values is None:
            raise InvalidArgumentError("Expected regression signature output 'outputs'")
        if not (values.ndim == 1 or (values.ndim == 2 and values.shape[1] == 1)):
            raise InvalidArgumentError(
                "Expected output Tensor shape to be either [batch_size] or [batch_size, 1] "
                f"but got {list(values.shape)}"
            )
        return codecs.encode_regression(values)

    def _run(
        self, servable: Servable, signature: str, inputs: dict[str, np.ndarray], api: str
    ) -> dict:
        """Call the model in one of its slots (429 when none is free); TF enforces the deadline."""
        with self._pools.slot(servable.name):
            started = time.perf_counter()
            outputs = servable.run(signature, inputs)
        self._metrics.record_runtime(servable.name, api, time.perf_counter() - started)
        return outputs


def _example_signature(servable: Servable, doc: dict, method: str, kind: str) -> tuple[str, str]:
    """(signature key, its one string input key), checked as TF Serving checks them."""
    signature = codecs.signature_name(doc)
    sig = servable.signature(signature)
    if sig.method_name != method:
        raise InvalidArgumentError(
            f"Expected {kind} signature method_name to be {method}. Was: {sig.method_name}"
        )
    if len(sig.inputs) != 1:
        raise InvalidArgumentError("Expected one input Tensor.")
    return signature, next(iter(sig.inputs))

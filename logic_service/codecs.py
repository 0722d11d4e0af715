"""Wire formats: our `/get_score` JSON, and TF Serving's predict request/response.

The TF Serving half (dtypes, the signature model, the predict codec) is `tfs_protocol`, the
package graph-service uses too, re-exported here so logic-tier code keeps importing from one
module; this module adds the logic tier's policies and errors on top. numpy + orjson only
(never TensorFlow).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from logic_service.errors import BadRequestError, GraphRejectedError, UnsupportedMediaTypeError
from tfs_protocol import json_codec
from tfs_protocol.dtypes import NUMPY_DTYPES
from tfs_protocol.errors import CodecError
from tfs_protocol.signature import Signature, TensorSpec
from tfs_protocol.signature import decode_signature as _decode_signature

__all__ = ["TF_DTYPES", "Signature", "TensorSpec"]

SUCCESS_MSG = "Successful!"
_NUMPY = orjson.OPT_SERIALIZE_NUMPY

# TF Serving's `DataType` names (metadata `dtype`) -> the numpy dtype to send (shared table).
TF_DTYPES: dict[str, np.dtype] = NUMPY_DTYPES


@dataclass(frozen=True)
class ScoreRequest:
    """A decoded `/get_score` body: the optional pipeline name and the raw `data`."""

    model: str | None
    data: Any


def is_json_content_type(content_type: str | None) -> bool:
    """application/json or any `+json` type; a missing header is accepted (curl -d, recipes)."""
    if not content_type:
        return True
    mimetype = content_type.split(";", 1)[0].strip().lower()
    return mimetype == "application/json" or mimetype.endswith("+json")


def decode_score_request(body: bytes, content_type: str | None) -> ScoreRequest:
    """Parse `{"data": ..., "model": ...}`; 415 for non-JSON, 400 for a malformed body."""
    if not is_json_content_type(content_type):
        raise UnsupportedMediaTypeError(
            f"Content-Type {content_type!r} is not JSON: send application/json "
            'with a body like {"data": [{"column": value, ...}]}'
        )
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise BadRequestError(f"request body is not valid JSON: {error}") from None
    if not isinstance(payload, dict) or "data" not in payload:
        raise BadRequestError(
            'request body must be a JSON object with a "data" field: a list of records, '
            "an object of columns, or one record"
        )
    model = payload.get("model")
    if model is not None and not isinstance(model, str):
        raise BadRequestError(f'"model" must be a pipeline name (a string), got {model!r}')
    return ScoreRequest(model=model, data=payload["data"])


def encode_score_response(data: Any) -> bytes:
    """The recipe's success body; numpy arrays and scalars go through orjson natively."""
    if isinstance(data, np.ndarray):
        data = np.ascontiguousarray(data)
    return orjson.dumps(
        {"msg": SUCCESS_MSG, "code": 200, "data": data}, option=_NUMPY, default=_fallback
    )


def encode_body(payload: Any) -> bytes:
    """Any other JSON body the service returns (health, pipelines)."""
    return orjson.dumps(payload, option=_NUMPY, default=_fallback)


def encode_predict_request(signature_name: str, inputs: dict[str, np.ndarray]) -> bytes:
    """TF Serving columnar request: `{"signature_name": ..., "inputs": {name: tensor}}`.

    String inputs (object arrays) go as text or `{"b64": ...}`. Non-finite features are a
    logic-tier policy, not a protocol limit: they mean preprocessing left a gap, so they are
    refused here rather than scored.
    """
    for name, array in inputs.items():
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise BadRequestError(
                f"input {name!r} holds NaN or infinity after preprocessing; impute missing "
                "values in the transformer or send complete records"
            )
    try:
        return json_codec.encode_predict_request(inputs, signature_name)
    except CodecError as exc:
        raise BadRequestError(str(exc)) from None


def decode_predict_response(
    body: bytes, output: str | None, output_dtypes: dict[str, str] | None = None
) -> Any:
    """`{"outputs": tensor | {name: tensor}}` -> ndarray (or dict of ndarrays).

    NaN/Infinity literals, as TF Serving writes them, are read; strings come back as bytes.
    `output_dtypes` ({key: "DT_..."}, from the Signature) gives each tensor its exact dtype.
    """
    try:
        outputs = json_codec.decode_predict_response(body, output_dtypes)
    except CodecError as exc:
        if "neither 'outputs' nor 'predictions'" in str(exc) or "Parse error" in str(exc):
            raise GraphRejectedError(
                f"graph tier answered 200 without an 'outputs' field: {body[:200]!r}"
            ) from None
        raise GraphRejectedError(f"graph tier answer does not fit its signature: {exc}") from None
    if isinstance(outputs, dict):
        if output is not None:
            if output not in outputs:
                raise GraphRejectedError(
                    f"graph output {output!r} not in the response (has: {', '.join(outputs)})"
                )
            return outputs[output]
        if len(outputs) == 1:
            return next(iter(outputs.values()))
        return outputs
    return outputs


def decode_signature(payload: dict[str, Any], signature_name: str) -> Signature:
    """Pick `signature_name` out of TF Serving's metadata response."""
    try:
        signature = _decode_signature(payload, signature_name)
        for spec in signature.inputs.values():
            spec.require_dtype()
    except CodecError as exc:
        hint = "; fix signature_name in the pipeline file" if "no signature" in str(exc) else ""
        raise GraphRejectedError(f"graph tier {exc}{hint}") from None
    return signature


def _fallback(value: Any) -> Any:
    """orjson's `default`: pandas objects and non-contiguous arrays become plain lists."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if hasattr(value, "to_dict") and hasattr(value, "columns"):
        return value.to_dict(orient="list")
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot serialise {type(value).__name__} to JSON")

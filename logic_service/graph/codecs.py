"""TF Serving's wire format as the logic tier speaks it: the predict request and response.

The protocol itself (dtypes, the signature model, the JSON codec) is `tfs_protocol`, the
package graph-service uses too; this module adds the logic tier's policies and errors on top
(non-finite features refused, an answer without outputs is a 502). numpy only, never
TensorFlow. Our own `/get_score` body is `logic_service.http.codecs`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from logic_service.errors import BadRequestError, GraphRejectedError
from tfs_protocol import json_codec
from tfs_protocol.dtypes import NUMPY_DTYPES
from tfs_protocol.errors import CodecError
from tfs_protocol.signature import Signature, TensorSpec
from tfs_protocol.signature import decode_signature as _decode_signature

__all__ = ["TF_DTYPES", "Signature", "TensorSpec"]

# TF Serving's `DataType` names (metadata `dtype`) -> the numpy dtype to send (shared table).
TF_DTYPES: dict[str, np.dtype] = NUMPY_DTYPES


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

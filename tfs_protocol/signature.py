"""The signature model both tiers share: a SignatureDef's inputs and outputs as plain data.

Built from TF Serving's metadata JSON (`GET /v1/models/NAME/metadata`, the logic tier) or from
the SignatureDef protos of a loaded SavedModel (the graph tier, which has TensorFlow), so a
dtype or shape is read the same way on both sides of the wire.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tfs_protocol.constants import PREDICT_METHOD
from tfs_protocol.dtypes import NUMPY_DTYPES
from tfs_protocol.errors import CodecError


@dataclass(frozen=True)
class TensorSpec:
    """One signature input or output.

    `dtype` is the numpy dtype the JSON API carries it as (None when TF Serving's JSON has no
    form for it, e.g. DT_COMPLEX64); `tf_dtype` the `DT_...` name; `shape` None when the rank
    is unknown, -1 for an unknown dimension; `tensor_name` the graph tensor ("x:0").
    """

    name: str
    dtype: np.dtype | None
    shape: tuple[int, ...] | None
    tf_dtype: str = ""
    tensor_name: str = ""

    def __post_init__(self) -> None:
        if not self.tf_dtype and self.dtype is not None:
            from tfs_protocol.dtypes import tf_dtype_name

            object.__setattr__(self, "tf_dtype", tf_dtype_name(self.dtype))

    def require_dtype(self) -> np.dtype:
        """The numpy dtype, or a CodecError naming the TF dtype JSON cannot carry."""
        if self.dtype is None:
            raise CodecError(
                f"tensor {self.name!r} has dtype {self.tf_dtype}, which TF Serving's JSON API "
                "cannot carry; change the signature or call the model over gRPC",
                "UNIMPLEMENTED",
            )
        return self.dtype


@dataclass(frozen=True)
class Signature:
    """A SignatureDef: its key, inputs and outputs by key, and method name."""

    name: str
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]
    method_name: str = field(default=PREDICT_METHOD)

    def input_dtypes(self) -> dict[str, str]:
        """{input key: 'DT_...'} in key order, as the JSON request decoder takes them."""
        return {key: self.inputs[key].tf_dtype for key in sorted(self.inputs)}


def tensor_spec(
    key: str, tf_dtype: str, dims: list[int] | None, tensor_name: str = ""
) -> TensorSpec:
    """A TensorSpec from the parts a SignatureDef (proto or JSON) holds."""
    shape = None if dims is None else tuple(int(d) for d in dims)
    return TensorSpec(key, NUMPY_DTYPES.get(tf_dtype), shape, tf_dtype, tensor_name)


def signature_from_json(name: str, raw: Mapping[str, Any]) -> Signature:
    """One entry of metadata's `signature_def` map (TF Serving's JSON) as a Signature."""
    return Signature(
        name=name,
        inputs=_specs_from_json(raw.get("inputs", {})),
        outputs=_specs_from_json(raw.get("outputs", {})),
        method_name=raw.get("method_name", PREDICT_METHOD) or PREDICT_METHOD,
    )


def _specs_from_json(raw: Mapping[str, Any]) -> dict[str, TensorSpec]:
    specs = {}
    for key, info in raw.items():
        shape_info = info.get("tensor_shape", {}) or {}
        dims = None
        if not shape_info.get("unknown_rank", False):
            dims = [int(dim.get("size", -1)) for dim in shape_info.get("dim", [])]
        # proto3 JSON omits a zero enum: DT_INVALID. A metadata body without dtype is malformed.
        tf_dtype = info.get("dtype", "DT_INVALID")
        specs[key] = tensor_spec(key, tf_dtype, dims, info.get("name", ""))
    return specs


def decode_signature(payload: Mapping[str, Any], signature_name: str) -> Signature:
    """Pick `signature_name` out of a GetModelMetadata JSON body; CodecError when absent."""
    try:
        signatures = payload["metadata"]["signature_def"]["signature_def"]
    except (KeyError, TypeError):
        raise CodecError("metadata has no signature_def section", "FAILED_PRECONDITION") from None
    if not isinstance(signatures, dict) or signature_name not in signatures:
        known = ", ".join(sorted(signatures)) if isinstance(signatures, dict) else ""
        raise CodecError(
            f"model has no signature {signature_name!r} (has: {known})", "FAILED_PRECONDITION"
        )
    return signature_from_json(signature_name, signatures[signature_name])

"""The TF `DataType` names TF Serving's JSON API accepts, and the numpy dtype of each.

One table for both tiers, so a dtype the graph accepts is never sent as something else
(the logic tier once turned DT_UINT32/DT_UINT64 into float32). A dtype JSON cannot carry
(complex, quantized, bfloat16, resource, variant) is refused with an error naming it.
"""

from __future__ import annotations

import numpy as np

from tfs_protocol.errors import CodecError

# TF dtype name -> numpy dtype. DT_STRING is an object array of `bytes`.
NUMPY_DTYPES: dict[str, np.dtype] = {
    "DT_FLOAT": np.dtype(np.float32),
    "DT_DOUBLE": np.dtype(np.float64),
    "DT_HALF": np.dtype(np.float16),
    "DT_INT8": np.dtype(np.int8),
    "DT_INT16": np.dtype(np.int16),
    "DT_INT32": np.dtype(np.int32),
    "DT_INT64": np.dtype(np.int64),
    "DT_UINT8": np.dtype(np.uint8),
    "DT_UINT16": np.dtype(np.uint16),
    "DT_UINT32": np.dtype(np.uint32),
    "DT_UINT64": np.dtype(np.uint64),
    "DT_BOOL": np.dtype(np.bool_),
    "DT_STRING": np.dtype(object),
}

# tensorflow::DataTypeString spellings, which TF Serving's JSON error messages use.
TYPE_NAMES: dict[str, str] = {
    "DT_FLOAT": "float",
    "DT_DOUBLE": "double",
    "DT_HALF": "half",
    "DT_INT8": "int8",
    "DT_INT16": "int16",
    "DT_INT32": "int32",
    "DT_INT64": "int64",
    "DT_UINT8": "uint8",
    "DT_UINT16": "uint16",
    "DT_UINT32": "uint32",
    "DT_UINT64": "uint64",
    "DT_BOOL": "bool",
    "DT_STRING": "string",
}

# numpy dtype -> TF name, for tensors built by a client (the reverse of NUMPY_DTYPES).
_TF_NAMES = {dtype: name for name, dtype in NUMPY_DTYPES.items() if name != "DT_STRING"}


def numpy_dtype(tf_name: str) -> np.dtype:
    """The numpy dtype for a `DT_...` name; CodecError naming it when JSON cannot carry it."""
    dtype = NUMPY_DTYPES.get(tf_name)
    if dtype is None:
        supported = ", ".join(NUMPY_DTYPES)
        raise CodecError(
            f"dtype {tf_name} has no JSON form in TF Serving's REST API (supported: "
            f"{supported}); change the signature's dtype or call the model over gRPC",
            "UNIMPLEMENTED",
        )
    return dtype


def tf_dtype_name(dtype: np.dtype) -> str:
    """The `DT_...` name for a numpy dtype (object, bytes and str arrays are DT_STRING)."""
    dtype = np.dtype(dtype)
    if dtype.kind in "OSU":
        return "DT_STRING"
    name = _TF_NAMES.get(dtype)
    if name is None:
        raise CodecError(f"numpy dtype {dtype} has no TF Serving JSON type", "UNIMPLEMENTED")
    return name


def type_name(tf_name: str) -> str:
    """`float` for DT_FLOAT etc., as TF Serving's messages spell types."""
    return TYPE_NAMES.get(tf_name, tf_name)

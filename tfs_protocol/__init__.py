"""TF Serving's wire protocol without TensorFlow: JSON codec, dtypes, signatures, constants.

numpy and orjson only. graph-service decodes requests and encodes answers with it; the logic
tier encodes requests and decodes answers with it; so both tiers read a dtype, a string
tensor or a NaN the same way.
"""

from tfs_protocol.constants import (
    BYTES_SUFFIX,
    CLASSIFY_METHOD,
    DEFAULT_SIGNATURE,
    PREDICT_METHOD,
    REGRESS_METHOD,
    SERVE_TAG,
)
from tfs_protocol.dtypes import NUMPY_DTYPES, numpy_dtype, tf_dtype_name
from tfs_protocol.errors import CodecError
from tfs_protocol.json_codec import (
    decode_predict_request,
    decode_predict_response,
    encode_predict_request,
    encode_predict_response,
    parse_json,
)
from tfs_protocol.signature import Signature, TensorSpec, decode_signature

__all__ = [
    "BYTES_SUFFIX",
    "CLASSIFY_METHOD",
    "DEFAULT_SIGNATURE",
    "NUMPY_DTYPES",
    "PREDICT_METHOD",
    "REGRESS_METHOD",
    "SERVE_TAG",
    "CodecError",
    "Signature",
    "TensorSpec",
    "decode_predict_request",
    "decode_predict_response",
    "decode_signature",
    "encode_predict_request",
    "encode_predict_response",
    "numpy_dtype",
    "parse_json",
    "tf_dtype_name",
]

"""graph-service's view of TF Serving's JSON: the shared `tfs_protocol` codec, re-exported.

The codec lives in `tfs_protocol.json_codec` so the logic tier uses the very same rules;
this module keeps `graph_service.codecs` imports working.
"""

from tfs_protocol.json_codec import *  # noqa: F403
from tfs_protocol.json_codec import (  # noqa: F401
    _is_b64,
    _show,
    decode_predict_request,
    encode_classification,
    encode_json,
    encode_predict_response,
    encode_regression,
    parse_json,
    signature_name,
    tensor_json,
    to_array,
)

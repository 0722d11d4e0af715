"""Our own wire format: the `/get_score` request and the `{"msg", "code", "data"}` envelope.

The body business services already send to the classic Flask recipe: `{"data": records |
columns | one record, "model": optional pipeline name}`, answered with
`{"msg": "Successful!", "code": 200, "data": [...]}`. Every other JSON body the service
writes (health, pipelines, errors) goes through `encode_body` too. orjson + numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from logic_service.errors import BadRequestError, UnsupportedMediaTypeError

SUCCESS_MSG = "Successful!"
_NUMPY = orjson.OPT_SERIALIZE_NUMPY


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


def _fallback(value: Any) -> Any:
    """orjson's `default`: pandas objects and non-contiguous arrays become plain lists."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if hasattr(value, "to_dict") and hasattr(value, "columns"):
        return value.to_dict(orient="list")
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot serialise {type(value).__name__} to JSON")

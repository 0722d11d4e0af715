"""GET /openapi.json: an OpenAPI 3.1 document generated from each pipeline's contract.

Column names, types, nullability and (under `unknown_categories: reject`) the known
categories as enums come from the fitted transformers, so the document cannot drift from
what the service accepts. Built once per app, on first request.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app

from logic_service.http.codecs import encode_body
from logic_service.pipeline.contract import STRING, ColumnContract
from logic_service.pipeline.parity import example_rows
from logic_service.pipeline.runtime import Pipeline
from logic_service.pipeline.validation import ANY, NUMBER

routes = Blueprint("logic_service_openapi", __name__)
_CACHE_KEY = "logic_service_openapi"
# The smallest number that becomes inf in float32 (float32's max plus half a step): below it a
# JSON number rounds to a finite float32 and scores.
FLOAT32_LIMIT = 2.0**128 - 2.0**103
_ERRORS = {
    "400": "The body does not match the pipeline's contract; msg names the column, row and fix.",
    "404": "No such pipeline.",
    "413": "Body too large.",
    "415": "Body not declared as JSON.",
    "502": "The graph tier refused the features.",
    "503": "The graph tier is unavailable.",
    "504": "The graph tier did not answer in time.",
}


@routes.get("/openapi.json")
def openapi() -> Response:
    document = current_app.extensions.get(_CACHE_KEY)
    if document is None:
        state = current_app.extensions["logic_service"]
        document = build_document(state.scorer.pipelines, state.scorer.default)
        current_app.extensions[_CACHE_KEY] = document
    return Response(encode_body(document), mimetype="application/json")


def build_document(pipelines: dict[str, Pipeline], default: str | None) -> dict[str, Any]:
    """The whole document: /get_score per pipeline, probes, /pipelines, one error schema."""
    schemas: dict[str, Any] = {
        "Error": {
            "type": "object",
            "description": "Every error answer has this shape.",
            "required": ["msg", "code", "data"],
            "properties": {
                "msg": {"type": "string", "description": "What is wrong and what to send."},
                "code": {"type": "integer", "description": "The HTTP status again."},
                "data": {"type": "null"},
            },
        },
        "Envelope": {
            "type": "object",
            "required": ["msg", "code", "data"],
            "properties": {"msg": {"type": "string"}, "code": {"type": "integer"}, "data": {}},
        },
    }
    bodies, examples = [], {}
    for name, pipeline in pipelines.items():
        record = f"Record_{name}"
        schemas[record] = _record_schema(pipeline)
        body = f"ScoreRequest_{name}"
        schemas[body] = _body_schema(name, record, pipeline, optional_model=name == default)
        bodies.append({"$ref": f"#/components/schemas/{body}"})
        examples[name] = {"summary": f"pipeline {name}", "value": _example(name, pipeline)}
    error_responses = {
        status: {
            "description": text,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        for status, text in _ERRORS.items()
    }

    def envelope(description: str) -> dict[str, Any]:
        schema = {"$ref": "#/components/schemas/Envelope"}
        return {"description": description, "content": {"application/json": {"schema": schema}}}

    return {
        "openapi": "3.1.0",
        "info": {
            "title": "logic-service",
            "version": "1",
            "description": "Business JSON in, scores out. Contracts are read from the fitted "
            "transformers of each pipeline.",
        },
        "paths": {
            "/get_score": {
                "post": {
                    "summary": "Score records through a pipeline",
                    "operationId": "get_score",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"oneOf": bodies} if len(bodies) > 1 else bodies[0],
                                "examples": examples,
                            }
                        },
                    },
                    "responses": {
                        "200": {
                            **envelope("Scores, one per row."),
                            "headers": {
                                "X-Model-Version": {
                                    "description": "The graph model version that answered: "
                                    "the route's label or version number, or latest "
                                    "(graph pipelines only; docs/traffic.md).",
                                    "schema": {"type": "string"},
                                }
                            },
                        },
                        **error_responses,
                    },
                }
            },
            "/health": {
                "get": {
                    "summary": "Liveness",
                    "operationId": "health",
                    "responses": {"200": envelope("The process is up.")},
                }
            },
            "/ready": {
                "get": {
                    "summary": "Readiness: every graph-backed model available",
                    "operationId": "ready",
                    "responses": {
                        "200": envelope("Ready."),
                        "503": error_responses["503"],
                    },
                }
            },
            "/pipelines": {
                "get": {
                    "summary": "The pipelines, their contracts and engines",
                    "operationId": "pipelines",
                    "responses": {"200": envelope("One entry per pipeline.")},
                }
            },
        },
        "components": {"schemas": schemas},
    }


def _record_schema(pipeline: Pipeline) -> dict[str, Any]:
    properties = {}
    contract = pipeline.contract
    for name in pipeline.schema.columns:
        column = contract.columns.get(name) if contract else None
        properties[name] = _column_schema(pipeline, name, column)
    schema: dict[str, Any] = {
        "type": "object",
        "required": list(pipeline.schema.columns),
        "properties": properties,
    }
    if not pipeline.schema.closed or not pipeline.schema.columns:
        schema["additionalProperties"] = True
    return schema


def _column_schema(pipeline: Pipeline, name: str, column: ColumnContract | None) -> dict:
    kind = pipeline.schema.kinds.get(name, ANY)
    reject = pipeline.spec.unknown_categories == "reject"
    if column is not None and not column.used:
        return {"description": "Required by the transformer, which drops it: any value."}
    if column is not None and column.categories is not None:
        known = column.known_values
        nullable = column.nullable or not (reject or column.unknown_is_error)
        base = "string" if column.onnx_type == STRING else "number"
        schema: dict[str, Any] = {"type": [base, "null"] if nullable else base}
        if reject or column.unknown_is_error:
            schema["enum"] = [*known, None] if column.nullable else known
        else:
            if base == "string":  # any other scalar is one more unknown category: scored
                schema["type"] = ["string", "number", "boolean", "null"]
            schema["examples"] = known[:10]
            schema["description"] = "Unknown values are scored as the encoder scores them."
        return schema
    if kind == NUMBER or (column is not None and column.onnx_type != STRING):
        nullable = column.nullable if column is not None else True
        schema = {"type": ["number", "null"] if nullable else "number"}
        if pipeline.compiled:  # the graph computes in float32: beyond it is a 400
            schema |= {"exclusiveMinimum": -FLOAT32_LIMIT, "exclusiveMaximum": FLOAT32_LIMIT}
        return schema
    return {"type": ["string", "null"]} if kind != ANY else {}


def _body_schema(name: str, record: str, pipeline: Pipeline, optional_model: bool) -> dict:
    ref = {"$ref": f"#/components/schemas/{record}"}
    schema: dict[str, Any] = {
        "type": "object",
        "required": ["data"] if optional_model else ["model", "data"],
        "properties": {
            "model": {
                # The default pipeline is also what a missing or null "model" picks.
                "enum": [name, None] if optional_model else [name],
                "description": "The pipeline to score with.",
            },
            "data": {
                "description": "Records, one record, or an object of equal-length columns.",
                "anyOf": [
                    {
                        "type": "array",
                        "items": ref,
                        "minItems": 1,
                        "maxItems": pipeline.spec.max_rows,
                    },
                    ref,
                    _columns_schema(pipeline),
                ],
            },
        },
    }
    return schema


def _columns_schema(pipeline: Pipeline) -> dict[str, Any]:
    """The object-of-columns form: each column a list of that column's values.

    JSON Schema cannot say "every list has the same length"; the description does, and the
    service answers 400 naming it.
    """
    contract = pipeline.contract
    rows = {"minItems": 1, "maxItems": pipeline.spec.max_rows}
    properties = {
        name: {
            "type": "array",
            "items": _column_schema(
                pipeline, name, contract.columns.get(name) if contract else None
            ),
            **rows,
        }
        for name in pipeline.schema.columns
    }
    return {
        "type": "object",
        "description": "Columns: every list the same length, one value per row.",
        "required": list(pipeline.schema.columns),
        "properties": properties,
        "additionalProperties": {"type": "array", **rows},
    }


def _example(name: str, pipeline: Pipeline) -> dict[str, Any]:
    rows = pipeline.samples[:2]
    if not rows and pipeline.contract is not None:
        rows = example_rows(pipeline.contract)
    return {"model": name, "data": rows}

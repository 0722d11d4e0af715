"""TF Serving's GetModelMetadata body for a servable, from its SignatureDef protos."""

from __future__ import annotations

from typing import Any

from graph_service.models.servable import Servable


def signature_def_json(signature_def: Any) -> dict:
    """One SignatureDef as TF Serving prints it: proto field names, defaults included."""
    from google.protobuf import json_format

    return json_format.MessageToDict(
        signature_def,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
    )


def model_metadata(servable: Servable) -> dict:
    """`{"model_spec": ..., "metadata": {"signature_def": {"signature_def": {...}}}}`."""
    signatures = {
        key: signature_def_json(sig) for key, sig in sorted(servable.signature_defs.items())
    }
    return {
        "model_spec": {
            "name": servable.name,
            "signature_name": "",
            "version": str(servable.version),
        },
        "metadata": {"signature_def": {"signature_def": signatures}},
    }

"""saved_model.pb, parsed in one place: the `serve` meta graph and its SignatureDefs.

Everything that needs the SignatureDefs (loading, metadata, the signature model both tiers
share) starts from `read_meta_graph`, so a half-copied or foreign folder is refused once,
with one message, before TensorFlow's loader sees it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tfs_protocol.constants import SERVE_TAG
from tfs_protocol.signature import Signature, tensor_spec


class LoadError(Exception):
    """A version folder could not be loaded; `code` is the canonical error code to report."""

    def __init__(self, message: str, code: str = "UNKNOWN") -> None:
        super().__init__(message)
        self.code = code


def read_meta_graph(export_dir: Path) -> Any:
    """The MetaGraphDef tagged `serve` from `export_dir/saved_model.pb`."""
    from google.protobuf.message import DecodeError
    from tensorflow.core.protobuf import saved_model_pb2

    pb_path = Path(export_dir) / "saved_model.pb"
    if not pb_path.is_file():
        raise LoadError(
            f"SavedModel not found at {export_dir}: no saved_model.pb (still being copied?)",
            "NOT_FOUND",
        )
    model = saved_model_pb2.SavedModel()
    try:
        model.ParseFromString(pb_path.read_bytes())
    except DecodeError as exc:
        raise LoadError(f"{pb_path} is not a SavedModel: {exc}", "DATA_LOSS") from None
    for meta in model.meta_graphs:
        if SERVE_TAG in meta.meta_info_def.tags:
            return meta
    raise LoadError(f"{export_dir}: no meta graph tagged 'serve'", "NOT_FOUND")


def read_signature_defs(export_dir: Path) -> dict[str, Any]:
    """SignatureDefs of the `serve` meta graph, by key."""
    return dict(read_meta_graph(export_dir).signature_def)


def signature_model(key: str, signature_def: Any) -> Signature:
    """A SignatureDef proto as the shared `tfs_protocol.Signature`."""
    from tensorflow.core.framework import types_pb2

    def specs(infos: Any) -> dict:
        out = {}
        for name in sorted(infos):
            info = infos[name]
            shape = info.tensor_shape
            dims = None if shape.unknown_rank else [d.size for d in shape.dim]
            out[name] = tensor_spec(name, types_pb2.DataType.Name(info.dtype), dims, info.name)
        return out

    return Signature(
        key, specs(signature_def.inputs), specs(signature_def.outputs), signature_def.method_name
    )

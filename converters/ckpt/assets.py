"""Vocabulary files a TF1 graph's tables read: checked before export, shipped as assets.

A table initialised from a text file (TextFileInitializer, StaticVocabularyTable over a
file, index_table_from_file, feature columns with a vocabulary file) names the file by the
path it had when the graph was built, in a string constant. TF Serving runs the
SavedModel's init op from the models folder alone, so the file has to travel inside the
SavedModel: copied to `assets/` and recorded in its asset_file_def, whose loaders (TF
Serving's, TensorFlow's, graph-service's) feed the new location into that constant.
"""

from __future__ import annotations

from typing import Any

from converters.errors import UsageError

FILE_INIT_TYPES = {"InitializeTableFromTextFileV2", "InitializeTableFromTextFile"}
ASSET_FILEPATHS = "asset_filepaths"  # tf.compat.v1.GraphKeys.ASSET_FILEPATHS


def asset_tensors(graph: Any) -> list[Any]:
    """The constant file-name tensors of the graph's vocabulary files.

    TF1's lookup ops list them in the ASSET_FILEPATHS collection; the file name input of
    every text-file table initialiser is added in case a graph was built without it.
    """
    found: dict[str, Any] = {}
    candidates = list(graph.get_collection(ASSET_FILEPATHS))
    for op in graph.get_operations():
        if op.type in FILE_INIT_TYPES:
            candidates.append(op.inputs[1])
    for tensor in candidates:
        if getattr(tensor, "op", None) is not None and tensor.op.type == "Const":
            found.setdefault(tensor.name, tensor)
    return list(found.values())


def asset_path(tensor: Any) -> str:
    """The file a constant file-name tensor names (a local path or a gs://-style URL)."""
    return tensor.op.get_attr("value").string_val[0].decode("utf-8", "replace")


def check_assets(graph: Any) -> list[str]:
    """Every vocabulary file the graph reads, each checked to exist (exit 2 if one does not)."""
    import tensorflow as tf

    paths = []
    for tensor in asset_tensors(graph):
        path = asset_path(tensor)
        if not tf.io.gfile.exists(path):
            readers = _tables_reading(tensor) or [tensor.name]
            raise UsageError(
                f"{', '.join(readers)} reads its vocabulary from {path}, which is not there; "
                "put the file back at that path (the graph records it) and convert again"
            )
        paths.append(path)
    return paths


def _tables_reading(tensor: Any) -> list[str]:
    """Names of the tables a file-name tensor initialises, for the message."""
    return [
        f"table {op.inputs[0].op.name}" for op in tensor.consumers() if op.type in FILE_INIT_TYPES
    ]

"""Shared by the checkpoint tests: a checkpoint's graph as written, and convert-ckpt runs."""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf

from converters.ckpt.loader import import_graph, locate_checkpoint
from converters.cli import convert_ckpt
from converters.models_config import ModelsConfig


def scratch_graph(ckpt) -> tf.Graph:
    """The checkpoint's graph, imported with nothing restored."""
    graph = tf.Graph()
    with graph.as_default():
        import_graph(locate_checkpoint(ckpt.prefix))
    return graph


def convert(ckpt, models: Path, *args: str) -> int:
    return convert_ckpt.main([str(ckpt.folder), "--models-dir", str(models), *args])


def nothing_published(models: Path, name: str) -> None:
    assert not (models / name).exists()
    assert ModelsConfig.load(models / "models.config", missing_ok=True).get(name) is None

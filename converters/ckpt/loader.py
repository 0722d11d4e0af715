"""Find a TF1 checkpoint's files, import its meta graph and restore its variables.

A checkpoint is `PREFIX.meta` (the graph), `PREFIX.index` and `PREFIX.data-*` (the values);
a training folder names its latest PREFIX in a `checkpoint` file. Everything that can be
missing is checked before TensorFlow is touched, so the user hears about it in one line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from converters.errors import ConversionError, UsageError

_DATA_SHARD = re.compile(r"\.data-(\d{5})-of-(\d{5})$")
_STATE_LINE = re.compile(r'^model_checkpoint_path:\s*"(.*)"\s*$', re.MULTILINE)


@dataclass(frozen=True)
class CheckpointFiles:
    """The prefix TensorFlow restores from, and the meta graph written beside it."""

    prefix: Path
    meta: Path

    @property
    def index(self) -> Path:
        return self.prefix.with_name(self.prefix.name + ".index")

    def data_files(self) -> list[Path]:
        return sorted(self.prefix.parent.glob(glob_escape(self.prefix.name) + ".data-*-of-*"))


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def tensor_name(name: str) -> str:
    """`op` and `op:0` both name the first output of `op`."""
    return name if re.search(r":\d+$", name) else f"{name}:0"


def _prefix_from_state(folder: Path) -> Path:
    state = folder / "checkpoint"
    if not state.is_file():
        raise UsageError(
            f"{folder}: no 'checkpoint' file in this folder; pass the checkpoint prefix "
            f"instead (e.g. {folder}/model.ckpt-1000)"
        )
    match = _STATE_LINE.search(state.read_text(encoding="utf-8", errors="replace"))
    if not match:
        raise UsageError(
            f"{state}: no model_checkpoint_path in it; pass the checkpoint prefix instead"
        )
    prefix = Path(match.group(1))
    if not prefix.is_absolute() or not prefix.parent.is_dir():
        # Training jobs record paths of the machine they ran on; the files sit beside it.
        prefix = folder / prefix.name
    return prefix


def locate_checkpoint(src: Path) -> CheckpointFiles:
    """Accept a prefix, any one of its files, or a folder with a `checkpoint` file."""
    src = Path(src)
    if src.is_dir():
        prefix = _prefix_from_state(src)
    else:
        name = _DATA_SHARD.sub("", src.name)
        for suffix in (".meta", ".index"):
            name = name.removesuffix(suffix)
        prefix = src.with_name(name)
    files = CheckpointFiles(prefix, prefix.with_name(prefix.name + ".meta"))
    if not files.meta.exists() and not files.index.exists() and not files.data_files():
        raise UsageError(
            f"{src}: no such checkpoint (no {prefix.name}.meta or .index there); pass a "
            "prefix such as DIR/model.ckpt-1000 or a folder holding a 'checkpoint' file"
        )
    if not files.meta.is_file():
        raise UsageError(
            f"{files.meta}: missing; convert-ckpt needs the meta graph that tf.train.Saver "
            "writes beside the checkpoint (copy the .meta file too)"
        )
    if not files.index.is_file():
        raise UsageError(
            f"{files.index}: missing; copy the checkpoint's .index file next to {files.meta.name}"
        )
    _check_data_files(files)
    return files


def _check_data_files(files: CheckpointFiles) -> None:
    present = files.data_files()
    if not present:
        raise UsageError(
            f"{files.prefix}: the checkpoint has no data file ({files.prefix.name}.data-00000-of-"
            "NNNNN); copy every .data-* file next to the .index"
        )
    match = _DATA_SHARD.search(present[0].name)
    total = int(match.group(2)) if match else 1
    expected = {f"{files.prefix.name}.data-{i:05d}-of-{total:05d}" for i in range(total)}
    missing = sorted(expected - {p.name for p in present})
    if missing:
        raise UsageError(
            f"{files.prefix}: checkpoint data shard(s) missing: {', '.join(missing)}; "
            "copy every .data-* file next to the .index"
        )


def read_meta_graph(files: CheckpointFiles) -> Any:
    """The MetaGraphDef proto, parsed without building a graph."""
    from google.protobuf.message import DecodeError
    from tensorflow.core.protobuf import meta_graph_pb2

    meta = meta_graph_pb2.MetaGraphDef()
    try:
        meta.ParseFromString(files.meta.read_bytes())
    except DecodeError as exc:
        raise ConversionError(
            f"{files.meta}: not a MetaGraphDef ({exc}); pass the .meta file tf.train.Saver wrote"
        ) from exc
    if not meta.graph_def.node:
        raise ConversionError(f"{files.meta}: the meta graph holds no graph")
    return meta


def import_graph(files: CheckpointFiles, input_map: Mapping[str, Any] | None = None) -> Any:
    """Import the meta graph into the current default graph; returns its Saver (or None).

    Devices are cleared: checkpoints written on GPU machines name devices this one lacks.
    """
    import tensorflow as tf

    try:
        return tf.compat.v1.train.import_meta_graph(
            str(files.meta), clear_devices=True, input_map=dict(input_map or {})
        )
    except (ValueError, KeyError, tf.errors.OpError) as exc:
        raise ConversionError(
            f"{files.meta}: cannot import the graph ({_one_line(exc)}); a graph using ops "
            "from a custom library needs that library loaded"
        ) from exc


def restore_variables(session: Any, saver: Any, files: CheckpointFiles) -> int:
    """Restore every global variable from the checkpoint; returns how many there are."""
    import tensorflow as tf

    variables = session.graph.get_collection(tf.compat.v1.GraphKeys.GLOBAL_VARIABLES)
    if saver is None:
        if not variables:
            return 0
        saver = tf.compat.v1.train.Saver(var_list=variables)
    try:
        saver.restore(session, str(files.prefix))
    except (tf.errors.OpError, ValueError) as exc:
        raise ConversionError(
            f"{files.prefix}: cannot restore the variables ({_one_line(exc)}); the .meta and "
            ".index/.data files must come from the same save"
        ) from exc
    return len(variables)


def _one_line(exc: BaseException) -> str:
    text = str(getattr(exc, "message", exc)).split("\n\n")[0]
    return " ".join(text.split())[:300]


class CheckpointReference:
    """The original graph in its own TF1 session: what the export must reproduce.

    Inputs are fed straight into the original tensors (any tensor is feedable in TF1),
    fixed values into theirs; no input_map is involved, so the export's rewiring is checked.
    """

    def __init__(
        self,
        files: CheckpointFiles,
        inputs: Mapping[str, str],
        outputs: Mapping[str, str],
        fixed: Mapping[str, np.ndarray],
    ) -> None:
        import tensorflow as tf

        self._inputs = dict(inputs)
        self._outputs = dict(outputs)
        self._fixed = dict(fixed)
        self._graph = tf.Graph()
        with self._graph.as_default():
            saver = import_graph(files)
            self._session = tf.compat.v1.Session(graph=self._graph)
            try:
                restore_variables(self._session, saver, files)
                self._session.run(tf.compat.v1.tables_initializer())
            except BaseException:
                self._session.close()
                raise

    def __call__(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        feed = {self._inputs[k]: v for k, v in feeds.items()}
        feed.update(self._fixed)
        fetched = self._session.run(self._outputs, feed_dict=feed)
        return {k: np.asarray(v) for k, v in fetched.items()}

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> CheckpointReference:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

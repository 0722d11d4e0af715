"""Freeze one signature of a SavedModel into a single GraphDef for libtensorflow clients.

Go, C and Java programs built on libtensorflow import a GraphDef and run it by tensor name;
they do not want a SavedModel folder with a variables checkpoint beside it. Freezing folds
every variable the signature reads into a constant, keeps only what the signature computes
(no saver, no initialisers, no training branch), and gives each output a node named after
its signature key when that name is free. Lookup tables and other resources that must be
initialised when the model loads cannot live in a frozen graph: such a model is refused,
naming the op. The frozen graph is proven before it is written: imported into a fresh graph
and compared with the SavedModel's own signature at batch sizes 1 and 3.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from converters.errors import ConversionError, UsageError, VerificationError
from converters.verify import (
    DEFAULT_BATCH_SIZES,
    InputSpec,
    VerifyReport,
    max_abs_diff,
    random_inputs,
)

LOADER = "frozen GraphDef in a fresh tf.Graph"
# Ops that hold state a frozen graph cannot restore or initialise.
_NEEDS_INIT = re.compile(
    r"HashTable|LookupTable|InitializeTable|Iterator|Queue|Reader|MutableDenseHashTable"
)
_STATEFUL_LEFTOVERS = {
    "VariableV2",
    "Variable",
    "VarHandleOp",
    "SaveV2",
    "RestoreV2",
    "MergeV2Checkpoints",
    "Assign",
    "AssignVariableOp",
}
_NODE_NAME = re.compile(r"^[A-Za-z0-9.][A-Za-z0-9_.\-/]*$")


@dataclass(frozen=True)
class FrozenTensor:
    """A tensor of the frozen graph, named the way libtensorflow looks it up."""

    key: str
    name: str
    dtype: str
    shape: tuple[int, ...] | None  # -1 for unknown dims, None for unknown rank

    @property
    def shape_text(self) -> str:
        if self.shape is None:
            return "unknown-rank"
        return "[" + ",".join(str(d) for d in self.shape) + "]"

    def line(self, kind: str) -> str:
        return f"{kind:<6} {self.name}  {self.dtype}  {self.shape_text}"


@dataclass
class FrozenGraph:
    """The GraphDef to write and its signature, by tensor name."""

    graph_def: Any
    inputs: list[FrozenTensor]
    outputs: list[FrozenTensor]
    report: VerifyReport = field(default_factory=VerifyReport)

    def serialized(self) -> bytes:
        return self.graph_def.SerializeToString()


def _one_line(exc: BaseException) -> str:
    text = str(getattr(exc, "message", exc)).split("\n\n")[0]
    return " ".join(text.split())[:300]


def _all_nodes(graph_def: Any) -> Iterator[Any]:
    yield from graph_def.node
    for function in graph_def.library.function:
        yield from function.node_def


def _refuse_stateful(graph_def: Any, export_dir: Path) -> None:
    for node in _all_nodes(graph_def):
        if _NEEDS_INIT.search(node.op):
            raise ConversionError(
                f"cannot freeze {export_dir}: op {node.name!r} ({node.op}) is a lookup table "
                "or other resource that must be initialised when the model loads, which a "
                "frozen GraphDef cannot do; serve the SavedModel (TF Serving, graph-service) "
                "or move the lookup out of the graph"
            )


def _shape(tensor: Any) -> tuple[int, ...] | None:
    if tensor.shape.rank is None:
        return None
    return tuple(-1 if d is None else d for d in tensor.shape.as_list())


def _name_outputs(graph_def: Any, outputs: dict[str, Any]) -> dict[str, str]:
    """Add an Identity named after each output key whose name is free: `prediction:0`
    reads better in a Go program than `Identity_3:0`. Returns key -> tensor name."""
    from tensorflow.core.framework import node_def_pb2

    taken = {node.name for node in graph_def.node}
    names = {}
    for key, tensor in outputs.items():
        op_name = tensor.name.rsplit(":", 1)[0]
        if op_name == key or key in taken or not _NODE_NAME.match(key):
            names[key] = tensor.name
            continue
        node = node_def_pb2.NodeDef(name=key, op="Identity", input=[_input_ref(tensor.name)])
        node.attr["T"].type = tensor.dtype.as_datatype_enum
        graph_def.node.append(node)
        taken.add(key)
        names[key] = f"{key}:0"
    return names


def _input_ref(tensor_name: str) -> str:
    op_name, _, index = tensor_name.rpartition(":")
    return op_name if index == "0" else f"{op_name}:{index}"


def freeze(export_dir: Path, signature_key: str = "serving_default") -> FrozenGraph:
    """Fold the signature's variables into constants; refuse what cannot be frozen."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    try:
        loaded = tf.saved_model.load(str(export_dir))
    except Exception as exc:  # any load failure: the folder is not a usable SavedModel
        raise UsageError(f"{export_dir}: cannot load the SavedModel ({_one_line(exc)})") from exc
    if signature_key not in loaded.signatures:
        have = ", ".join(sorted(loaded.signatures)) or "none"
        raise UsageError(
            f"{export_dir}: no signature {signature_key!r} (has: {have}); pass --signature NAME"
        )
    function = loaded.signatures[signature_key]
    _refuse_stateful(function.graph.as_graph_def(), export_dir)
    try:
        frozen = convert_variables_to_constants_v2(function)
    except Exception as exc:  # TF raises ValueError, KeyError or OpError here
        raise ConversionError(
            f"cannot freeze {export_dir}: {_one_line(exc)}; the SavedModel holds state a "
            "frozen GraphDef cannot carry, serve it as a SavedModel instead"
        ) from exc
    graph_def = frozen.graph.as_graph_def()
    _refuse_stateful(graph_def, export_dir)
    leftovers = [n for n in _all_nodes(graph_def) if n.op in _STATEFUL_LEFTOVERS]
    if leftovers:
        node = leftovers[0]
        raise ConversionError(
            f"cannot freeze {export_dir}: op {node.name!r} ({node.op}) still holds a variable "
            "after freezing; serve the SavedModel instead"
        )

    _, kwargs = function.structured_input_signature
    keys = sorted(kwargs)  # tf.nest order: how the placeholders are laid out
    placeholders = frozen.inputs[: len(keys)]
    inputs = [
        FrozenTensor(k, t.name, t.dtype.name, _shape(t))
        for k, t in zip(keys, placeholders, strict=True)
    ]
    out_keys = sorted(function.structured_outputs)
    out_tensors = dict(zip(out_keys, frozen.outputs, strict=True))
    names = _name_outputs(graph_def, out_tensors)
    outputs = [FrozenTensor(k, names[k], t.dtype.name, _shape(t)) for k, t in out_tensors.items()]
    return FrozenGraph(graph_def, inputs, outputs)


def _run_frozen(serialized: bytes, frozen: FrozenGraph, feeds: dict[str, np.ndarray]) -> dict:
    """Import the bytes into a fresh graph and run them by tensor name, as a C client would."""
    import tensorflow as tf

    v1 = tf.compat.v1
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(serialized)
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(graph_def, name="")
    with v1.Session(graph=graph) as session:
        feed = {t.name: feeds[t.key] for t in frozen.inputs}
        fetched = session.run({t.key: t.name for t in frozen.outputs}, feed_dict=feed)
    return {k: np.asarray(v) for k, v in fetched.items()}


def verify_frozen(
    export_dir: Path,
    frozen: FrozenGraph,
    signature_key: str = "serving_default",
    atol: float | None = None,
) -> VerifyReport:
    """Compare the frozen graph with the SavedModel's signature at batch sizes 1 and 3."""
    import tensorflow as tf

    serialized = frozen.serialized()
    function = tf.saved_model.load(str(export_dir)).signatures[signature_key]
    specs = {
        t.key: InputSpec(
            t.key, np.dtype(tf.as_dtype(t.dtype).as_numpy_dtype), _unknown_as_none(t.shape)
        )
        for t in frozen.inputs
    }
    report = VerifyReport(loaders=(LOADER,))
    report.batch_sizes = DEFAULT_BATCH_SIZES
    for batch in DEFAULT_BATCH_SIZES:
        feeds = random_inputs(specs, batch, seed=batch)
        expected = {
            k: v.numpy()
            for k, v in function(**{k: tf.constant(v) for k, v in feeds.items()}).items()
        }
        try:
            actual = _run_frozen(serialized, frozen, feeds)
        except Exception as exc:  # report what the runtime said, in one line
            raise VerificationError(
                f"the frozen graph does not run in a fresh graph: {_one_line(exc)}"
            ) from exc
        for key, value in expected.items():
            diff = max_abs_diff(value, actual[key], key, LOADER)
            report.record(key, np.asarray(value).dtype, diff, atol)
    if not report.ok:
        worst = ", ".join(
            f"{p.key} max |diff| {p.max_abs_diff:.3g} > atol {p.atol:g}"
            for p in report.outputs.values()
            if not p.ok
        )
        raise VerificationError(
            f"the frozen graph does not reproduce the SavedModel: {worst}; nothing written"
        )
    frozen.report = report
    return report


def _unknown_as_none(shape: tuple[int, ...] | None) -> tuple[int | None, ...] | None:
    return None if shape is None else tuple(None if d == -1 else d for d in shape)


def write_atomically(data: bytes, target: Path) -> None:
    """Write to a temporary file beside `target`, then rename: never a half-written file."""
    fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp's 0600 would hide the file from other users
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise

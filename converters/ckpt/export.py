"""Write a TF1 checkpoint as a TF Serving SavedModel with one `serving_default` signature.

The meta graph is imported into a fresh graph with its signature inputs rewired: an input
that is not a placeholder (a dataset iterator's output) or whose shape the user pinned gets a
new placeholder mapped in its place, and every `--fixed` tensor becomes a constant. The
SavedModel's main op initialises tables and local variables, because TF Serving runs that op
and nothing else after restoring the variables.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from converters.ckpt.assets import asset_path, asset_tensors
from converters.ckpt.loader import (
    CheckpointFiles,
    CheckpointReference,
    import_graph,
    restore_variables,
)
from converters.ckpt.plan import SignaturePlan, TensorDesc
from converters.errors import ConversionError, UsageError, VerificationError

SIGNATURE_KEY = "serving_default"
SERVE_TAG = "serve"
_PLACEHOLDER_TYPES = {"Placeholder", "PlaceholderV2"}
_DIM = re.compile(r"^(\?|-1|\d+)$")


@dataclass(frozen=True)
class ExportSummary:
    """What the written signature looks like, and how the graph was rewired to get it."""

    inputs: dict[str, TensorDesc]
    outputs: dict[str, TensorDesc]
    replaced: dict[str, str]  # original tensor -> the new placeholder fed in its place
    variables: int
    assets: tuple[str, ...] = ()  # vocabulary files copied into assets/

    def lines(self) -> list[str]:
        rows = []
        for label, side in (("input ", self.inputs), ("output", self.outputs)):
            for key, desc in side.items():
                rows.append(
                    f"  {label} {key:<20} {desc.dtype:<8} {desc.shape_text:<14} {desc.name}"
                )
        for original, new in self.replaced.items():
            rows.append(f"  rewired {original} -> new placeholder {new}")
        for path in self.assets:
            rows.append(f"  asset  {path} (copied into assets/)")
        return rows


def parse_shape(text: str) -> tuple[int | None, ...]:
    """`?,4` or `-1,4` (batch first) -> (None, 4); `` (empty) is a scalar."""
    parts = [p.strip() for p in text.split(",")] if text.strip() else []
    if not all(_DIM.match(p) for p in parts):
        raise UsageError(
            f"--shape: {text!r} is not a shape; write dims separated by commas, ? for any "
            "size, batch first (e.g. x=?,4)"
        )
    return tuple(None if p in {"?", "-1"} else int(p) for p in parts)


def _compatible(shape: tuple[int | None, ...], original: TensorDesc) -> bool:
    if original.shape is None:
        return True
    if len(shape) != len(original.shape):
        return False
    return all(a is None or b is None or a == b for a, b in zip(shape, original.shape, strict=True))


def serving_shapes(
    plan: SignaturePlan, shapes: Mapping[str, tuple[int | None, ...]]
) -> dict[str, tuple[int | None, ...] | None]:
    """Each input's signature shape: `--shape` where given, else the graph's own."""
    unknown = sorted(set(shapes) - set(plan.inputs))
    if unknown:
        raise UsageError(
            f"--shape {unknown[0]}=...: no signature input {unknown[0]!r} "
            f"(inputs: {', '.join(plan.inputs)})"
        )
    result: dict[str, tuple[int | None, ...] | None] = {}
    for key, name in plan.inputs.items():
        original = plan.descs[name]
        if key in shapes:
            if not _compatible(shapes[key], original):
                raise UsageError(
                    f"--shape {key}: {name} has shape {original.shape_text} in the graph; "
                    "the shape you pass must agree with it"
                )
            result[key] = shapes[key]
        else:
            result[key] = original.shape
    return result


def _safe_name(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.\-/]", "_", key).lstrip("_/.-") or "input"


def _serving_graph(
    files: CheckpointFiles,
    plan: SignaturePlan,
    shapes: Mapping[str, tuple[int | None, ...] | None],
) -> tuple[Any, Any, dict[str, Any], dict[str, str]]:
    """Import the meta graph with inputs rewired and fixed tensors made constant."""
    import tensorflow as tf

    v1 = tf.compat.v1
    graph = tf.Graph()
    input_map: dict[str, Any] = {}
    new_inputs: dict[str, Any] = {}
    replaced: dict[str, str] = {}
    with graph.as_default():
        for key, name in plan.inputs.items():
            desc = plan.descs[name]
            is_placeholder = plan.input_op_types.get(name) in _PLACEHOLDER_TYPES
            if is_placeholder and shapes[key] == desc.shape:
                continue
            placeholder = v1.placeholder(
                tf.as_dtype(desc.dtype), shape=shapes[key], name=f"serving/{_safe_name(key)}"
            )
            input_map[name] = placeholder
            new_inputs[key] = placeholder
            replaced[name] = placeholder.name
        for name, value in plan.fixed.items():
            dtype = tf.as_dtype(plan.descs[name].dtype)
            input_map[name] = tf.constant(value, dtype=dtype, name="fixed/" + name.split(":")[0])
        saver = import_graph(files, input_map)
    inputs = {
        key: new_inputs[key] if key in new_inputs else graph.get_tensor_by_name(name)
        for key, name in plan.inputs.items()
    }
    return graph, saver, inputs, replaced


def _desc(tensor: Any) -> TensorDesc:
    shape = None if tensor.shape.rank is None else tuple(tensor.shape.as_list())
    return TensorDesc(tensor.name, tensor.dtype.base_dtype.name, shape)


_VARIABLE_COLLECTIONS = ("variables", "trainable_variables", "model_variables")


def _keep_serving_variables(graph: Any, outputs: list[Any]) -> list[Any]:
    """The variables the outputs read; the rest (optimizer slots, step counters) are dropped
    from the variable collections so neither loader expects them to be saved.
    """
    reached: set[str] = set()
    pending = [t.op for t in outputs]
    while pending:
        op = pending.pop()
        if op.name in reached:
            continue
        reached.add(op.name)
        pending.extend(t.op for t in op.inputs)
        pending.extend(op.control_inputs)
    kept = [v for v in graph.get_collection("variables") if v.op.name in reached]
    for key in _VARIABLE_COLLECTIONS:
        members = [v for v in graph.get_collection(key) if v.op.name in reached]
        graph.clear_collection(key)
        for variable in members:
            graph.add_to_collection(key, variable)
    graph.clear_collection("train_op")
    return kept


def export_checkpoint(
    files: CheckpointFiles,
    plan: SignaturePlan,
    export_dir: Path,
    shapes: Mapping[str, tuple[int | None, ...] | None],
) -> ExportSummary:
    """Restore the checkpoint into the rewired graph and write it with SavedModelBuilder."""
    import tensorflow as tf

    v1 = tf.compat.v1
    graph, saver, inputs, replaced = _serving_graph(files, plan, shapes)
    outputs = {key: graph.get_tensor_by_name(name) for key, name in plan.outputs.items()}
    with graph.as_default(), v1.Session(graph=graph) as session:
        restore_variables(session, saver, files)
        kept = _keep_serving_variables(graph, [*outputs.values()])
        serving_saver = v1.train.Saver(var_list=kept, sharded=True, allow_empty=True)
        # Vocabulary files travel in assets/; loaders feed their new path to this op.
        assets = asset_tensors(graph)
        # TF Serving restores variables, then runs this op and nothing else.
        init_op = tf.group(
            v1.tables_initializer(), v1.local_variables_initializer(), name="serving_init"
        )
        signature = v1.saved_model.signature_def_utils.build_signature_def(
            inputs={k: v1.saved_model.utils.build_tensor_info(t) for k, t in inputs.items()},
            outputs={k: v1.saved_model.utils.build_tensor_info(t) for k, t in outputs.items()},
            method_name=v1.saved_model.signature_constants.PREDICT_METHOD_NAME,
        )
        try:
            builder = v1.saved_model.Builder(str(export_dir))
            builder.add_meta_graph_and_variables(
                session,
                [SERVE_TAG],
                signature_def_map={SIGNATURE_KEY: signature},
                main_op=init_op,
                assets_collection=assets,
                clear_devices=True,
                strip_default_attrs=True,
                saver=serving_saver,
            )
            builder.save()
        except (tf.errors.OpError, ValueError, TypeError) as exc:
            raise ConversionError(
                f"cannot write the SavedModel: {' '.join(str(exc).split())[:300]}"
            ) from exc
    return ExportSummary(
        {k: _desc(t) for k, t in inputs.items()},
        {k: _desc(t) for k, t in outputs.items()},
        replaced,
        len(kept),
        tuple(asset_path(t) for t in assets),
    )


_NOISE = re.compile(r"^(Graph execution error|Detected at node|File |Node:|\[\[|Original stack)")


def tf_message(exc: BaseException) -> str:
    """The line of a TensorFlow error that says what went wrong, without its stack dump."""
    text = str(getattr(exc, "message", exc))
    lines = [ln.strip() for ln in text.splitlines()]
    useful = [ln for ln in lines if ln and not _NOISE.match(ln) and not ln.endswith(":")]
    return (useful[0] if useful else " ".join(text.split()))[:200]


def reference_fn(files: CheckpointFiles, plan: SignaturePlan) -> CheckpointReference:
    """The checkpoint in a plain v1 Session, fed through the original tensors."""
    return CheckpointReference(files, plan.inputs, plan.outputs, plan.fixed)


def guarded(reference: CheckpointReference, plan: SignaturePlan) -> Any:
    """Turn a source-graph failure on sample inputs into a VerificationError with a hint."""
    import tensorflow as tf

    def run(feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            return reference(feeds)
        except (tf.errors.OpError, ValueError) as exc:
            vague = [k for k, n in plan.inputs.items() if plan.descs[n].shape is None]
            hint = (
                f"pass --shape for {', '.join(vague)} (e.g. --shape {vague[0]}=?,4) or --sample"
                if vague
                else "pass realistic inputs with --sample"
            )
            text = tf_message(exc)
            raise VerificationError(
                f"the checkpoint itself fails on the sample inputs ({text}); {hint}"
            ) from exc

    return run

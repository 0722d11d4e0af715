"""Infer an input's shape from the graph when its placeholder leaves it unknown.

TF1 notebooks often wrote `tf.placeholder(tf.float32)` with no shape, although the first
op that reads the placeholder fixes its width: a MatMul's weights `[8, 100]` mean rows of
8, a Conv2D filter `[3, 3, 3, 16]` means 3 channels, `tf.reshape(x, [-1, 4])` means 4
values a row, and `y.set_shape([None, 8])` on a tensor passed through unchanged says so
outright. The walk follows the input forward through ops that keep its shape (identity,
casts, element-wise maths with a scalar, TF1 cond switches) and stops at the first of
those; what it finds is used for the signature and for verification, and printed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from converters.ckpt.detect import TRAINING_SCOPE
from converters.ckpt.plan import TensorDesc

Shape = tuple[int | None, ...]

# Ops whose first output has the shape of their (first) data input.
_SAME_SHAPE = {
    "Identity",
    "Snapshot",
    "Cast",
    "StopGradient",
    "PreventGradient",
    "CheckNumerics",
    "EnsureShape",
    "Switch",
    "RefSwitch",
    "Merge",
    "Relu",
    "Relu6",
    "Elu",
    "Selu",
    "Softplus",
    "Sigmoid",
    "Tanh",
    "Neg",
    "Abs",
    "Square",
    "Sqrt",
    "Rsqrt",
    "Exp",
    "Log",
    "Log1p",
    "Floor",
    "Ceil",
    "Round",
    "Sign",
}
# Element-wise binary ops: shape-preserving when the other operand is a scalar.
_ELEMENTWISE = {
    "Add",
    "AddV2",
    "Sub",
    "Mul",
    "RealDiv",
    "Div",
    "Maximum",
    "Minimum",
    "Pow",
    "SquaredDifference",
}
_MATMUL_TYPES = {"MatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3"}
_CONV_TYPES = {"Conv2D", "Conv3D", "DepthwiseConv2dNative"}
_WALK_LIMIT = 200


@dataclass(frozen=True)
class InferredShape:
    """A shape found in the graph, and the op that fixed it (for the printed line)."""

    shape: Shape
    source: str

    def line(self, key: str) -> str:
        text = TensorDesc(key, "", self.shape).shape_text
        return f"inferred {key} {text} from {self.source}"


def _text(shape: Any) -> str:
    dims = shape.as_list() if hasattr(shape, "as_list") else list(shape)
    return "[" + ",".join("?" if d is None else str(d) for d in dims) + "]"


def _static_value(tensor: Any) -> Any:
    import tensorflow as tf

    try:
        return tf.get_static_value(tensor)
    except (TypeError, ValueError):
        return None


def _from_matmul(op: Any, tensor: Any) -> InferredShape | None:
    """MatMul, or BatchMatMul with 2-D weights (what tf.matmul builds for an unknown rank)."""
    flip_a, flip_b = ("transpose_a", "transpose_b") if op.type == "MatMul" else ("adj_x", "adj_y")
    if op.inputs[0] is not tensor or op.get_attr(flip_a):
        return None
    weights = op.inputs[1]
    if weights.shape.rank != 2:
        return None
    dims = weights.shape.as_list()
    width = dims[1] if op.get_attr(flip_b) else dims[0]
    if width is None:
        return None
    return InferredShape((None, width), f"MatMul {op.name} with weights {_text(weights.shape)}")


def _from_conv(op: Any, tensor: Any) -> InferredShape | None:
    if op.inputs[0] is not tensor:
        return None
    kernel = op.inputs[1]
    rank = kernel.shape.rank
    if rank is None or rank < 3:
        return None
    channels = kernel.shape.as_list()[-2]
    if channels is None:
        return None
    layout = op.get_attr("data_format")
    layout = layout.decode() if isinstance(layout, bytes) else str(layout)
    spatial = (None,) * (rank - 2)
    shape = (None, channels, *spatial) if layout.startswith("NC") else (None, *spatial, channels)
    return InferredShape(shape, f"{op.type} {op.name} with filter {_text(kernel.shape)}")


def _from_reshape(op: Any, tensor: Any, original: Shape | None) -> InferredShape | None:
    if op.inputs[0] is not tensor or (original is not None and len(original) != 2):
        return None
    target = _static_value(op.inputs[1])
    if target is None:
        return None
    dims = [int(d) for d in target.reshape(-1)]
    if not dims or dims[0] != -1 or any(d <= 0 for d in dims[1:]):
        return None  # the batch is not the free dimension: nothing to read off
    width = 1
    for d in dims[1:]:
        width *= d
    return InferredShape((None, width), f"Reshape {op.name} to {_text(dims)}")


def _passes_shape(op: Any, tensor: Any) -> bool:
    if op.type in _SAME_SHAPE:
        return op.type == "Merge" or op.inputs[0] is tensor
    if op.type in _ELEMENTWISE and len(op.inputs) == 2:
        other = op.inputs[1] if op.inputs[0] is tensor else op.inputs[0]
        return other.shape.rank == 0
    return False


def _known_rows(shape: Any) -> Shape | None:
    """A static shape with every dimension after the batch known, else None."""
    if shape.rank is None or shape.rank == 0:
        return None
    dims = shape.as_list()
    if any(d is None for d in dims[1:]):
        return None
    return (None, *dims[1:])


def _agrees(shape: Shape, original: Shape | None) -> bool:
    if original is None:
        return True
    return len(shape) == len(original) and all(
        a is None or b is None or a == b for a, b in zip(shape, original, strict=True)
    )


def infer_shape(graph: Any, name: str) -> InferredShape | None:
    """The shape of input tensor `name` as the first op reading it fixes it, or None."""
    tensor = graph.get_tensor_by_name(name)
    original = None if tensor.shape.rank is None else tuple(tensor.shape.as_list())
    pending, seen = [tensor], {tensor.name}
    while pending and len(seen) < _WALK_LIMIT:
        current = pending.pop(0)
        for op in current.consumers():
            found = None
            if TRAINING_SCOPE.search(op.name):
                continue  # gradients read the input too; they fix nothing about serving
            if op.type in _MATMUL_TYPES:
                found = _from_matmul(op, current)
            elif op.type in _CONV_TYPES:
                found = _from_conv(op, current)
            elif op.type == "Reshape":
                found = _from_reshape(op, current, original)
            elif _passes_shape(op, current):
                out = op.outputs[0]
                rows = _known_rows(out.shape)
                if rows is not None:
                    found = InferredShape(rows, f"set_shape on {out.name} ({op.type})")
                elif out.name not in seen:
                    seen.add(out.name)
                    pending.append(out)
            if found is not None and _agrees(found.shape, original):
                return found
    return None


def needs_inference(desc: TensorDesc) -> bool:
    """Unknown rank, or unknown dimensions after the batch."""
    if desc.shape is None:
        return True
    return len(desc.shape) > 1 and any(d is None for d in desc.shape[1:])

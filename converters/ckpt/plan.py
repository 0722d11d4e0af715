"""What a TF1 signature is made of: tensors as users read them, and the chosen plan.

Shared by detection (`detect.py`), the precedence of flags over the graph's own signature
(`signature.py`), shapes and export.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from converters.ckpt.loader import tensor_name

_MODE_FLAG_NAME = re.compile(r"train|keep_prob|dropout|mode|phase", re.IGNORECASE)


@dataclass(frozen=True)
class TensorDesc:
    """A tensor as a user reads it in a candidate list."""

    name: str
    dtype: str
    shape: tuple[int | None, ...] | None

    @property
    def shape_text(self) -> str:
        if self.shape is None:
            return "unknown shape"
        return "[" + ",".join("?" if d is None else str(d) for d in self.shape) + "]"

    @property
    def looks_like_mode_flag(self) -> bool:
        """Training switches: a scalar bool, or a scalar named like keep_prob/is_training."""
        scalar = self.shape == ()
        return (self.dtype == "bool" and self.shape in ((), None)) or (
            scalar and bool(_MODE_FLAG_NAME.search(self.name))
        )

    def suggested_fixed(self) -> str:
        value = "false" if self.dtype == "bool" else "1.0"
        return f"--fixed {self.name}={value}"


@dataclass
class SignaturePlan:
    """Signature key -> original tensor name, and the constants fed into fixed tensors."""

    inputs: dict[str, str]
    outputs: dict[str, str]
    fixed: dict[str, np.ndarray] = field(default_factory=dict)
    source: str = "flags"
    descs: dict[str, TensorDesc] = field(default_factory=dict)
    input_op_types: dict[str, str] = field(default_factory=dict)


def key_for(name: str) -> str:
    """A signature key from a tensor name: `scope/probs:0` -> `scope_probs`."""
    op, _, index = tensor_name(name).rpartition(":")
    key = re.sub(r"[^A-Za-z0-9_]", "_", op)
    return key if index == "0" else f"{key}_{index}"


def describe(graph: Any, name: str) -> TensorDesc:
    tensor = graph.get_tensor_by_name(name)
    shape = None if tensor.shape.rank is None else tuple(tensor.shape.as_list())
    return TensorDesc(name, tensor.dtype.base_dtype.name, shape)

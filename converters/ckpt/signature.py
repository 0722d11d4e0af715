"""Decide which tensors of a TF1 graph form the serving signature.

In order of precedence: `--input/--output` flags, the meta graph's own signature_def, or
detection (`detect.py`). The chosen plan is checked against the graph: every placeholder an
output needs is an input or fixed, with the flag to pass when it is not.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from converters.ckpt.detect import detect, needs_of, source_tensors, unique_keys
from converters.ckpt.loader import tensor_name
from converters.ckpt.plan import SignaturePlan, TensorDesc, describe, key_for
from converters.errors import UsageError


def from_signature_def(meta_graph: Any, fixed: Mapping[str, np.ndarray]) -> SignaturePlan | None:
    """The meta graph's own signature: `serving_default`, or its only one."""
    defs = {k: v for k, v in meta_graph.signature_def.items() if not k.startswith("__")}
    if not defs:
        return None
    if "serving_default" in defs:
        key = "serving_default"
    elif len(defs) == 1:
        key = next(iter(defs))
    else:
        raise UsageError(
            f"the meta graph has signatures {', '.join(sorted(defs))} and none is "
            "serving_default; pick tensors with --input/--output (see --list)"
        )
    sig = defs[key]
    return SignaturePlan(
        {k: v.name for k, v in sig.inputs.items()},
        {k: v.name for k, v in sig.outputs.items()},
        dict(fixed),
        f"from the meta graph's signature_def {key!r}",
    )


def parse_fixed_value(text: str, desc: TensorDesc) -> np.ndarray:
    """`true`, `0.5`, `3`, `[1, 2]` or a bare string, as the tensor's dtype."""
    lowered = text.strip().lower()
    try:
        if desc.dtype == "bool":
            if lowered not in {"true", "false", "1", "0"}:
                raise ValueError("use true or false")
            value = np.asarray(lowered in {"true", "1"})
        elif desc.dtype == "string":
            value = np.asarray(text.encode("utf-8"), dtype=object)
        else:
            value = np.asarray(json.loads(text)).astype(desc.dtype)
    except (ValueError, TypeError) as exc:
        raise UsageError(
            f"--fixed {desc.name}={text}: not a {desc.dtype} value ({exc}); "
            f"e.g. --fixed {desc.name}={'false' if desc.dtype == 'bool' else '1.0'}"
        ) from exc
    if desc.shape is not None and len(desc.shape) != value.ndim:
        raise UsageError(
            f"--fixed {desc.name}={text}: {desc.name} has shape {desc.shape_text}, "
            f"the value has {value.ndim} dimension(s)"
        )
    return value


def _check_names(graph: Any, names: Iterable[tuple[str, str]]) -> None:
    for flag, name in names:
        try:
            graph.get_tensor_by_name(name)
        except (KeyError, ValueError):
            raise UsageError(
                f"{flag}: no tensor {name!r} in the graph; run with --list to see the "
                "candidates (names look like scope/op:0)"
            ) from None


def resolve(
    graph: Any,
    meta_graph: Any,
    inputs: Mapping[str, str],
    outputs: Mapping[str, str],
    fixed_text: Mapping[str, str],
) -> SignaturePlan:
    """Combine flags, the meta graph's signature and detection into one checked plan."""
    fixed_names = {tensor_name(k): v for k, v in fixed_text.items()}
    inputs = {k: tensor_name(v) for k, v in inputs.items()}
    outputs = {k: tensor_name(v) for k, v in outputs.items()}
    _check_names(
        graph,
        [(f"--fixed {n}", n) for n in fixed_names]
        + [(f"--input {k}={v}", v) for k, v in inputs.items()]
        + [(f"--output {k}={v}", v) for k, v in outputs.items()],
    )
    fixed = {n: parse_fixed_value(t, describe(graph, n)) for n, t in fixed_names.items()}
    clash = sorted(set(inputs.values()) & set(fixed))
    if clash:
        raise UsageError(f"{clash[0]} is both an --input and --fixed; drop one of them")

    if inputs and outputs:
        plan = SignaturePlan(dict(inputs), dict(outputs), fixed, "from --input/--output")
    elif outputs:
        needed = needs_of(
            [graph.get_tensor_by_name(n) for n in outputs.values()],
            {t.name for t in source_tensors(graph)},
            set(fixed),
        )
        plan = SignaturePlan(unique_keys(needed), dict(outputs), fixed, "inputs detected")
    elif inputs:
        detected = detect(graph, fixed)
        plan = SignaturePlan(dict(inputs), detected.outputs, fixed, "outputs detected")
    else:
        plan = from_signature_def(meta_graph, fixed) or detect(graph, fixed)
    _check_plan(graph, plan)
    return plan


def _check_plan(graph: Any, plan: SignaturePlan) -> None:
    """Every placeholder an output needs must be an input or fixed, else serving breaks."""
    if not plan.outputs:
        raise UsageError("no outputs: pass at least one --output KEY=TENSOR")
    _check_names(
        graph,
        [(f"signature tensor {n}", n) for n in [*plan.inputs.values(), *plan.outputs.values()]],
    )
    fed = set(plan.inputs.values()) | set(plan.fixed)
    sources = {t.name for t in source_tensors(graph)} | fed
    for key, name in plan.outputs.items():
        missing = [
            n
            for n in needs_of([graph.get_tensor_by_name(name)], sources, set(plan.fixed))
            if n not in fed
        ]
        if missing:
            desc = describe(graph, missing[0])
            raise UsageError(
                f"output {key!r} ({name}) needs {desc.name} ({desc.dtype} {desc.shape_text}), "
                f"which is neither an input nor fixed; add --input "
                f"{key_for(desc.name)}={desc.name} or {desc.suggested_fixed()}"
            )
    for name in [*plan.inputs.values(), *plan.outputs.values(), *plan.fixed]:
        plan.descs[name] = describe(graph, name)
    for name in plan.inputs.values():
        plan.input_op_types[name] = graph.get_tensor_by_name(name).op.type

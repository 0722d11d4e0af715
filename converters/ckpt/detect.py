"""Detect a TF1 graph's serving signature from the graph alone, when no flag and no
signature_def says it. Detection takes the placeholders nobody defaulted (and dataset iterator outputs)
as possible inputs. A possible output is a sink of the graph (saver, gradient, optimizer,
assignment and init nodes set aside) that depends on an input and reads trained variables;
losses, metrics, summaries, queues, anything needing a label-like placeholder (one that
meets the weights only in the loss) and anything reading no variable are set aside with the
reason. When the prediction feeds the loss, the last tensor before the labels join in is
offered. The rest rank by coverage of the trained graph: variables read, then a batch
dimension, then depth. Detection answers only when one candidate reads every variable the
others read and more; otherwise it lists them with the flags to pass.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from converters.ckpt.plan import SignaturePlan, TensorDesc, describe, key_for
from converters.errors import UsageError

_SOURCE_TYPES = {"Placeholder", "PlaceholderV2"}
_ITERATOR_TYPES = {"IteratorGetNext", "IteratorGetNextSync", "IteratorGetNextAsOptional"}
_UPDATE_PREFIXES = ("Apply", "ResourceApply", "SparseApply", "ResourceSparseApply")
_UPDATE_TYPES = {
    "Assign",
    "AssignAdd",
    "AssignSub",
    "AssignVariableOp",
    "AssignAddVariableOp",
    "AssignSubVariableOp",
    "ScatterUpdate",
    "ScatterAdd",
    "ResourceScatterUpdate",
    "ResourceScatterAdd",
}
_SWITCH_TYPES = {"Switch", "RefSwitch"}
# Shape metadata is never a prediction, even when nothing consumes it.
_SHAPE_TYPES = {"Shape", "ShapeN", "Size", "Rank", "BroadcastGradientArgs"}
_BOOKKEEPING_TYPES = {
    "NoOp",
    "Const",
    "VariableV2",
    "Variable",
    "VarHandleOp",
    "ReadVariableOp",
    "IsVariableInitialized",
    "VarIsInitializedOp",
    "SaveV2",
    "Save",
    "SaveSlices",
    "RestoreV2",
    "Restore",
    "RestoreSlice",
    "MergeV2Checkpoints",
    "Assert",
    "Print",
    "PrintV2",
    "ScalarSummary",
    "HistogramSummary",
    "ImageSummary",
    "AudioSummaryV2",
    "TensorSummaryV2",
    "MergeSummary",
    "InitializeTableV2",
    "InitializeTable",
    "InitializeTableFromTextFileV2",
    "LookupTableImportV2",
    "MakeIterator",
    "IteratorV2",
    "OneShotIterator",
    "IteratorToStringHandle",
}
TRAINING_SCOPE = re.compile(
    r"(^|/)(gradients|save|report_uninitialized_variables|init)(_\d+)?(/|$)"
)
# tf.gradients names the gradient of op X `gradients/X_grad/...`: that is how a loss shows.
_GRADIENT_OF = re.compile(r"(?:^|/)gradients(?:_\d+)?/(.+?)_grad/")


@dataclass(frozen=True)
class OutputCandidate:
    """A tensor that could be the prediction, and how much of the trained graph it covers."""

    tensor: TensorDesc
    needs: tuple[str, ...]
    variables: tuple[str, ...] = ()
    depth: int = 0

    @property
    def batched(self) -> bool:
        shape = self.tensor.shape
        return bool(shape) and shape[0] is None

    @property
    def unbatched(self) -> bool:
        """Known to have no batch dimension: a scalar, or a fixed first dimension."""
        shape = self.tensor.shape
        return shape is not None and (not shape or shape[0] is not None)

    def rank_key(self) -> tuple:
        return (-len(self.variables), not self.batched, -self.depth, self.tensor.name)


@dataclass(frozen=True)
class SetAside:
    """A sink that is never offered as an output, and why."""

    tensor: TensorDesc
    reason: str


@dataclass
class Candidates:
    """Possible inputs and ranked possible outputs (best first), and what was set aside."""

    inputs: list[TensorDesc]
    outputs: list[OutputCandidate]
    set_aside: list[SetAside] = field(default_factory=list)

    def lines(self) -> list[str]:
        rows = ["candidate inputs (placeholders without a default, dataset iterator outputs):"]
        rows += [
            f"  {t.name:<28} {t.dtype:<8} {t.shape_text}"
            + ("   (looks like a mode flag: fix it)" if t.looks_like_mode_flag else "")
            for t in self.inputs
        ] or ["  (none)"]
        rows.append(
            "candidate outputs, best first (trained variables read, ops deep, inputs needed):"
        )
        for c in self.outputs:
            rows.append(
                f"  {c.tensor.name:<28} {c.tensor.dtype:<8} {c.tensor.shape_text:<14} "
                f"vars {len(c.variables):<3} depth {c.depth:<4} needs "
                + (", ".join(c.needs) or "nothing")
            )
            rows.append(f"      flags: {self.flags_for(c)}")
        if not self.outputs:
            rows.append("  (none: no tensor computed from an input reads trained variables)")
        if self.set_aside:
            rows.append("set aside (never offered as a prediction):")
            rows += [
                f"  {a.tensor.name:<28} {a.tensor.dtype:<8} {a.tensor.shape_text:<14} {a.reason}"
                for a in self.set_aside
            ]
        return rows

    def flags_for(self, candidate: OutputCandidate) -> str:
        """The exact flags that convert this candidate with what it needs."""
        by_name = {t.name: t for t in self.inputs}
        flags = []
        for name in candidate.needs:
            desc = by_name[name]
            flags.append(
                desc.suggested_fixed()
                if desc.looks_like_mode_flag
                else f"--input {key_for(name)}={name}"
            )
        flags.append(f"--output {key_for(candidate.tensor.name)}={candidate.tensor.name}")
        return " ".join(flags)

    def suggestion(self) -> str:
        """The flags that would pick the best-ranked output and what it needs."""
        if not self.outputs:
            return "--input KEY=TENSOR --output KEY=TENSOR"
        return self.flags_for(self.outputs[0])


class AmbiguousSignatureError(UsageError):
    """Detection found no single answer; the candidates say what to pass."""

    def __init__(self, reason: str, candidates: Candidates) -> None:
        super().__init__(
            f"cannot pick the signature on my own: {reason}; pass the flags shown above, "
            f"e.g. {candidates.suggestion()}"
        )
        self.candidates = candidates


def source_tensors(graph: Any) -> list[Any]:
    sources = []
    for op in graph.get_operations():
        if op.type in _SOURCE_TYPES or op.type in _ITERATOR_TYPES:
            sources.extend(op.outputs)
    return sources


def _is_branch_pivot(op: Any) -> bool:
    """TF1 cond's `switch_t`/`switch_f`: an Identity of a Switch marking a branch."""
    return op.type == "Identity" and bool(op.inputs) and op.inputs[0].op.type in _SWITCH_TYPES


def _is_update(op: Any) -> bool:
    return op.type in _UPDATE_TYPES or op.type.startswith(_UPDATE_PREFIXES)


def _is_training_seed(op: Any) -> bool:
    return _is_update(op) or bool(TRAINING_SCOPE.search(op.name))


def _training_ops(graph: Any) -> set[str]:
    """Gradient, optimizer, saver and assignment ops, and everything computed from them."""
    pending = [op for op in graph.get_operations() if _is_training_seed(op)]
    seen = {op.name for op in pending}
    while pending:
        op = pending.pop()
        for out in op.outputs:
            for consumer in out.consumers():
                if consumer.name not in seen:
                    seen.add(consumer.name)
                    pending.append(consumer)
    return seen


def needs_of(tensors: Iterable[Any], stop: set[str], fixed: set[str]) -> tuple[str, ...]:
    """Source tensors (`stop`) the given tensors depend on, not looking past fixed ones."""
    found: set[str] = set()
    seen: set[str] = set()
    pending = list(tensors)
    while pending:
        tensor = pending.pop()
        if tensor.name in fixed:
            continue
        if tensor.name in stop:
            found.add(tensor.name)
            continue
        op = tensor.op
        if op.name in seen:
            continue
        seen.add(op.name)
        pending.extend(op.inputs)
        for control in op.control_inputs:
            pending.extend(control.outputs or [])
            if not control.outputs and control.name not in seen:
                seen.add(control.name)
                pending.extend(control.inputs)
    return tuple(sorted(found))


VARIABLE_TYPES = {"VariableV2", "Variable", "VarHandleOp"}
# Ops that hand a variable's value on unchanged: their consumers are the ones that read it.
_VALUE_CARRIERS = {"Identity", "RefIdentity", "ReadVariableOp", "Enter", "RefEnter"}
_NOT_A_PREDICTION_TYPE = re.compile(r"Queue|Reader|Summary|Iterator|Dataset|Barrier|Stage")
_LOSS_NAME = re.compile(r"(loss|cost|xent|cross_?entropy|objective)(_\d+)?$", re.IGNORECASE)
_METRIC_NAME = re.compile(
    r"(^|/)(metrics?|accuracy|auc|precision|recall|summar(y|ies))(_\d+)?(/|$)", re.IGNORECASE
)
_NOT_TRAINED_COLLECTIONS = ("local_variables", "metric_variables", "global_step")


def _trained_variables(graph: Any) -> set[str]:
    """Variable ops holding trained state: not metric counters, local variables or the step."""
    names = {op.name for op in graph.get_operations() if op.type in VARIABLE_TYPES}
    for key in _NOT_TRAINED_COLLECTIONS:
        for variable in graph.get_collection(key):
            op = getattr(variable, "op", None)
            if op is not None:
                names.discard(op.name)
    return names


def _variable_readers(graph: Any, variables: set[str], training: set[str]) -> list[Any]:
    """Ops (outside training) that consume a variable's value: MatMul, Conv2D, a cond..."""
    readers: dict[str, Any] = {}
    pending = [t for op in graph.get_operations() if op.name in variables for t in op.outputs]
    seen: set[str] = set()
    while pending:
        tensor = pending.pop()
        if tensor.name in seen:
            continue
        seen.add(tensor.name)
        for consumer in tensor.consumers():
            if consumer.name in training:
                continue
            if consumer.type in _VALUE_CARRIERS:
                pending.extend(consumer.outputs)
            else:
                readers[consumer.name] = consumer
    return list(readers.values())


def ops_behind(tensors: Iterable[Any], stop: set[str]) -> dict[str, Any]:
    """The ops the tensors are computed from (data inputs), by name, not looking past the
    tensors named in `stop` (fixed tensors; for probes, the inputs too)."""
    reached: dict[str, Any] = {}
    pending = list(tensors)
    while pending:
        tensor = pending.pop()
        if tensor.name in stop or tensor.op.name in reached:
            continue
        reached[tensor.op.name] = tensor.op
        pending.extend(tensor.op.inputs)
    return reached


def _depths(graph: Any, sources: set[str], fixed: set[str]) -> dict[str, int]:
    """Longest chain of ops from a source to each op computed from one (loops cut)."""
    depth: dict[str, int] = {}
    for op in graph.get_operations():
        if any(t.name in sources for t in op.outputs):
            depth[op.name] = 0
            continue
        known = [depth[t.op.name] for t in op.inputs if t.name not in fixed and t.op.name in depth]
        if known:
            depth[op.name] = max(known) + 1
    return depth


@dataclass
class _GraphFacts:
    sources: set[str]
    fixed: set[str]
    trained: set[str]
    label_like: set[str]
    mode_flags: set[str]
    gradient_roots: set[str]  # what the optimizer differentiates: certainly a loss
    loss_named: set[str]  # named like a loss: a loss only when it also needs labels
    depth: dict[str, int]


def _graph_facts(
    graph: Any, sources: list[Any], fixed: set[str], training: set[str]
) -> _GraphFacts:
    source_names = {t.name for t in sources}
    trained = _trained_variables(graph)
    differentiated = {
        m.group(1) for op in graph.get_operations() if (m := _GRADIENT_OF.search(op.name))
    }
    # A loss is what the gradients start from: differentiated, read by nothing but training.
    gradient_roots = {
        op.name
        for op in graph.get_operations()
        if op.name in differentiated
        and all(
            c.name in training or c.type in _BOOKKEEPING_TYPES
            for out in op.outputs
            for c in out.consumers()
        )
    }
    loss_named = {
        op.name
        for op in graph.get_operations()
        if op.name not in training and _LOSS_NAME.search(op.name.rsplit("/", 1)[-1])
    }
    losses = gradient_roots | loss_named
    # A placeholder is feature-like when a trained weight is applied to something computed
    # from it; labels only meet the weights' results, in the loss.
    readers = _variable_readers(graph, trained, training)
    feeds_weights: set[str] = set()
    pending = [t for op in readers for t in op.inputs]
    seen: set[str] = set()
    while pending:
        tensor = pending.pop()
        if tensor.name in seen or tensor.name in fixed:
            continue
        seen.add(tensor.name)
        if tensor.name in source_names:
            feeds_weights.add(tensor.name)
            continue
        pending.extend(tensor.op.inputs)
    mode_flags = {t.name for t in sources if describe(graph, t.name).looks_like_mode_flag}
    label_like: set[str] = set()
    if trained:
        loss_tensors = [t for op in graph.get_operations() if op.name in losses for t in op.outputs]
        in_losses = set(needs_of(loss_tensors, source_names, fixed))
        label_like = in_losses - feeds_weights - mode_flags
    return _GraphFacts(
        source_names,
        fixed,
        trained,
        label_like,
        mode_flags,
        gradient_roots,
        loss_named,
        _depths(graph, source_names, fixed),
    )


def _judge(graph: Any, tensor: Any, facts: _GraphFacts) -> OutputCandidate | str:
    """A candidate, or the reason this tensor can never be the prediction."""
    op = tensor.op
    needs = needs_of([tensor], facts.sources, facts.fixed)
    labels = [n for n in needs if n in facts.label_like]
    if _NOT_A_PREDICTION_TYPE.search(op.type):
        return f"a {op.type} op (queues, readers, summaries are plumbing)"
    if op.name in facts.gradient_roots or (labels and op.name in facts.loss_named):
        return "a loss" + (f" (needs the labels {', '.join(labels)})" if labels else "")
    if labels:
        return f"needs {', '.join(labels)}, which feeds only the loss or metrics (labels)"
    if _METRIC_NAME.search(op.name):
        return "a metric"
    if not [n for n in needs if n not in facts.mode_flags]:
        return "depends on no input"
    reached = ops_behind([tensor], facts.fixed)
    variables = tuple(sorted(reached.keys() & facts.trained))
    if facts.trained and not variables:
        return "reads no trained variables (computed from the inputs alone)"
    return OutputCandidate(
        describe(graph, tensor.name), needs, variables, facts.depth.get(op.name, 0)
    )


def _predictions_inside(
    graph: Any, loss: Any, facts: _GraphFacts, needs: tuple[str, ...]
) -> list[OutputCandidate]:
    """The last tensors computed before the labels join in: what a loss scores."""
    found: list[OutputCandidate] = []
    seen: set[str] = set()
    frontier = list(loss.op.inputs)
    while frontier:
        tensor = frontier.pop(0)
        if tensor.name in seen or tensor.name in facts.sources or tensor.name in facts.fixed:
            continue
        seen.add(tensor.name)
        inner = needs_of([tensor], facts.sources, facts.fixed)
        if not inner:
            continue
        clean = not set(inner) & facts.label_like
        if clean and (facts.label_like or set(inner) < set(needs)):
            if tensor.op.type not in _SHAPE_TYPES | _SWITCH_TYPES:
                judged = _judge(graph, tensor, facts)
                if isinstance(judged, OutputCandidate):
                    found.append(judged)
        else:
            frontier.extend(tensor.op.inputs)
    return found


def _batched_inside(
    graph: Any, candidate: OutputCandidate, facts: _GraphFacts
) -> OutputCandidate | None:
    """The nearest batched tensor an unbatched candidate is reduced from, reading the same."""
    tensor = graph.get_tensor_by_name(candidate.tensor.name)
    frontier, seen = list(tensor.op.inputs), set()
    while frontier:
        inner = frontier.pop(0)
        if inner.name in seen or inner.name in facts.sources or inner.name in facts.fixed:
            continue
        seen.add(inner.name)
        if not needs_of([inner], facts.sources, facts.fixed):
            continue
        judged = _judge(graph, inner, facts)
        if (
            isinstance(judged, OutputCandidate)
            and judged.batched
            and set(judged.needs) == set(candidate.needs)
            and set(judged.variables) >= set(candidate.variables)
        ):
            return judged
        frontier.extend(inner.op.inputs)
    return None


def find_candidates(graph: Any, fixed: Iterable[str] = ()) -> Candidates:
    """Inputs and ranked outputs of a training or inference graph.

    A candidate output depends on an input and reads trained variables; losses, metrics,
    label-dependent tensors and plumbing are set aside with the reason. The rest are ranked
    by how much of the trained graph they cover: variables read, then a batch dimension,
    then depth. A candidate that is only a step on the way to another one reading the same
    variables (logits before softmax) is dropped in favour of it.
    """
    fixed = set(fixed)
    sources = [t for t in source_tensors(graph) if t.name not in fixed]
    training = _training_ops(graph)
    facts = _graph_facts(graph, sources, fixed, training)

    def kept(op: Any) -> bool:
        return (
            op.name not in training
            and op.type not in _BOOKKEEPING_TYPES
            and op.type not in _SOURCE_TYPES
            and op.type not in _ITERATOR_TYPES
        )

    # Ops used only as control dependencies are wiring, not results.
    controllers = {c.name for op in graph.get_operations() for c in op.control_inputs}
    outputs: dict[str, OutputCandidate] = {}
    set_aside: list[SetAside] = []
    label_sinks: list[tuple[Any, tuple[str, ...]]] = []
    for op in graph.get_operations():
        if not kept(op) or not op.outputs or op.type in _SHAPE_TYPES or op.type in _SWITCH_TYPES:
            continue
        if op.name in controllers or _is_branch_pivot(op):
            continue
        # A value assigned to a variable (moving averages, Adam's beta powers) is state.
        if any(_is_update(c) for out in op.outputs for c in out.consumers()):
            continue
        if any(kept(c) for out in op.outputs for c in out.consumers()):
            continue
        for out in op.outputs:
            needs = needs_of([out], facts.sources, fixed)
            if not needs:
                continue
            judged = _judge(graph, out, facts)
            if isinstance(judged, OutputCandidate):
                outputs[out.name] = judged
                continue
            set_aside.append(SetAside(describe(graph, out.name), judged))
            if op.name in facts.gradient_roots or set(needs) & facts.label_like:
                label_sinks.append((out, needs))
    for loss, needs in label_sinks:
        for inner in _predictions_inside(graph, loss, facts, needs):
            outputs.setdefault(inner.tensor.name, inner)
    for candidate in [c for c in outputs.values() if c.unbatched]:
        inner = _batched_inside(graph, candidate, facts)
        if inner is not None:
            del outputs[candidate.tensor.name]
            set_aside.append(
                SetAside(
                    candidate.tensor,
                    f"reduces {inner.tensor.name} over the batch (a statistic, not a prediction)",
                )
            )
            outputs.setdefault(inner.tensor.name, inner)
    ranked = _drop_steps(graph, list(outputs.values()), fixed)
    ranked.sort(key=OutputCandidate.rank_key)
    return Candidates([describe(graph, t.name) for t in sources], ranked, set_aside)


def _drop_steps(
    graph: Any, outputs: list[OutputCandidate], fixed: set[str]
) -> list[OutputCandidate]:
    """Drop a candidate computed on the way to another that needs and reads the same
    (logits before softmax), unless only the first keeps the batch dimension."""
    reach = {
        c.tensor.name: ops_behind([graph.get_tensor_by_name(c.tensor.name)], fixed) for c in outputs
    }
    kept = []
    for c in outputs:
        op_name = graph.get_tensor_by_name(c.tensor.name).op.name
        step = any(
            other is not c
            and op_name in reach[other.tensor.name]
            and set(other.needs) == set(c.needs)
            and set(c.variables) <= set(other.variables)
            and (other.batched or not c.batched)
            for other in outputs
        )
        if not step:
            kept.append(c)
    return kept


def detect(graph: Any, fixed: Mapping[str, np.ndarray]) -> SignaturePlan:
    """Pick the signature from the graph alone, or raise AmbiguousSignatureError."""
    candidates = find_candidates(graph, fixed)
    if not candidates.outputs:
        raise AmbiguousSignatureError(
            "no tensor computed from an input reads trained variables", candidates
        )
    best, *rest = candidates.outputs
    # One clear winner: every other candidate reads a strict subset of its variables.
    rivals = [c for c in rest if not set(c.variables) < set(best.variables)]
    if rivals:
        names = ", ".join(c.tensor.name for c in [best, *rivals][:4])
        raise AmbiguousSignatureError(
            f"several outputs could be the prediction ({names}); none covers the others' variables",
            candidates,
        )
    by_name = {t.name: t for t in candidates.inputs}
    flags = [n for n in best.needs if by_name[n].looks_like_mode_flag]
    if flags:
        raise AmbiguousSignatureError(
            f"{', '.join(flags)} looks like a training switch; fix it with --fixed", candidates
        )
    inputs = unique_keys(best.needs)
    outputs = unique_keys([best.tensor.name])
    return SignaturePlan(inputs, outputs, dict(fixed), "detected")


def unique_keys(names: Iterable[str]) -> dict[str, str]:
    keys: dict[str, str] = {}
    for name in names:
        key, n = key_for(name), 1
        while key in keys:
            n += 1
            key = f"{key_for(name)}_{n}"
        keys[key] = name
    return keys

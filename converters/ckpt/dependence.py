"""Do the signature's outputs follow its inputs? The check that refuses a constant output.

The checkpoint is fed pairs of different input batches: two random ones; two drawn in turn
from the values the graph itself knows (`probes.py`: table keys, ids within an embedding),
since random strings all miss a vocabulary and prove nothing; and the `--sample` rows in two
orders. An output identical within every pair would serve one number, and is refused. An
output the user named with `--output` is refused only with evidence: when an input it reads
is looked up in a table whose keys cannot be read here and no sample was given, it is kept
with a warning instead.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from converters.ckpt.plan import SignaturePlan
from converters.ckpt.probes import Probes, shown
from converters.errors import VerificationError
from converters.verify import (
    Arrays,
    InputSpec,
    constant_outputs,
    differs,
    random_inputs,
    sample_inputs,
)

_BATCH = 3


@dataclass(frozen=True)
class Trial:
    """Two different batches of inputs, and how a user reads where they came from."""

    label: str
    first: Arrays
    second: Arrays
    real: bool = False  # the user's own values (--sample): evidence whatever the tables hold


@dataclass
class Dependence:
    """What the trials showed: outputs refused as constant, outputs kept without proof."""

    trials: list[Trial]
    followed: list[str] = field(default_factory=list)  # changed within some trial
    constant: list[str] = field(default_factory=list)
    unproven: dict[str, str] = field(default_factory=dict)  # output key -> why not refused
    hints: list[str] = field(default_factory=list)  # what the user can do to check further

    def proof(self) -> str | None:
        """The line saying which outputs were seen to follow their inputs, if any were."""
        if not self.followed:
            return None
        tried = "; ".join(t.label for t in self.trials)
        which = "outputs" if not self.unproven else f"output {', '.join(self.followed)}"
        return f"{which} follow the inputs (tried {tried})"

    def error(self, plan: SignaturePlan) -> VerificationError:
        names = ", ".join(f"{k} ({plan.outputs[k]})" for k in self.constant)
        tried = "; ".join(t.label for t in self.trials)
        hints = "".join(f"{h}; " for h in self.hints)
        return VerificationError(
            f"output {names} does not change when the inputs change (identical values for "
            f"{tried}), so it would serve a constant; {hints}pick the prediction with "
            "--output (see --list), or pass --allow-constant-output if that is really meant"
        )


def _rows(arrays: Arrays) -> int:
    return min((len(v) for v in arrays.values() if v.ndim > 0), default=0)


def build_trials(
    specs: Mapping[str, InputSpec],
    shapes: Mapping[str, tuple[int, ...]],
    probes: Probes,
    sample: Path | None,
) -> list[Trial]:
    """Random batches; batches of the graph's own values (if any); the sample reordered."""
    bounds = probes.bounds()
    within = ", ".join(f"{k} from {shown(pool)}" for k, pool in bounds.items())
    trials = [
        Trial(
            f"two random batches with {within}" if within else "two random batches",
            random_inputs(specs, _BATCH, shapes, seed=101, pools=bounds),
            random_inputs(specs, _BATCH, shapes, seed=202, pools=bounds),
        )
    ]
    pools = {k: v for k, v in probes.pools().items() if k in specs}
    if set(pools) - set(bounds):  # ids alone were already fed in range above
        batch = max(_BATCH, *(len(p) for p in pools.values()))
        first = random_inputs(specs, batch, shapes, seed=0, pools=pools)
        second = random_inputs(specs, batch, shapes, seed=1, pools=pools)
        label = " and ".join(f"{k} = {shown(pool)}" for k, pool in pools.items())
        trials.append(Trial(f"values from the graph, {label}", first, second))
    if sample is not None:
        rows = sample_inputs(sample, specs)
        if _rows(rows) >= 2:
            rolled = {k: np.roll(v, 1, axis=0) if v.ndim else v for k, v in rows.items()}
            if differs(rows, rolled):
                trials.append(Trial("the --sample rows in two orders", rows, rolled, real=True))
    return trials


def check_dependence(
    run: Callable[[Arrays], Mapping[str, np.ndarray]],
    trials: list[Trial],
    probes: Probes,
    explicit: Collection[str],
) -> Dependence:
    """Which outputs stay the same within every trial, and which of those to refuse."""
    result = Dependence(trials)
    same = constant_outputs(run, [(t.first, t.second) for t in trials])
    result.followed = [k for k in probes.needs if k not in same]
    sampled = any(t.real for t in trials)
    hinted: set[str] = set()
    for key in same:
        needs = probes.needs.get(key, ())
        unread = {} if sampled else probes.unread(needs)
        if unread:
            reasons = "; ".join(r for found in unread.values() for r in found)
            hint = (
                f"{', '.join(unread)} is looked up in a table whose keys cannot be read here "
                f"({reasons}), so only random values were tried: pass real ones with --sample "
                "FILE.json"
            )
            if key in explicit:
                result.unproven[key] = hint
                continue
            if not set(unread) <= hinted:
                hinted.update(unread)
                result.hints.append(hint)
        blind = [] if sampled else [k for k in probes.unprobed_strings(needs) if k not in hinted]
        if blind:
            hinted.update(blind)
            result.hints.append(
                f"no lookup table or vocabulary is reached from string input {', '.join(blind)}, "
                "so only random strings were tried; if it needs real values, pass them with "
                "--sample FILE.json"
            )
        result.constant.append(key)
    return result

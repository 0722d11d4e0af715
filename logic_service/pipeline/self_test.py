"""The start-up self-test: no pipeline reports ready that cannot score.

Before a pipeline serves (and in `logic-service --check`, and when it is compiled), it scores
rows from its own contract (the parity gate's rows: every known category, numbers around the
fitted statistics, a null where one is imputed) plus its `samples:` records, one at a time
and together, through the exact path requests take: validation, features, the in-process
model and the postprocess hook (a graph_model pipeline stops at its features: the graph is
another tier). A row refused with a 4xx is a fair answer to that row; an exception is not,
and neither is a pipeline that can score none of them: either ends the start with one line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from logic_service.errors import ConfigError, LogicError
from logic_service.pipeline.parity import generated_rows
from logic_service.pipeline.runtime import Pipeline


@dataclass(frozen=True)
class SelfTest:
    """How a pipeline did on its own rows at start-up."""

    rows: int
    scored: int
    refused: int
    skipped: str = ""

    def describe(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "scored": self.scored,
            "refused": self.refused,
            "skipped": self.skipped,
        }

    def line(self) -> str:
        if self.skipped:
            return f"skipped ({self.skipped})"
        refused = f", {self.refused} refused with a 4xx" if self.refused else ""
        return f"{self.scored} of {self.rows} rows scored{refused}"


def self_test(pipeline: Pipeline, samples: list[dict[str, Any]], where: str) -> SelfTest:
    """Score the pipeline's contract rows and samples; a ConfigError when it cannot."""
    rows = [*samples, *(generated_rows(pipeline.contract) if pipeline.contract else [])]
    if not rows:
        return SelfTest(0, 0, 0, "no contract and no samples: add samples: to test it at start")
    scored, refused, first_refusal = 0, 0, ""
    validator = pipeline.validator
    assert validator is not None
    pipeline.validator = validator.quiet()  # its rows are not traffic: not counted or logged
    try:
        for index, row in enumerate(rows):
            try:
                _score(pipeline, [row])
            except LogicError as error:
                refused += 1
                first_refusal = first_refusal or f"row {index}: {error}"
                continue
            except Exception as error:  # the serving path itself is broken
                raise _broken(pipeline, where, f"row {index} of its contract rows", error) from None
            scored += 1
        if scored > 1:
            batch = list(rows)
            try:
                _score(pipeline, batch)
            except LogicError:
                pass  # a refused row refuses its batch: fair, and seen above
            except Exception as error:
                raise _broken(pipeline, where, f"its {len(batch)} rows at once", error) from None
    finally:
        pipeline.validator = validator
        pipeline.close_sessions()  # the master must not fork with a live onnxruntime session
    if scored == 0:
        raise ConfigError(
            f"{where}: self-test failed: none of its {len(rows)} contract rows could be scored "
            f"({first_refusal[:300]}); it would answer every request with an error"
        )
    return SelfTest(len(rows), scored, refused)


class _HookError(Exception):
    """The postprocess hook raised: the fix is in the hook, not in the artifacts."""


def _score(pipeline: Pipeline, rows: list[dict[str, Any]]) -> None:
    prepared = pipeline.prepare(rows)
    if pipeline.graph_backed:
        return
    outputs = pipeline.predict_local(prepared.features)
    try:
        pipeline.postprocess(outputs, prepared)
    except LogicError:
        raise
    except Exception as error:
        raise _HookError(f"{type(error).__name__}: {error}") from error


def _broken(pipeline: Pipeline, where: str, what: str, error: Exception) -> ConfigError:
    detail = (str(error).strip().splitlines() or [""])[0][:240]
    if isinstance(error, _HookError):
        return ConfigError(
            f"{where}: self-test failed: scoring {what}, its postprocess hook "
            f"{pipeline.spec.postprocess} raised {detail}; fix the hook (it runs on every request)"
        )
    if pipeline.build is not None:
        fix = "its compiled build fails here: run `logic-service compile` on this file again"
    elif pipeline.compiled:
        fix = "the graph compiled at start-up fails: set engine: sklearn and report it"
    else:
        versions = sorted({a.sklearn_version for a in pipeline.loaded() if a.sklearn_version})
        fix = (
            f"its artifacts (pickled by scikit-learn {', '.join(versions) or 'unknown'}) do not "
            "work in this service: serve it compiled (logic-service compile --config FILE) or "
            "with the scikit-learn that pickled it"
        )
    return ConfigError(
        f"{where}: self-test failed: scoring {what} raised {type(error).__name__}: {detail}; {fix}"
    )

"""One servable on the graph tier, as this worker process sees it.

A `RemoteTarget` exists per (graph address, model, version or label, signature): every
pipeline that calls that servable shares it. It owns what used to be scattered over
pipelines: the signature cache (one fetch serves every waiting thread, a failure is
remembered briefly, a refresh only when the graph says the request no longer fits the
signature), the circuit breaker, and the batcher that turns concurrent requests into one
`:predict`. Request threads shape and check their own rows here before they join a batch.

Every graph call is tracked while in flight (overdue.py): the watchdog opens the breaker
when one is overdue, the prober closes it again (prober.py), and on opening the requests
queued behind the stuck call are answered 503 at once.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from logic_service.config import GraphTarget, model_path
from logic_service.deadline import Deadline
from logic_service.errors import (
    BadRequestError,
    GraphRejectedError,
    GraphTimeoutError,
    LogicError,
)
from logic_service.graph.batcher import Batcher, Entry, Observe
from logic_service.graph.breaker import Breaker, BreakerOpenError
from logic_service.graph.client import (
    GraphBrokeOffError,
    GraphCallTimeoutError,
    GraphClient,
    GraphConnectError,
    GraphContractError,
)
from logic_service.graph.codecs import (
    Signature,
    decode_predict_response,
    decode_signature,
    encode_predict_request,
)
from logic_service.graph.overdue import CallTracker, Overdue, OverdueRule
from logic_service.graph.prober import ANSWERED, TIMEOUT, UNREACHABLE, Prober, Watchdog

log = logging.getLogger(__name__)

# How long a failed signature read is answered from memory instead of asking the graph again.
FAILURE_MEMORY_SECONDS = 1.0
# A graph-call timeout counts against the breaker only when the call had at least this long
# (or its whole configured limit): a caller's own 50 ms budget says nothing about the graph.
BREAKER_MIN_TIMEOUT = 1.0
_MAX_FORWARDED_IDS = 16
PROBE_REQUEST_ID = "breaker-probe"


@dataclass(frozen=True)
class TargetKey:
    """What makes two pipelines call the same servable."""

    url: str
    model: str
    version: int | None
    version_label: str | None
    signature_name: str

    @classmethod
    def of(cls, url: str, spec: GraphTarget) -> TargetKey:
        return cls(url, spec.model, spec.version, spec.version_label, spec.signature_name)

    @property
    def path(self) -> str:
        return model_path(self.model, self.version, self.version_label)

    @property
    def label(self) -> str:
        """Short name for metrics, logs and /ready: `credit`, `credit@2`, `credit@stable/sig`."""
        name = self.model
        if self.version is not None:
            name += f"@{self.version}"
        elif self.version_label is not None:
            name += f"@{self.version_label}"
        if self.signature_name != "serving_default":
            name += f"/{self.signature_name}"
        return name


@dataclass(frozen=True)
class BatchPolicy:
    """How one pipeline's requests reach its target."""

    max_rows: int = 256
    max_wait: float = 0.0


class SignatureCache:
    """Single-flight cache of one signature; never holds its lock across the network call."""

    def __init__(self, fetch: Callable[[float], Signature], read_timeout: float) -> None:
        self._fetch = fetch
        self._read_timeout = read_timeout
        self._lock = threading.Lock()
        self._value: Signature | None = None
        self._inflight: threading.Event | None = None
        self._failure: tuple[LogicError, float] | None = None
        self.ever_read = False
        self.last_error: str | None = None

    @property
    def value(self) -> Signature | None:
        return self._value

    def get(self, deadline: Deadline | None = None) -> Signature:
        """The cached signature, else one fetch shared by every thread that asks meanwhile."""
        while True:
            value = self._value
            if value is not None:
                return value
            with self._lock:
                if self._value is not None:
                    continue
                if self._failure is not None and time.monotonic() < self._failure[1]:
                    raise self._failure[0]
                leader = self._inflight is None
                if leader:
                    self._inflight = threading.Event()
                event = self._inflight
            assert event is not None
            if leader:
                return self._lead(event, deadline)
            waited = event.wait(deadline.remaining() if deadline is not None else None)
            if not waited:
                raise GraphTimeoutError(
                    "request deadline passed while the graph signature was being read"
                )

    def refresh(self, stale: Signature, deadline: Deadline | None) -> Signature:
        """Drop `stale` (if nobody has yet) and read again; concurrent callers share one read."""
        with self._lock:
            if self._value is stale:
                self._value = None
                self._failure = None
        return self.get(deadline)

    def _lead(self, event: threading.Event, deadline: Deadline | None) -> Signature:
        timeout = (
            self._read_timeout
            if deadline is None
            else min(deadline.remaining(), self._read_timeout)
        )
        try:
            signature = self._fetch(timeout)
        except LogicError as error:
            with self._lock:
                self._failure = (error, time.monotonic() + FAILURE_MEMORY_SECONDS)
                self._inflight = None
                self.last_error = str(error)
            event.set()
            raise
        with self._lock:
            self._value, self._failure, self._inflight = signature, None, None
            self.ever_read, self.last_error = True, None
        event.set()
        return signature


class RemoteTarget:
    """Signature cache + breaker + batcher for one servable, shared by its pipelines."""

    def __init__(
        self,
        key: TargetKey,
        client: GraphClient,
        *,
        breaker_failures: int = 5,
        breaker_reset: float = 5.0,
        slots: int = 1,
        policy: BatchPolicy | None = None,
        on_breaker_change: Callable[[str, int], None] | None = None,
        observe_batch: Observe | None = None,
        count_call: Callable[[str, str], None] | None = None,
        overdue: OverdueRule | None = None,
        count_breaker_event: Callable[[str, str], None] | None = None,
        label: str | None = None,
    ) -> None:
        self.key = key
        self.label = label or key.label  # a shadow's is its own: "credit@canary (shadow)"
        self.client = client
        self.signatures = SignatureCache(self._fetch_signature, client.read_timeout)
        self.breaker = Breaker(
            f"{self.label} at {key.url}",
            breaker_failures,
            breaker_reset,
            on_change=(lambda state: on_breaker_change(self.label, state))
            if on_breaker_change
            else None,
            on_open=self._opened,
        )
        self._count_event = count_breaker_event
        self.calls = CallTracker(overdue or OverdueRule())
        self.watchdog = (
            Watchdog(self.label, self.calls, self.breaker, self._overdue)
            if self.calls.rule.enabled and self.breaker.enabled
            else None
        )
        self.prober = Prober(
            self.label,
            self.breaker,
            self._probe,
            client.read_timeout,
            on_outcome=lambda outcome: self._event(f"probe_{outcome}"),
        )
        # The inputs of the last answered call (and whether they are one row per record):
        # what a probe sends, so a probe asks the model itself, not only the server.
        self._last_answered: tuple[Any, bool] | None = None
        policy = policy or BatchPolicy()
        self.batcher = Batcher(
            self.label,
            self._send,
            max_rows=policy.max_rows,
            max_wait=policy.max_wait,
            slots=slots,
            observe=observe_batch,
        )
        self._count_call = count_call
        self._reader_pid: int | None = None
        self._reader_lock = threading.Lock()

    # --- the request path ---------------------------------------------------------------

    def predict(
        self,
        spec: GraphTarget,
        pipeline: str,
        features: Any,
        rows: int,
        *,
        deadline: Deadline,
        request_id: str,
        batching: bool,
        trace: dict[str, Any] | None = None,
    ) -> Any:
        """Outputs for one request's features: checked here, then batched (or sent alone).
        `trace` receives the batch's id and size for the request's log line."""
        self.breaker.check()
        signature = self.signatures.get(deadline)
        limit = spec.timeout or self.client.read_timeout
        entry = self._entry(spec, pipeline, features, rows, signature, deadline, limit, request_id)
        try:
            return self._call(entry, batching, trace)
        except GraphContractError:
            # The graph may have rolled out a version with another signature: read it again
            # (one read for all threads) and retry once if it really changed.
            fresh = self.signatures.refresh(signature, deadline)
            if fresh == signature:
                raise
            log.info("graph %s: signature changed; retrying with the new one", self.label)
            entry = self._entry(spec, pipeline, features, rows, fresh, deadline, limit, request_id)
            return self._call(entry, batching, trace)

    def _call(self, entry: Entry, batching: bool, trace: dict[str, Any] | None) -> Any:
        try:
            if batching:
                return self.batcher.submit(entry)
            entry.batch_size = 1
            return self._send([entry])[0]
        finally:
            if trace is not None and entry.batch_size:
                trace["batch_id"], trace["batch_size"] = entry.batch_id, entry.batch_size

    def _entry(  # noqa: PLR0917 - one private call site, positional reads best there
        self,
        spec: GraphTarget,
        pipeline: str,
        features: Any,
        rows: int,
        signature: Signature,
        deadline: Deadline,
        limit: float,
        request_id: str,
    ) -> Entry:
        inputs = graph_inputs(spec, pipeline, features, signature)
        check_inputs(pipeline, inputs, signature)
        layout = tuple((name, a.dtype.str, a.shape[1:]) for name, a in sorted(inputs.items()))
        row_aligned = all(a.ndim >= 1 and a.shape[0] == rows for a in inputs.values())
        # Requests whose tensors do not carry one row per record cannot be split: they go alone.
        key = (spec.output, layout) if row_aligned else object()
        return Entry(inputs, rows, key, deadline, limit, request_id)

    def _send(self, entries: Sequence[Entry]) -> list[Any]:
        """One `:predict` for `entries`; the outputs split back in order."""
        first = entries[0]
        if len(entries) == 1:
            inputs = first.inputs
        else:
            inputs = {
                name: np.concatenate([entry.inputs[name] for entry in entries])
                for name in first.inputs
            }
        timeout = max(entry.call_timeout() for entry in entries)
        if timeout <= 0:
            raise GraphTimeoutError(
                f"request deadline ({first.deadline.budget:.3g}s) passed before graph "
                f"{self.label} could be called"
            )
        body = encode_predict_request(self.key.signature_name, inputs)
        self.breaker.check()  # the last look before the batch goes out
        if self.watchdog is not None:
            self.watchdog.ensure_running()
        ids = [entry.request_id for entry in entries[:_MAX_FORWARDED_IDS] if entry.request_id]
        call = self.calls.begin()
        answered = False
        try:
            raw = self.client.predict(
                self.key.path, body, request_id=",".join(ids), timeout=timeout
            )
            answered = True
        except GraphConnectError:
            self._outcome("unreachable")
            self.breaker.failure()
            raise
        except GraphCallTimeoutError as error:
            self._outcome("timeout")
            # A timeout says something about the graph only when the call had time enough.
            if error.allowed >= min(BREAKER_MIN_TIMEOUT, max(e.call_limit for e in entries)):
                self.breaker.failure()
            raise
        except LogicError:
            self._outcome("error")
            self.breaker.success()  # the graph answered: it is up
            raise
        finally:
            self.calls.end(call, answered)
        self.breaker.success()
        self._outcome("ok")
        self._last_answered = (first.inputs, isinstance(first.key, tuple))
        output = first.key[0] if isinstance(first.key, tuple) else None
        outputs = decode_predict_response(raw, output)
        return split_outputs(outputs, [entry.rows for entry in entries], self.label)

    def _outcome(self, outcome: str) -> None:
        if self._count_call is not None:
            self._count_call(self.label, outcome)

    # --- breaker: opened by an overdue call, closed by a probe ----------------------------

    def _overdue(self, verdict: Overdue) -> None:
        """The watchdog's verdict: open the breaker while the call is still in flight."""
        if self.breaker.trip(verdict.reason()):
            log.warning("graph %s: %s; breaker opened", self.label, verdict.reason())

    def _opened(self, error: BreakerOpenError) -> None:
        """The breaker opened (any reason): answer the queue now, probe in the background."""
        self._event(f"opened_{self.breaker.cause}")
        answered = self.batcher.fail_queued(error)
        if answered:
            log.info("graph %s: %d queued request(s) answered 503", self.label, answered)
        self.prober.start()

    def _probe(self, timeout: float) -> str:
        """One probe call: the last answered inputs (one row) to :predict, or, before any
        call was answered, the model's metadata. Any answer at all means the graph is up."""
        remembered = self._last_answered
        try:
            if remembered is None:
                self.client.metadata(self.key.path, timeout=timeout, request_id=PROBE_REQUEST_ID)
            else:
                inputs, row_aligned = remembered
                if row_aligned:
                    inputs = {name: array[:1] for name, array in inputs.items()}
                body = encode_predict_request(self.key.signature_name, inputs)
                self.client.predict(
                    self.key.path, body, request_id=PROBE_REQUEST_ID, timeout=timeout
                )
        except GraphCallTimeoutError:
            return TIMEOUT
        except (GraphConnectError, GraphBrokeOffError):
            return UNREACHABLE
        except LogicError:
            return ANSWERED  # an error from the graph is still an answer
        return ANSWERED

    def _event(self, event: str) -> None:
        if self._count_event is not None:
            self._count_event(self.label, event)

    # --- signature and readiness ----------------------------------------------------------

    def _fetch_signature(self, timeout: float) -> Signature:
        payload = self.client.metadata(self.key.path, timeout=timeout)
        return decode_signature(payload, self.key.signature_name)

    def read_signature(self, timeout: float) -> Signature:
        """Start-up read with its own bound (not a request's deadline)."""
        return self.signatures.get(Deadline(timeout))

    def ensure_reader(self) -> None:
        """Until the signature has been read once, keep trying in a background thread of
        this process (bounded calls, growing pauses). Never blocks the caller."""
        if self.signatures.ever_read or self._reader_pid == os.getpid():
            return
        with self._reader_lock:
            if self._reader_pid == os.getpid():
                return
            self._reader_pid = os.getpid()
        threading.Thread(
            target=self._read_until_done, name=f"signature-{self.label}", daemon=True
        ).start()

    def _read_until_done(self) -> None:
        pause = 0.5
        while not self.signatures.ever_read:
            try:
                self.signatures.get(Deadline(self.client.read_timeout))
            except LogicError as error:
                log.info("graph %s: signature not read yet (%s)", self.label, error)
                time.sleep(pause)
                pause = min(pause * 2, 5.0)

    def status(self) -> dict[str, Any]:
        """For /ready: never calls the graph, never waits on a lock held across a call."""
        info: dict[str, Any] = {
            "graph": self.key.url,
            "model": self.key.model,
            "signature_read": self.signatures.ever_read,
            "breaker": self.breaker.snapshot(),
            "queued": self.batcher.queued(),
            "calls": self.calls.snapshot(),
        }
        if not self.signatures.ever_read and self.signatures.last_error:
            info["last_error"] = self.signatures.last_error
        return info


def graph_inputs(
    spec: GraphTarget, pipeline: str, features: Any, signature: Signature
) -> dict[str, np.ndarray]:
    """Name the feature tensor(s) after the signature's inputs and cast to their dtypes."""
    if isinstance(features, Mapping):
        named = dict(features)
    else:
        key = spec.input
        if key is None:
            if len(signature.inputs) != 1:
                raise GraphRejectedError(
                    f"pipeline {pipeline!r}: graph model {spec.model!r} has inputs "
                    f"{', '.join(sorted(signature.inputs))}; set 'input:' in the pipeline "
                    "file or return a dict from the preprocess hook"
                )
            key = next(iter(signature.inputs))
        named = {key: features}
    inputs = {}
    for key, value in named.items():
        tensor = signature.inputs.get(key)
        if tensor is None:
            raise GraphRejectedError(
                f"pipeline {pipeline!r}: graph model {spec.model!r} has no input {key!r} "
                f"(has: {', '.join(sorted(signature.inputs))})"
            )
        array = np.asarray(value)
        if tensor.dtype.kind != "O" and array.dtype != tensor.dtype:
            try:
                array = array.astype(tensor.dtype)
            except (ValueError, TypeError) as error:
                raise BadRequestError(
                    f"pipeline {pipeline!r}: features for input {key!r} cannot be cast "
                    f"to {tensor.dtype}: {error}"
                ) from None
        inputs[key] = array
    return inputs


def check_inputs(pipeline: str, inputs: dict[str, np.ndarray], signature: Signature) -> None:
    """The per-request checks a batch must never discover: NaN/inf and the signature's widths."""
    for name, array in inputs.items():
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise BadRequestError(
                f"input {name!r} holds NaN or infinity after preprocessing; impute missing "
                "values in the transformer or send complete records"
            )
        shape = signature.inputs[name].shape
        if shape is None:
            continue
        if len(shape) != array.ndim or any(
            want not in (-1, got) for want, got in zip(shape[1:], array.shape[1:], strict=False)
        ):
            raise GraphRejectedError(
                f"pipeline {pipeline!r}: features for input {name!r} have shape "
                f"{list(array.shape)} but the graph signature expects {list(shape)} "
                "(-1 = any size); the transformer and the graph model do not match"
            )


def split_outputs(outputs: Any, counts: list[int], label: str) -> list[Any]:
    """The batch's outputs cut back into one piece per request, by row counts."""
    if len(counts) == 1:
        return [outputs]
    total = sum(counts)
    bounds = list(itertools.pairwise(itertools.accumulate(counts, initial=0)))
    arrays = outputs if isinstance(outputs, dict) else {None: outputs}
    for name, array in arrays.items():
        if np.ndim(array) == 0 or len(array) != total:
            raise GraphRejectedError(
                f"graph {label} answered {np.shape(array)} for output {name!r} to a batch of "
                f"{total} rows: outputs must have one row per input row"
            )
    # Plain slices (views): np.split costs several times more for the few rows a batch has.
    pieces = {name: [array[a:b] for a, b in bounds] for name, array in arrays.items()}
    if not isinstance(outputs, dict):
        return pieces[None]
    return [{name: parts[i] for name, parts in pieces.items()} for i in range(len(counts))]

"""One loaded SavedModel version, run the way TF Serving's C++ loader runs it.

The version is loaded into a TF1-style Session with the SavedModel loader (as
`LoadSavedModel` does in TF Serving), and each signature becomes a Session callable that feeds
the signature's input tensors by name and fetches its outputs by name. So, as in TF Serving,
the graph decides which shapes it accepts (half_plus_two's `x` is declared [-1, 1] and is fed
[3]); a shape or dtype the graph refuses comes back as the runtime's INVALID_ARGUMENT. The
deadline travels in the RunOptions, so the runtime itself cancels a call that outlives it
(DEADLINE_EXCEEDED): for REST --rest_api_timeout_in_ms; for gRPC the caller's own deadline, as
TF Serving passes it (no deadline: no limit). A callable's RunOptions are fixed when it is
built, so a gRPC deadline is rounded up to a power of two milliseconds and each such bucket
gets its own callable, built once: the run is cancelled at most twice the remaining time
after it started, never before the caller's deadline. (Session.run with per-call options
would be exact, but it checks feed shapes in Python first, which TF Serving does not.)

Why callables and not `tf.saved_model.load` concrete functions: measured on a 16->1 dense
model (benchmarks/bench_graph.py, 1 row), a concrete-function call costs about 270 us, a
Session.run by tensor name about 210 us, `make_callable` about 200 us and a callable built
from CallableOptions about 25 us; and concrete functions refuse any shape outside the
signature's TensorSpec, which TF Serving does not.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from graph_service.errors import (
    DeadlineExceededError,
    InvalidArgumentError,
    ServingError,
    from_tensorflow,
)
from graph_service.models.saved_model import (
    LoadError,
    read_meta_graph,
    read_signature_defs,
    signature_model,
)
from tfs_protocol.constants import CLASSIFY_METHOD, REGRESS_METHOD, SERVE_TAG
from tfs_protocol.signature import Signature

__all__ = [
    "CLASSIFY_METHOD",
    "REGRESS_METHOD",
    "SERVE_TAG",
    "LoadError",
    "Servable",
    "load_servable",
    "read_signature_defs",
]

logger = logging.getLogger(__name__)


class SignatureRunner:
    """One signature as a Session callable: inputs fed by tensor name, outputs fetched by name."""

    def __init__(self, session: Any, signature_def: Any, timeout_ms: int) -> None:
        self.input_keys = sorted(signature_def.inputs)
        self.output_keys = sorted(signature_def.outputs)
        self._feeds = [signature_def.inputs[k].name for k in self.input_keys]
        self._fetches = [signature_def.outputs[k].name for k in self.output_keys]
        self._session = session
        self._timeout_ms = timeout_ms
        self._callables: dict[int, Any] = {}  # by timeout: REST's, gRPC buckets, 0 (none)
        self._lock = threading.Lock()

    def _callable(self, timeout_ms: int) -> Any:
        run = self._callables.get(timeout_ms)
        if run is None:
            with self._lock:
                run = self._callables.get(timeout_ms)
                if run is None:
                    run = self._callables[timeout_ms] = self._build(timeout_ms)
        return run

    def _build(self, timeout_ms: int) -> Any:
        from tensorflow.core.protobuf import config_pb2

        options = config_pb2.CallableOptions(feed=self._feeds, fetch=self._fetches)
        if timeout_ms > 0:
            options.run_options.timeout_in_ms = timeout_ms
        make = getattr(self._session, "_make_callable_from_options", None)
        if make is not None:
            return make(options)
        # The fast constructor is private TensorFlow API; if a release drops it, say so once
        # and run the same feeds and fetches through the public Session.run.
        logger.warning("Session._make_callable_from_options missing: using Session.run")
        return functools.partial(self._run_once, timeout_ms=timeout_ms)

    def _run_once(self, *arrays: np.ndarray, timeout_ms: int) -> list:
        from tensorflow.core.protobuf import config_pb2

        options = config_pb2.RunOptions(timeout_in_ms=max(timeout_ms, 0))
        feed = dict(zip(self._feeds, arrays, strict=True))
        return self._session.run(self._fetches, feed, options=options)

    def __call__(
        self, inputs: Mapping[str, np.ndarray], timeout_ms: int | None = None
    ) -> dict[str, np.ndarray]:
        """Run under the REST deadline (`timeout_ms` None), or a gRPC caller's deadline
        rounded up to its bucket (0: no limit)."""
        missing = [k for k in self.input_keys if k not in inputs]
        if missing:
            raise InvalidArgumentError(f"Missing input tensor(s): {', '.join(missing)}")
        timeout = self._timeout_ms if timeout_ms is None else deadline_bucket(timeout_ms)
        values = self._callable(timeout)(*[inputs[k] for k in self.input_keys])
        return {k: np.asarray(v) for k, v in zip(self.output_keys, values, strict=True)}


def deadline_bucket(timeout_ms: int) -> int:
    """`timeout_ms` rounded up to a power of two (0 stays 0: no limit)."""
    return 0 if timeout_ms <= 0 else 1 << (timeout_ms - 1).bit_length()


@dataclass
class Servable:
    """A version ready to serve: signature defs (for metadata and decoding) and functions."""

    name: str
    version: int
    path: Path
    signature_defs: Mapping[str, Any]
    functions: Mapping[str, Any]
    # Keeps the loaded object (and its variables) alive as long as the servable is used.
    handle: Any = field(repr=False, default=None)
    _models: dict[str, Signature] = field(default_factory=dict, repr=False, compare=False)

    def signature(self, key: str) -> Any:
        """The SignatureDef proto for `key`, with TF Serving's message when it is missing."""
        sig = self.signature_defs.get(key)
        if sig is None or key not in self.functions:
            raise InvalidArgumentError(
                f'Serving signature name: "{key}" not found in signature def'
            )
        return sig

    def signature_model(self, key: str) -> Signature:
        """The signature as the shared `tfs_protocol.Signature` (built once per key)."""
        model = self._models.get(key)
        if model is None:
            model = self._models[key] = signature_model(key, self.signature(key))
        return model

    def input_dtypes(self, key: str) -> dict[str, str]:
        """{input key: 'DT_...'} of a signature, in key order."""
        return self.signature_model(key).input_dtypes()

    def run(
        self, key: str, inputs: Mapping[str, np.ndarray], timeout_ms: int | None = None
    ) -> dict[str, np.ndarray]:
        """Run a signature; TensorFlow errors become ServingErrors with the runtime's message.
        `timeout_ms`: a gRPC caller's deadline (0: none); None: the REST deadline."""
        import tensorflow as tf

        self.signature(key)
        runner = self.functions[key]
        try:
            return runner(inputs, timeout_ms)
        except ServingError:
            raise
        except tf.errors.DeadlineExceededError as exc:
            raise DeadlineExceededError(
                f"Deadline Exceeded: the model ran past the request deadline ({exc.message})"
            ) from None
        except (tf.errors.OpError, TypeError, ValueError) as exc:
            raise from_tensorflow(exc) from None

    def close(self) -> None:
        """Release the session (its graph and variables) once no request uses it."""
        close = getattr(self.handle, "close", None)
        if close is not None:
            close()


def load_servable(
    name: str, version: int, export_dir: Path, *, run_timeout_ms: int = 0
) -> Servable:
    """Load one version folder; LoadError with a one-line reason when it cannot serve."""
    import tensorflow as tf

    meta = read_meta_graph(export_dir)
    signature_defs = dict(meta.signature_def)
    if not signature_defs:
        raise LoadError(f"{export_dir}: the SavedModel has no signatures to serve", "NOT_FOUND")
    graph = tf.Graph()
    # Ops run in the calling request thread (inter_op_parallelism_threads < 0): no hand-off
    # to a pool, and one model's long calls hold only their own request threads (bounded by
    # its slots, graph_service.models.pools), never a process-wide pool that other models need.
    # Multi-threaded kernels use an intra-op pool of the version's own, not the process's.
    config = tf.compat.v1.ConfigProto(
        use_per_session_threads=True,
        inter_op_parallelism_threads=-1,
        intra_op_parallelism_threads=os.cpu_count() or 1,
    )
    session = tf.compat.v1.Session(graph=graph, config=config)
    try:
        with graph.as_default():
            tf.compat.v1.saved_model.loader.load(session, [SERVE_TAG], str(export_dir))
    except (tf.errors.OpError, OSError, ValueError, RuntimeError, KeyError) as exc:
        session.close()
        reason = " ".join(str(exc).split())[:500]
        raise LoadError(f"Failed to load {export_dir}: {reason}", "DATA_LOSS") from None
    graph.finalize()
    runners = {
        key: SignatureRunner(session, sig, run_timeout_ms) for key, sig in signature_defs.items()
    }
    logger.info("loaded %s version %d from %s (%s)", name, version, export_dir, ", ".join(runners))
    return Servable(name, version, export_dir, signature_defs, runners, session)

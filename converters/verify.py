"""Prove an export predicts what its source model predicts, the way TF Serving will load it.

Two loaders are checked: TensorFlow 2's `tf.saved_model.load`, and a TF1 session through
`tf.compat.v1.saved_model.loader.load`, which runs only the SavedModel's own init op like
TF Serving's C++ loader does. The second catches lookup tables that TF2's Python loader
initialises quietly but that would be uninitialised in production. Inputs are fed at two
batch sizes so a batch dimension frozen to 1 is caught here, not by the first real request.
A converter that knows values an input takes (a lookup table's keys) passes them as pools,
since random strings all miss a table and prove nothing about it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from converters.errors import UsageError, VerificationError

Arrays = dict[str, np.ndarray]
Reference = Callable[[Arrays], Mapping[str, np.ndarray]]

SERVE_TAG = "serve"
DEFAULT_BATCH_SIZES = (1, 3)
_UNKNOWN_DIM_FILL = 2


@dataclass(frozen=True)
class InputSpec:
    """One signature input as numpy sees it; `None` dims are unknown."""

    name: str
    dtype: np.dtype
    shape: tuple[int | None, ...] | None


def default_atol(dtype: np.dtype) -> float:
    """Tolerance by output dtype: float32 1e-5, half precision 1e-2, exact otherwise."""
    if dtype == np.float16 or dtype.name == "bfloat16":
        return 1e-2
    if np.issubdtype(dtype, np.floating):
        return 1e-5
    return 0.0


@dataclass
class OutputParity:
    key: str
    dtype: str
    max_abs_diff: float
    atol: float

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= self.atol


@dataclass
class VerifyReport:
    """What was compared, and the worst difference per output."""

    outputs: dict[str, OutputParity] = field(default_factory=dict)
    batch_sizes: tuple[int, ...] = ()
    loaders: tuple[str, ...] = ("tf.saved_model.load", "tf1 session loader")

    def record(self, key: str, dtype: np.dtype, diff: float, atol: float | None) -> None:
        limit = default_atol(dtype) if atol is None else atol
        previous = self.outputs.get(key)
        if previous is None or diff > previous.max_abs_diff:
            self.outputs[key] = OutputParity(key, dtype.name, diff, limit)

    @property
    def ok(self) -> bool:
        return all(parity.ok for parity in self.outputs.values())

    def lines(self) -> list[str]:
        sizes = ", ".join(str(b) for b in self.batch_sizes)
        header = f"parity at batch sizes {sizes}, loaders: {' + '.join(self.loaders)}"
        rows = [
            f"  {p.key:<24} {p.dtype:<8} max |diff| {p.max_abs_diff:.3g}"
            f" (atol {p.atol:g}) {'ok' if p.ok else 'FAIL'}"
            for p in self.outputs.values()
        ]
        return [header, *rows]


def load_sample(path: Path, keys: Sequence[str]) -> Arrays:
    """Read `--sample`: .npz arrays or a .json object mapping input keys to nested lists."""
    if not path.is_file():
        raise UsageError(f"--sample {path}: no such file; pass an .npz or .json of inputs")
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                sample = {k: data[k] for k in data.files}
        elif path.suffix == ".json":
            raw = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(raw, dict):
                raise ValueError("top level must be an object of input name -> list")
            sample = {k: np.asarray(v) for k, v in raw.items()}
        else:
            raise UsageError(f"--sample {path}: use a .npz or .json file")
    except (ValueError, OSError) as exc:
        raise UsageError(f"--sample {path}: cannot read it ({exc})") from exc
    missing = [k for k in keys if k not in sample]
    if missing:
        raise UsageError(
            f"--sample {path}: no array for input(s) {', '.join(missing)}; "
            f"it must hold every signature input: {', '.join(keys)}"
        )
    return {k: sample[k] for k in keys}


def sample_inputs(path: Path, specs: Mapping[str, InputSpec]) -> Arrays:
    """`--sample` read and cast to each signature input's dtype."""
    return {k: _cast(v, specs[k].dtype, k) for k, v in load_sample(path, list(specs)).items()}


def random_inputs(
    specs: Mapping[str, InputSpec],
    batch: int,
    shapes: Mapping[str, tuple[int, ...]] | None = None,
    seed: int = 0,
    pools: Mapping[str, np.ndarray] | None = None,
) -> Arrays:
    """Inputs of each spec's dtype and shape, with `batch` rows: random, except that an input
    with a pool (the keys its lookup table holds) takes the pool's values in turn, starting
    `seed` places in, so two seeds differ in every element.
    """
    rng = np.random.default_rng(seed)
    inputs: Arrays = {}
    for key, spec in specs.items():
        if shapes and key in shapes:
            dims = [batch, *shapes[key]]
        elif spec.shape is None:
            dims = [batch, _UNKNOWN_DIM_FILL]
        elif len(spec.shape) == 0:
            dims = []
        else:
            dims = [batch, *(_UNKNOWN_DIM_FILL if d is None else d for d in spec.shape[1:])]
        if pools and key in pools and len(pools[key]):
            inputs[key] = _cycled(pools[key], spec.dtype, tuple(dims), seed)
        else:
            inputs[key] = _random_array(rng, spec.dtype, tuple(dims))
    return inputs


def _cycled(pool: np.ndarray, dtype: np.dtype, shape: tuple[int, ...], start: int) -> np.ndarray:
    """Element (row i, position j) is pool[(i + j + start) % len(pool)]."""
    rows = shape[0] if shape else 1
    per_row = int(np.prod(shape[1:], dtype=np.int64)) if len(shape) > 1 else 1
    index = (np.arange(rows)[:, None] + np.arange(per_row)[None, :] + start) % len(pool)
    values = np.asarray(pool)[index].reshape(shape)
    return values if dtype == np.object_ else values.astype(dtype)


def _random_array(rng: np.random.Generator, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    if dtype == np.bool_:
        return rng.random(shape) > 0.5
    if np.issubdtype(dtype, np.integer):
        return rng.integers(0, 10, size=shape).astype(dtype)
    if np.issubdtype(dtype, np.floating) or dtype.name == "bfloat16":
        return rng.standard_normal(shape).astype(dtype)
    if dtype == np.object_ or dtype.kind in "SU":
        words = np.array([b"a", b"b", b"c", b"unseen", b""], dtype=object)
        return words[rng.integers(0, len(words), size=shape)]
    raise VerificationError(f"cannot make random inputs of dtype {dtype}; pass --sample")


def signature_specs(export_dir: Path, signature_key: str) -> dict[str, InputSpec]:
    """Input specs of one signature, read from the export's structured input signature."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(export_dir))
    if signature_key not in loaded.signatures:
        raise VerificationError(
            f"export has no signature {signature_key!r} (has: {', '.join(loaded.signatures)})"
        )
    _, kwargs = loaded.signatures[signature_key].structured_input_signature
    specs = {}
    for key, spec in kwargs.items():
        shape = None if spec.shape.rank is None else tuple(spec.shape.as_list())
        specs[key] = InputSpec(key, np.dtype(spec.dtype.as_numpy_dtype), shape)
    return specs


def _check_batch_dims(specs: Mapping[str, InputSpec], batch_sizes: Sequence[int]) -> None:
    for spec in specs.values():
        if spec.shape and spec.shape[0] is not None and set(batch_sizes) != {spec.shape[0]}:
            raise VerificationError(
                f"input {spec.name!r} has a fixed batch dimension of {spec.shape[0]}; "
                "the export must accept any batch size (re-export with a dynamic batch)"
            )


def _run_tf2(export_dir: Path, signature_key: str, feeds: Arrays) -> Arrays:
    import tensorflow as tf

    fn = tf.saved_model.load(str(export_dir)).signatures[signature_key]
    result = fn(**{k: tf.constant(v) for k, v in feeds.items()})
    return {k: v.numpy() for k, v in result.items()}


def _run_tf1(export_dir: Path, signature_key: str, feeds: Arrays) -> Arrays:
    import tensorflow as tf

    graph = tf.Graph()
    with tf.compat.v1.Session(graph=graph) as session:
        meta = tf.compat.v1.saved_model.loader.load(session, [SERVE_TAG], str(export_dir))
        signature = meta.signature_def[signature_key]
        feed = {signature.inputs[k].name: v for k, v in feeds.items()}
        names = {k: t.name for k, t in signature.outputs.items()}
        fetched = session.run(names, feed_dict=feed)
    return {k: np.asarray(v) for k, v in fetched.items()}


def _cast(value: np.ndarray, dtype: np.dtype, key: str) -> np.ndarray:
    """JSON samples arrive as float64/str; feed them as the signature's dtype."""
    try:
        if dtype == np.object_:
            return np.char.encode(value.astype(str), "utf-8").astype(object)
        return value.astype(dtype)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"--sample: input {key!r} cannot be read as {dtype}: {exc}") from exc


def _as_comparable(value: np.ndarray) -> np.ndarray:
    value = np.asarray(value)
    if value.dtype.kind == "U":
        return np.char.encode(value, "utf-8").astype(object)
    return value


def max_abs_diff(expected: np.ndarray, actual: np.ndarray, key: str, loader: str) -> float:
    expected, actual = _as_comparable(expected), _as_comparable(actual)
    if expected.shape != actual.shape:
        raise VerificationError(
            f"output {key!r}: shape {actual.shape} from the export ({loader}) but "
            f"{expected.shape} from the source model"
        )
    if expected.size == 0:
        return 0.0
    if np.issubdtype(expected.dtype, np.number) and np.issubdtype(actual.dtype, np.number):
        diff = np.abs(expected.astype(np.float64) - actual.astype(np.float64))
        both_nan = np.isnan(expected.astype(np.float64)) & np.isnan(actual.astype(np.float64))
        return float(np.max(np.where(both_nan, 0.0, np.nan_to_num(diff, nan=np.inf))))
    return 0.0 if np.array_equal(expected, actual) else float("inf")


def verify_export(
    export_dir: Path,
    reference: Reference,
    *,
    sample: Path | None = None,
    atol: float | None = None,
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    signature_key: str = "serving_default",
    shapes: Mapping[str, tuple[int, ...]] | None = None,
    seed: int = 0,
    pools: Mapping[str, np.ndarray] | None = None,
) -> VerifyReport:
    """Compare the export against `reference` with both loaders; raise when they disagree.

    Inputs come from `sample` if given, else are random except those with a pool of values
    the model knows (a lookup table's keys), which are fed those so the table is exercised.
    """
    export_dir = Path(export_dir)
    try:
        specs = signature_specs(export_dir, signature_key)
    except VerificationError:
        raise
    except Exception as exc:  # any TF load failure is a broken export
        raise VerificationError(
            f"the export does not load with tf.saved_model.load: {exc}"
        ) from exc

    if sample is not None:
        full = sample_inputs(sample, specs)
        rows = min((len(v) for v in full.values() if v.ndim > 0), default=1)
        if rows <= 1:  # one row: repeat it so a batch frozen to 1 is still caught
            batches = [full, {k: np.repeat(v, 3, axis=0) if v.ndim else v for k, v in full.items()}]
        else:
            batches = [{k: v[:1] if v.ndim else v for k, v in full.items()}, full]
    else:
        _check_batch_dims(specs, batch_sizes)
        batches = [random_inputs(specs, b, shapes, seed + b, pools) for b in batch_sizes]

    report = VerifyReport()
    report.batch_sizes = tuple(next((len(v) for v in b.values() if v.ndim > 0), 1) for b in batches)
    for feeds in batches:
        expected = {k: np.asarray(v) for k, v in reference(feeds).items()}
        for loader, run in (("tf.saved_model.load", _run_tf2), ("tf1 session loader", _run_tf1)):
            try:
                actual = run(export_dir, signature_key, feeds)
            except Exception as exc:  # report what the loader said, in one line
                text = str(getattr(exc, "message", exc)).split("Original stack trace")[0]
                message = " ".join(text.split())[:300]
                raise VerificationError(
                    f"the export fails under the {loader} (as TF Serving would load it): {message}"
                ) from exc
            if set(actual) != set(expected):
                raise VerificationError(
                    f"export outputs {sorted(actual)} differ from the source model's "
                    f"{sorted(expected)}"
                )
            for key, value in expected.items():
                diff = max_abs_diff(value, actual[key], key, loader)
                report.record(key, value.dtype, diff, atol)
    if not report.ok:
        worst = [p for p in report.outputs.values() if not p.ok]
        details = ", ".join(
            f"{p.key} max |diff| {p.max_abs_diff:.3g} > atol {p.atol:g}" for p in worst
        )
        raise VerificationError(
            f"the export does not reproduce the source model: {details}; "
            "check custom layers and inference-mode behaviour, or raise --atol if expected"
        )
    return report


def constant_outputs(reference: Reference, pairs: Sequence[tuple[Arrays, Arrays]]) -> list[str]:
    """Outputs that come out identical for both batches of every pair of different inputs.

    A prediction changes when its inputs do; one that does not reads only constants (a
    metric of the weights, a tensor the inputs never reach) and would serve one number.
    Each pair is a chance to change: random values, values a lookup table holds, a sample.
    """
    constant: set[str] | None = None
    for first_feeds, second_feeds in pairs:
        first, second = reference(first_feeds), reference(second_feeds)
        same = {
            key
            for key, value in first.items()
            if np.array_equal(_as_comparable(value), _as_comparable(second[key]))
        }
        constant = same if constant is None else constant & same
        if not constant:
            break
    return sorted(constant or ())


def differs(first: Arrays, second: Arrays) -> bool:
    """Whether two batches of inputs differ anywhere (a pair that does not proves nothing)."""
    return any(
        not np.array_equal(_as_comparable(first[k]), _as_comparable(second[k])) for k in first
    )

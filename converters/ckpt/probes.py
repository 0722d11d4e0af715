"""Input values a TF1 graph itself knows, for the inputs random values cannot exercise.

Random strings all miss a vocabulary table (every one gets the default id, so a real model
looks constant), and random integers overrun an embedding with fewer rows (so the graph
fails). Walking back from the signature's outputs finds the lookup tables and gathers that
matter: a string or integer-key input is probed with keys of the tables it is looked up in
(constant key tensors, vocabulary files), spread over each table, plus one key none of them
holds (the default or OOV bucket); an integer id input with ids spread over the rows of the
embedding it indexes. Verification feeds these values and the constant-output check refuses
only when they too give identical outputs.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from converters.ckpt.assets import FILE_INIT_TYPES
from converters.ckpt.detect import VARIABLE_TYPES, needs_of, ops_behind
from converters.ckpt.plan import SignaturePlan

_LOOKUP_TYPES = {"LookupTableFindV2", "LookupTableFind"}
_TABLE_TYPES = {
    "HashTableV2",
    "HashTable",
    "MutableHashTableV2",
    "MutableHashTable",
    "MutableHashTableOfTensorsV2",
    "MutableHashTableOfTensors",
    "MutableDenseHashTableV2",
    "MutableDenseHashTable",
}
# Initialisers that receive the keys as a tensor (KeyValueTensorInitializer in TF1 and TF2).
_KEY_INIT_TYPES = {"InitializeTableV2", "InitializeTable", "LookupTableImportV2"}
# Ops that hand a resource or ref on unchanged (while-loop frames, cond branches).
_HANDLE_CARRIERS = {"Identity", "RefIdentity", "Enter", "RefEnter", "Switch", "RefSwitch"}
# Ops whose output elements are elements of one input, an id keeping its meaning:
# op type -> (that output, that input). Sparse feature columns pass ids through these.
_ID_CARRIERS = {
    **dict.fromkeys(
        [
            "Identity",
            "Snapshot",
            "StopGradient",
            "Cast",
            "Reshape",
            "ExpandDims",
            "Squeeze",
            "Unique",
            "StridedSlice",
            "Slice",
            "Gather",
            "GatherV2",
            "GatherNd",
            "Transpose",
            "Tile",
        ],
        (0, 0),
    ),
    "SparseFillEmptyRows": (1, 1),  # output_values <- values
}
_WHOLE_LINE, _LINE_NUMBER = -2, -1
MAX_KNOWN = 7  # known values per input; with the unknown key, 8 rows to probe with
_UNKNOWN_KEY = b"<unknown>"


@dataclass(frozen=True)
class Known:
    """Values taken from one place in the graph, and a phrase saying where."""

    where: str
    values: tuple[Any, ...]


@dataclass
class InputProbe:
    """What the graph knows about the values of one signature input."""

    key: str
    name: str
    dtype: str
    keys: list[Known] = field(default_factory=list)  # tables the input is looked up in
    rows: list[tuple[str, int]] = field(default_factory=list)  # embeddings it indexes, rows
    unread: list[str] = field(default_factory=list)  # tables whose keys cannot be read here

    @property
    def found(self) -> bool:
        return bool(self.keys or self.rows)

    def pool(self) -> np.ndarray | None:
        """Values to feed in turn: ids within every embedding the input indexes, else keys
        spread over each table plus one key none of them holds (the default, the OOV bucket).
        """
        if self.rows:
            values: list[Any] = _spread(range(min(n for _, n in self.rows)), MAX_KNOWN)
        elif self.keys:
            values = _interleave([_spread(k.values, MAX_KNOWN) for k in self.keys], MAX_KNOWN)
            values.append(_unknown({v for k in self.keys for v in k.values}))
        else:
            return None
        dtype = object if self.dtype == "string" else np.dtype(self.dtype)
        return np.array(values, dtype=dtype)

    def sources(self) -> str:
        return "; ".join([*(k.where for k in self.keys), *(w for w, _ in self.rows)])


@dataclass
class Probes:
    """Per signature input key, what the graph knows about its values; per output key, the
    input keys it depends on."""

    inputs: dict[str, InputProbe]
    needs: dict[str, tuple[str, ...]] = field(default_factory=dict)
    _pools: dict[str, np.ndarray] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # Once: a pool's unknown key is checked against every key of a big vocabulary.
        self._pools = {k: pool for k, p in self.inputs.items() if (pool := p.pool()) is not None}

    def pools(self) -> dict[str, np.ndarray]:
        """Input key -> the values verification feeds it in turn (only inputs with some)."""
        return dict(self._pools)

    def bounds(self) -> dict[str, np.ndarray]:
        """The pools of id inputs: any other value may overrun an embedding, so even the
        random batches take these."""
        pools = self.pools()
        return {k: pools[k] for k, p in self.inputs.items() if p.rows and k in pools}

    def unread(self, keys: Iterable[str]) -> dict[str, list[str]]:
        """Of these inputs, the ones looked up in tables whose keys could not be read."""
        return {
            k: self.inputs[k].unread
            for k in keys
            if k in self.inputs and self.inputs[k].unread and not self.inputs[k].found
        }

    def unprobed_strings(self, keys: Iterable[str]) -> list[str]:
        """Of these inputs, the string ones no table or vocabulary was found for."""
        return [
            k
            for k in keys
            if k in self.inputs
            and self.inputs[k].dtype == "string"
            and not self.inputs[k].found
            and not self.inputs[k].unread
        ]

    def lines(self) -> list[str]:
        """One line per input fed values from the graph: what they are and where from."""
        pools = self.pools()
        return [
            f"{key} <- {shown(pools[key])} ({self.inputs[key].sources()})"
            for key in self.inputs
            if key in pools
        ]


def shown(values: np.ndarray, limit: int = 5, width: int = 24) -> str:
    """`'apple', 'banana', 'cherry', 'durian', 'fig', … (8 values)`: a few, each shortened."""
    items = []
    for value in values.reshape(-1)[:limit]:
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
        text = text if len(text) <= width else text[: width - 1] + "…"
        items.append(repr(text) if isinstance(value, bytes | str) else text)
    more = f", … ({values.size} values)" if values.size > limit else ""
    return ", ".join(items) + more


def _spread(values: Sequence[Any], limit: int) -> list[Any]:
    """At most `limit` of the values, evenly spaced, first and last included."""
    if len(values) <= limit:
        return list(values)
    picks = np.unique(np.linspace(0, len(values) - 1, limit).round().astype(int))
    return [values[i] for i in picks]


def _interleave(lists: list[list[Any]], limit: int) -> list[Any]:
    """Up to `limit` distinct values taken from each list in turn, so every table shows."""
    values: list[Any] = []
    for row in itertools.zip_longest(*lists):
        for value in row:
            if value is not None and value not in values and len(values) < limit:
                values.append(value)
    return values


def _unknown(taken: set[Any]) -> Any:
    """A key no table holds: its lookups show the default value or OOV bucket."""
    if any(isinstance(v, bytes) for v in taken):
        key = _UNKNOWN_KEY
        while key in taken:
            key += b"_"
        return key
    return max(taken) + 1 if taken else -1


def _through_carriers(tensor: Any, carriers: set[str]) -> Any:
    while tensor.op.type in carriers and tensor.op.inputs:
        tensor = tensor.op.inputs[0]
    return tensor


def _static(tensor: Any) -> Any:
    import tensorflow as tf

    try:
        return tf.get_static_value(tensor)
    except (TypeError, ValueError):
        return None


def _as_keys(array: Any, key_dtype: Any) -> tuple[Any, ...]:
    flat = np.asarray(array).reshape(-1)
    if key_dtype.is_integer:
        return tuple(int(v) for v in flat)
    return tuple(v if isinstance(v, bytes) else str(v).encode("utf-8") for v in flat)


def _initialisers(table: Any) -> list[Any]:
    """Ops that fill this table: consumers of its handle, through identities."""
    found, pending, seen = [], list(table.outputs), set()
    while pending:
        tensor = pending.pop()
        for consumer in tensor.consumers():
            if consumer.name in seen:
                continue
            seen.add(consumer.name)
            if consumer.type in _KEY_INIT_TYPES | FILE_INIT_TYPES:
                found.append(consumer)
            elif consumer.type in _HANDLE_CARRIERS:
                pending.extend(consumer.outputs)
    return found


def _file_name(init: Any) -> str | None:
    value = _static(init.inputs[1])
    if value is None:
        return None
    value = np.asarray(value).item()
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _file_keys(init: Any, key_dtype: Any) -> tuple[Any, ...] | str:
    """The keys a vocabulary file gives a table, or why they cannot be read."""
    import tensorflow as tf

    path = _file_name(init)
    if path is None:
        return "its vocabulary file name is computed, not a constant"
    key_index = init.get_attr("key_index")
    vocab_size = init.get_attr("vocab_size")
    delimiter = init.get_attr("delimiter")
    delimiter = delimiter.decode() if isinstance(delimiter, bytes) else str(delimiter)
    try:
        with tf.io.gfile.GFile(path, "rb") as handle:
            text = handle.read()  # whole: GFile's line iterator costs ~6 us a line
    except (tf.errors.OpError, OSError) as exc:
        return f"its vocabulary file {path} cannot be read ({type(exc).__name__})"
    lines = [line.rstrip(b"\r") for line in text.split(b"\n")]
    if lines and not lines[-1]:
        lines.pop()  # the file's final newline ends the last line, it starts none
    if vocab_size > 0:
        lines = lines[:vocab_size]
    if key_index == _LINE_NUMBER:
        return tuple(range(len(lines)))
    if key_index != _WHOLE_LINE:
        columns = [line.split(delimiter.encode()) for line in lines]
        lines = [c[key_index] for c in columns if len(c) > key_index]
    if key_dtype.is_integer:
        try:
            return tuple(int(v) for v in lines)
        except ValueError:
            return f"its vocabulary file {path} holds keys that are not integers"
    return tuple(lines)


def _table_keys(handle: Any) -> Known | str:
    """The keys one table is initialised with, or why they cannot be known."""
    table = _through_carriers(handle, _HANDLE_CARRIERS).op
    if table.type not in _TABLE_TYPES:
        return f"table {table.name} is a {table.type}, not a table op this reads"
    key_dtype = table.get_attr("key_dtype")
    for init in _initialisers(table):
        if init.type in FILE_INIT_TYPES:
            keys = _file_keys(init, key_dtype)
            if isinstance(keys, str):
                return f"table {table.name}: {keys}"
            name = str(_file_name(init)).rsplit("/", 1)[-1]
            where = f"vocabulary file {name} of table {table.name}, {len(keys)} keys"
        else:
            keys_array = _static(init.inputs[1])
            if keys_array is None:
                continue
            keys = _as_keys(keys_array, key_dtype)
            where = f"keys of table {table.name}, {len(keys)} in all"
        if not keys:
            return f"table {table.name} is initialised with no keys"
        return Known(where, keys)
    return (
        f"table {table.name} ({table.type}) has no constant keys or vocabulary file "
        "(filled at run time or restored from the checkpoint)"
    )


def _embedding_rows(op: Any) -> tuple[int, str] | None:
    """Rows of the params a gather (or one_hot) indexes, and their name; None if unknown."""
    if op.type == "OneHot":
        depth = _static(op.inputs[1])
        return (int(depth), f"one_hot {op.name}") if depth is not None else None
    if op.type == "GatherV2":
        axis = _static(op.inputs[2])
        if axis is None or int(axis) != 0:
            return None
    if op.type in {"GatherV2", "ResourceGather"} and _batch_dims(op):
        return None
    params = _through_carriers(op.inputs[0], _HANDLE_CARRIERS | {"ReadVariableOp"})
    if params.op.type == "VarHandleOp":
        import tensorflow as tf

        shape = tf.TensorShape(params.op.get_attr("shape"))
    else:
        shape = params.shape
    if shape.rank is None or shape.rank == 0 or shape[0] is None:
        return None
    name = params.op.name if params.op.type in VARIABLE_TYPES else params.name
    return int(shape[0]), name


def _batch_dims(op: Any) -> int:
    try:
        return int(op.get_attr("batch_dims"))
    except ValueError:  # graphs written before TF 1.14 have no such attr
        return 0


def _id_input(indices: Any, inputs: Mapping[str, str]) -> str | None:
    """The signature input whose values arrive unchanged as these indices, if any."""
    tensor = indices
    while tensor.name not in inputs:
        carried = _ID_CARRIERS.get(tensor.op.type)
        if carried is None or tensor.value_index != carried[0]:
            return None
        tensor = tensor.op.inputs[carried[1]]
    return inputs[tensor.name]


def _is_integer(dtype: str) -> bool:
    return dtype.startswith(("int", "uint"))


def find_probes(graph: Any, plan: SignaturePlan) -> Probes:
    """For each input of the plan, the table keys and id ranges the outputs read it through."""
    inputs = {name: key for key, name in plan.inputs.items()}
    probes = {
        key: InputProbe(key, name, plan.descs[name].dtype) for key, name in plan.inputs.items()
    }
    outputs = [graph.get_tensor_by_name(n) for n in plan.outputs.values()]
    needs = {
        key: tuple(inputs[n] for n in needs_of([tensor], set(inputs), set(plan.fixed)))
        for key, tensor in zip(plan.outputs, outputs, strict=True)
    }
    seen_tables: set[tuple[str, str]] = set()
    for op in ops_behind(outputs, set(inputs) | set(plan.fixed)).values():
        if op.type in _LOOKUP_TYPES:
            fed = needs_of([op.inputs[1]], set(inputs), set(plan.fixed))
            table = _through_carriers(op.inputs[0], _HANDLE_CARRIERS).op.name
            for name in fed:
                probe = probes[inputs[name]]
                if (name, table) in seen_tables:
                    continue
                seen_tables.add((name, table))
                found = _table_keys(op.inputs[0])
                if isinstance(found, str):
                    probe.unread.append(found)
                    continue
                is_int = bool(found.values) and isinstance(found.values[0], int)
                if is_int == _is_integer(probe.dtype):
                    probe.keys.append(found)
        elif op.type in {"Gather", "GatherV2", "ResourceGather", "OneHot"}:
            indices = op.inputs[0] if op.type == "OneHot" else op.inputs[1]
            key = _id_input(indices, inputs)
            if key is None or not _is_integer(probes[key].dtype):
                continue
            rows = _embedding_rows(op)
            if rows is not None:
                count, where = rows
                probes[key].rows.append((f"ids of {where}, {count} rows", count))
    return Probes(probes, needs)

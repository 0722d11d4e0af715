"""skl2onnx converters the kit adds for what real pipelines hold and skl2onnx 1.20 refuses or
gets wrong. Each compiled pipeline still passes the parity gate before it serves.

- SimpleImputer on strings: fills a null (fed as MISSING_STRING, the imputer's NaN or None)
  or the imputer's own string marker such as "?"; on integer categories it fills a null fed
  as MISSING_INT. Floats stay with skl2onnx.
- OneHotEncoder with drop=, infrequent categories (also with drop), a missing category, and
  handle_unknown="infrequent_if_exist"/"warn"; the plain encoder stays with skl2onnx.
- OrdinalEncoder: unknown_value (NaN included), encoded_missing_value and infrequent
  categories (skl2onnx gives a fitted NaN category its index, not encoded_missing_value).
- FunctionTransformer: func=None and the numpy ufuncs below; anything else (a lambda, a
  Python function) is refused naming it, so the pipeline falls back with that one line.
- LabelEncoder, one column of an `assemble:` list: its codes as one float feature.
- Assembled (`assemble:`): its parts side by side, each reading its own columns.

A category column is one-hot encoded in fitted order as [N, K] indicators; drop, infrequent
grouping and unknown handling are then one 0/1 matrix product, exact in float32.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from logic_service.pipeline.compiled import MISSING_INT, MISSING_STRING
from logic_service.pipeline.contract import is_null

# numpy ufuncs FunctionTransformer may hold, as ONNX steps: (op, constant operand or None).
_UFUNCS: tuple[tuple[Any, tuple[tuple[str, float | None], ...]], ...] = (
    (np.log1p, (("Add", 1.0), ("Log", None))),
    (np.sqrt, (("Sqrt", None),)),
    (np.log, (("Log", None),)),
    (np.exp, (("Exp", None),)),
    (np.expm1, (("Exp", None), ("Sub", 1.0))),
    (np.abs, (("Abs", None),)),
)
_STRING, _INT, _FLOAT = "string", "int64", "float"


def custom_converters() -> dict[type, Callable[..., None]]:
    """{class: converter} for `convert_sklearn(custom_conversion_functions=...)`."""
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import (
        FunctionTransformer,
        LabelEncoder,
        OneHotEncoder,
        OrdinalEncoder,
    )

    return {
        SimpleImputer: _simple_imputer,
        OneHotEncoder: _one_hot_encoder,
        OrdinalEncoder: _ordinal_encoder,
        FunctionTransformer: _function_transformer,
        LabelEncoder: _label_encoder,
    }


def custom_shape_calculators() -> dict[type, Callable[..., None]]:
    """{class: shape calculator} where skl2onnx's output width or type is wrong or refuses."""
    from sklearn.preprocessing import FunctionTransformer, LabelEncoder, OneHotEncoder

    return {
        OneHotEncoder: _one_hot_shape,
        FunctionTransformer: _function_shape,
        LabelEncoder: _label_shape,
    }


def custom_parsers() -> dict[type, Callable[..., Any]]:
    """{class: parser} for objects holding sub-transformers skl2onnx does not know."""
    from logic_service.pipeline.assembled import Assembled

    return {Assembled: _parse_assembled}


class _Builder:
    """Small helpers over skl2onnx's scope/container for the nodes these converters add."""

    def __init__(self, scope: Any, container: Any) -> None:
        from skl2onnx.proto import onnx_proto

        self.scope, self.container, self.types = scope, container, onnx_proto.TensorProto

    def name(self, hint: str) -> str:
        return self.scope.get_unique_variable_name(hint)

    def constant(self, hint: str, dtype: int, shape: list[int], values: Any) -> str:
        unique = self.name(hint)
        self.container.add_initializer(unique, dtype, shape, values)
        return unique

    def floats(self, hint: str, values: Any) -> str:
        array = np.asarray(values, dtype=np.float32)
        return self.constant(hint, self.types.FLOAT, list(array.shape), array.ravel().tolist())

    def node(self, op: str, inputs: list[str], out: str | None = None, **attrs: Any) -> str:
        out = out or self.name(op.lower())
        attrs.setdefault("name", self.scope.get_unique_operator_name(op))
        self.container.add_node(op, inputs, out, **attrs)
        return out

    def cast(self, source: str, to: int, out: str | None = None) -> str:
        return self.node("Cast", [source], out, to=to)

    def columns(self, operator: Any) -> list[tuple[str, str]]:
        """Every input column of the operator as ([N, 1] tensor name, kind)."""
        from skl2onnx.common.data_types import FloatTensorType

        found = []
        for variable in operator.inputs:
            width, kind = _width(variable), _kind(variable)
            for j in range(width):
                column = variable.full_name
                if width > 1:
                    index = self.constant("index", self.types.INT64, [1], [j])
                    column = self.node("Gather", [column, index], axis=1)
                if kind == _FLOAT and not isinstance(variable.type, FloatTensorType):
                    column = self.cast(column, self.types.FLOAT)
                found.append((column, kind))
        return found

    def one_hot(self, column: str, kind: str, categories: list[Any]) -> str:
        """[N, 1] -> [N, K] float indicators of `categories` (a null matches the missing one)."""
        missing = [i for i, value in enumerate(categories) if is_null(value)]
        if len(missing) > 1 or (missing and missing[0] != len(categories) - 1):
            raise NotImplementedError("categories hold two kinds of missing value")
        count = len(categories)
        if kind == _FLOAT:
            known = [float(value) for value in categories if not is_null(value)]
            parts = []
            if known:
                equal = self.node("Equal", [column, self.floats("categories", [known])])
                parts.append(self.cast(equal, self.types.FLOAT))
            if missing:
                parts.append(self.cast(self.node("IsNaN", [column]), self.types.FLOAT))
            return parts[0] if len(parts) == 1 else self.node("Concat", parts, axis=1)
        attrs: dict[str, Any] = {"zeros": 1, "op_domain": "ai.onnx.ml"}
        if kind == _STRING:
            attrs["cats_strings"] = [_string_key(value).encode("utf-8") for value in categories]
        else:
            attrs["cats_int64s"] = [int(value) for value in categories]
        hot = self.node("OneHotEncoder", [column], **attrs)  # [N, 1, K]
        shape = self.constant("shape", self.types.INT64, [2], [-1, count])
        return self.node("Reshape", [hot, shape])

    def codes(
        self, column: str, kind: str, categories: list[Any], codes: list[float], default: float
    ) -> str:
        """[N, 1] -> [N, 1] float: codes[k] for categories[k], `default` for anything else."""
        attrs: dict[str, Any] = {"op_domain": "ai.onnx.ml", "op_version": 2}
        pairs = [(c, v) for c, v in zip(categories, codes, strict=True) if not is_null(c)]
        missing = [v for c, v in zip(categories, codes, strict=True) if is_null(c)]
        if len(missing) > 1 or not pairs:
            raise NotImplementedError("categories hold two kinds of missing value, or only one")
        if kind == _STRING:
            keys = [_string_key(c).encode("utf-8") for c, _ in pairs]
            keys += [MISSING_STRING.encode("utf-8")] * len(missing)
            values = [v for _, v in pairs] + missing
            attrs["keys_strings"] = keys
        else:
            values = [v for _, v in pairs]
            if kind == _INT:
                attrs["keys_int64s"] = [int(c) for c, _ in pairs]
            else:
                attrs["keys_floats"] = [float(c) for c, _ in pairs]
        attrs["values_floats"] = [float(v) for v in values]
        attrs["default_float"] = float(default)
        looked_up = self.node("LabelEncoder", [column], **attrs)
        if kind == _FLOAT and missing:  # ONNX LabelEncoder (opset 2) never matches a NaN key
            is_nan = self.node("IsNaN", [column])
            looked_up = self.node(
                "Where", [is_nan, self.floats("missing", [missing[0]]), looked_up]
            )
        return looked_up

    def finish(self, parts: list[str], operator: Any, integer: bool) -> None:
        """Concatenate [N, k] parts into the operator's output, cast to int64 if asked."""
        joined = parts[0] if len(parts) == 1 else self.node("Concat", parts, axis=1)
        out = operator.outputs[0].full_name
        if integer:
            self.cast(joined, self.types.INT64, out)
        else:
            self.node("Identity", [joined], out)


def _simple_imputer(scope: Any, operator: Any, container: Any) -> None:
    from skl2onnx.operator_converters.imputer_op import convert_sklearn_imputer

    imputer = operator.raw_operator
    kind = _kind(operator.inputs[0])
    if kind == _FLOAT or (kind == _INT and not is_null(imputer.missing_values)):
        convert_sklearn_imputer(scope, operator, container)
        return
    if getattr(imputer, "add_indicator", False):
        raise NotImplementedError(f"SimpleImputer(add_indicator=True) on {kind} columns")
    if kind == _INT:
        _integer_imputer(scope, operator, container)
        return
    fills = list(imputer.statistics_)
    if not all(isinstance(value, str) for value in fills):
        raise NotImplementedError(
            f"SimpleImputer on strings fills with {fills!r}: a column was empty when fitted"
        )
    marker = imputer.missing_values
    marker = marker if isinstance(marker, str) else MISSING_STRING  # NaN or None: a null
    build = _Builder(scope, container)
    names = [variable.full_name for variable in operator.inputs]
    values = names[0] if len(names) == 1 else build.node("Concat", names, axis=1)
    is_missing = build.node(
        "LabelEncoder",
        [values],
        keys_strings=[marker.encode("utf-8")],
        values_int64s=[1],
        default_int64=0,
        op_domain="ai.onnx.ml",
        op_version=2,
    )
    replace = build.cast(is_missing, build.types.BOOL)
    filled = build.constant(
        "fill", build.types.STRING, [1, len(fills)], [value.encode("utf-8") for value in fills]
    )
    build.node("Where", [replace, filled, values], operator.outputs[0].full_name)


def _integer_imputer(scope: Any, operator: Any, container: Any) -> None:
    """A null in an integer category column arrives as MISSING_INT: fill it."""
    fills = np.asarray(operator.raw_operator.statistics_, dtype=np.float64)
    if not np.array_equal(fills, np.round(fills)):
        raise NotImplementedError(f"SimpleImputer fills integer categories with {fills.tolist()}")
    build = _Builder(scope, container)
    names = [variable.full_name for variable in operator.inputs]
    values = names[0] if len(names) == 1 else build.node("Concat", names, axis=1)
    build.node(
        "Imputer",
        [values],
        operator.outputs[0].full_name,
        imputed_value_int64s=fills.astype(np.int64).tolist(),
        replaced_value_int64=MISSING_INT,
        op_domain="ai.onnx.ml",
    )


def _one_hot_encoder(scope: Any, operator: Any, container: Any) -> None:
    from skl2onnx.operator_converters.one_hot_encoder import convert_sklearn_one_hot_encoder

    encoder = operator.raw_operator
    kinds = [_kind(variable) for variable in operator.inputs for _ in range(_width(variable))]
    if len(kinds) != len(encoder.categories_):
        raise RuntimeError("OneHotEncoder inputs do not match its categories")
    plans = [_one_hot_plan(encoder, i) for i in range(len(kinds))]
    plain = all(
        plan is None and kind != _FLOAT and not any(is_null(c) for c in cats)
        for plan, kind, cats in zip(plans, kinds, encoder.categories_, strict=True)
    )
    if plain and encoder.handle_unknown in ("ignore", "error"):
        convert_sklearn_one_hot_encoder(scope, operator, container)  # nothing it gets wrong
        return
    build = _Builder(scope, container)
    columns = build.columns(operator)
    parts = []
    for (column, kind), categories, plan in zip(columns, encoder.categories_, plans, strict=True):
        hot = build.one_hot(column, kind, list(categories))
        if plan is not None:
            weights, unknown = plan
            hot = build.node("MatMul", [hot, build.floats("weights", weights - unknown)])
            if unknown.any():  # a row of zeros (unknown) lands where `unknown` says
                hot = build.node("Add", [hot, build.floats("unknown", unknown[None, :])])
        parts.append(hot)
    build.finish(parts, operator, np.issubdtype(encoder.dtype, np.integer))


def _one_hot_plan(encoder: Any, i: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Column i's map from fitted categories to output columns, or None for the identity.

    weights[k, c] = 1 when category k lands in output column c (infrequent categories share
    one column, a dropped one lands nowhere); `unknown` is the output row of an unseen value.
    """
    count = len(encoder.categories_[i])
    mappings = getattr(encoder, "_default_to_infrequent_mappings", None) or [None] * (i + 1)
    group = mappings[i] if mappings[i] is not None else np.arange(count)
    if len(group) != count:
        raise NotImplementedError("OneHotEncoder infrequent mapping does not cover its categories")
    infrequent = mappings[i] is not None
    drops = getattr(encoder, "_drop_idx_after_grouping", None)
    if drops is None and infrequent and getattr(encoder, "drop_idx_", None) is not None:
        raise NotImplementedError("OneHotEncoder with drop and infrequent categories (old)")
    if drops is None:
        drops = getattr(encoder, "drop_idx_", None)
    drop = None if drops is None or drops[i] is None else int(drops[i])
    groups = int(max(group, default=-1)) + 1
    unknown_to_infrequent = infrequent and encoder.handle_unknown in ("infrequent_if_exist", "warn")
    if drop is None and not infrequent:
        return None

    def output(q: int) -> int | None:
        return q if drop is None or q < drop else None if q == drop else q - 1

    width = groups - (drop is not None)
    if width != len(encoder._compute_transformed_categories(i)):
        raise NotImplementedError("OneHotEncoder output width differs from scikit-learn's")
    weights = np.zeros((count, width), dtype=np.float32)
    for k, q in enumerate(group):
        target = output(int(q))
        if target is not None:
            weights[k, target] = 1.0
    unknown = np.zeros(width, dtype=np.float32)
    target = output(groups - 1) if unknown_to_infrequent else None
    if target is not None:
        unknown[target] = 1.0
    return weights, unknown


def _one_hot_shape(operator: Any) -> None:
    from skl2onnx.common.data_types import FloatTensorType, Int64TensorType

    encoder = operator.raw_operator
    width = len(encoder.get_feature_names_out())
    rows = operator.inputs[0].get_first_dimension()
    kind = Int64TensorType if np.issubdtype(encoder.dtype, np.integer) else FloatTensorType
    operator.outputs[0].type = kind([rows, width])


def _ordinal_encoder(scope: Any, operator: Any, container: Any) -> None:
    encoder = operator.raw_operator
    build = _Builder(scope, container)
    columns = build.columns(operator)
    if len(columns) != len(encoder.categories_):
        raise RuntimeError("OrdinalEncoder inputs do not match its categories")
    unknown = (
        float(encoder.unknown_value) if encoder.handle_unknown == "use_encoded_value" else -1.0
    )
    mappings = getattr(encoder, "_default_to_infrequent_mappings", None) or [None] * len(columns)
    parts = []
    for i, (column, kind) in enumerate(columns):
        categories = list(encoder.categories_[i])
        codes = [float(k) for k in range(len(categories))]
        if mappings[i] is not None:  # infrequent categories share the last frequent code + 1
            mapped = [float(code) for code in mappings[i]]
            codes[: len(mapped)] = mapped
        nan_seen = categories and isinstance(categories[-1], float) and np.isnan(categories[-1])
        if nan_seen and hasattr(encoder, "encoded_missing_value"):  # NaN, not None (sorted last)
            codes[-1] = float(encoder.encoded_missing_value)
        parts.append(build.codes(column, kind, categories, codes, unknown))
    build.finish(parts, operator, np.issubdtype(encoder.dtype, np.integer))


def _label_encoder(scope: Any, operator: Any, container: Any) -> None:
    encoder = operator.raw_operator
    build = _Builder(scope, container)
    columns = build.columns(operator)
    if len(columns) != 1:
        raise RuntimeError("a LabelEncoder encodes exactly one column")
    (column, kind), classes = columns[0], list(encoder.classes_)
    codes = [float(k) for k in range(len(classes))]
    # Unknown labels never get here: validation answers 400 as the encoder would refuse them.
    build.finish([build.codes(column, kind, classes, codes, -1.0)], operator, False)


def _label_shape(operator: Any) -> None:
    from skl2onnx.common.data_types import FloatTensorType

    operator.outputs[0].type = FloatTensorType([operator.inputs[0].get_first_dimension(), 1])


def _function_steps(transformer: Any) -> tuple[tuple[str, float | None], ...]:
    """The ONNX steps for the transformer's func, or NotImplementedError naming it."""
    func = transformer.func
    if transformer.kw_args:
        raise NotImplementedError(
            f"FunctionTransformer({_name(func)}) with kw_args {sorted(transformer.kw_args)}"
        )
    if func is None:
        return ()
    for ufunc, steps in _UFUNCS:
        if func is ufunc:
            return steps
    known = ", ".join(f"np.{ufunc.__name__}" for ufunc, _ in _UFUNCS)
    raise NotImplementedError(
        f"FunctionTransformer({_name(func)}) runs Python code; the compiled engine knows "
        f"func=None and {known}"
    )


def _function_shape(operator: Any) -> None:
    import copy

    from skl2onnx.common.data_types import FloatTensorType

    steps = _function_steps(operator.raw_operator)
    widths = [variable.type.shape[1] for variable in operator.inputs]
    width = sum(widths) if all(isinstance(w, int) for w in widths) else None
    rows = operator.inputs[0].get_first_dimension()
    if steps:
        operator.outputs[0].type = FloatTensorType([rows, width])
    else:
        operator.outputs[0].type = copy.deepcopy(operator.inputs[0].type)
        operator.outputs[0].type.shape = [rows, width]


def _function_transformer(scope: Any, operator: Any, container: Any) -> None:
    from skl2onnx.common.data_types import FloatTensorType

    steps = _function_steps(operator.raw_operator)
    build = _Builder(scope, container)
    names = [
        variable.full_name
        if not steps or isinstance(variable.type, FloatTensorType)
        else build.cast(variable.full_name, build.types.FLOAT)
        for variable in operator.inputs
    ]
    values = names[0] if len(names) == 1 else build.node("Concat", names, axis=1)
    out = operator.outputs[0].full_name
    if not steps:
        build.node("Identity", [values], out)
        return
    for index, (op, operand) in enumerate(steps):
        inputs = [values] if operand is None else [values, build.floats("operand", operand)]
        values = build.node(op, inputs, out if index == len(steps) - 1 else None)


def _parse_assembled(scope: Any, model: Any, inputs: list[Any], custom_parsers: Any = None) -> Any:
    """Each part parses on the input columns it names; the results are concatenated."""
    # skl2onnx's own ColumnTransformer parser is built from these two (not public API).
    from skl2onnx._parse import _parse_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder

    by_name = {variable.raw_name: variable for variable in inputs}
    outputs = []
    for _, part, columns in model.transformers_:
        part_inputs = [by_name[name] for name in columns]
        first = part.steps[0][1] if hasattr(part, "steps") else part
        if len(part_inputs) > 1 and not isinstance(first, OneHotEncoder | OrdinalEncoder):
            merge = scope.declare_local_operator("SklearnConcat")
            merge.inputs = part_inputs
            kind = part_inputs[0].type.__class__
            merged = scope.declare_local_variable("merged_columns", kind([None, len(columns)]))
            merge.outputs.append(merged)
            part_inputs = [merged]
        outputs.append(_parse_sklearn(scope, part, part_inputs, custom_parsers=custom_parsers)[0])
    if len(outputs) == 1:
        return outputs
    concat = scope.declare_local_operator("SklearnConcat")
    concat.inputs = outputs
    concat.outputs.append(scope.declare_local_variable("assembled", FloatTensorType([None, None])))
    return concat.outputs


def _name(func: Any) -> str:
    """func=module.qualname, as a reader of the training script would look it up."""
    if func is None:
        return "func=None"
    module = getattr(func, "__module__", None) or type(func).__module__
    qualname = getattr(func, "__qualname__", None) or getattr(func, "__name__", repr(func))
    return f"func={module}.{qualname}"


def _string_key(value: Any) -> str:
    return MISSING_STRING if is_null(value) else str(value)


def _kind(variable: Any) -> str:
    from skl2onnx.common.data_types import Int32TensorType, Int64TensorType, StringTensorType

    if isinstance(variable.type, StringTensorType):
        return _STRING
    return _INT if isinstance(variable.type, Int64TensorType | Int32TensorType) else _FLOAT


def _width(variable: Any) -> int:
    width = variable.type.shape[1]
    if not isinstance(width, int):
        raise RuntimeError("an encoder's input width must be known")
    return width

"""skl2onnx converters the kit adds: OneHotEncoder with infrequent categories.

skl2onnx 1.20 refuses an encoder whose single input has infrequent categories, and in the
multi-input case sends unknown values to an error instead of the infrequent column. This
converter builds the encoding sklearn documents: frequent categories one-hot in fitted
order, then one "infrequent" column that is 1 for an infrequent category, and also for an
unknown one under handle_unknown="infrequent_if_exist". The parity gate still checks it.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def custom_converters() -> dict[Any, Any]:
    """{estimator class: converter} for `convert_sklearn(custom_conversion_functions=...)`."""
    from sklearn.preprocessing import OneHotEncoder

    return {OneHotEncoder: _one_hot_encoder}


def _one_hot_encoder(scope: Any, operator: Any, container: Any) -> None:
    from skl2onnx.operator_converters.one_hot_encoder import convert_sklearn_one_hot_encoder

    encoder = operator.raw_operator
    infrequent = getattr(encoder, "infrequent_categories_", None)
    if not getattr(encoder, "_infrequent_enabled", False) or not any(
        item is not None for item in infrequent or []
    ):
        convert_sklearn_one_hot_encoder(scope, operator, container)
        return
    drop = getattr(encoder, "drop_idx_", None)
    if drop is not None and any(item is not None for item in drop):
        raise NotImplementedError("OneHotEncoder with both drop and infrequent categories")
    _infrequent_one_hot(scope, operator, container, encoder)


class _Builder:
    """Small helpers over skl2onnx's scope/container for the nodes this converter adds."""

    def __init__(self, scope: Any, container: Any) -> None:
        from skl2onnx.proto import onnx_proto

        self.scope, self.container, self.types = scope, container, onnx_proto.TensorProto

    def name(self, hint: str) -> str:
        return self.scope.get_unique_variable_name(hint)

    def constant(self, hint: str, dtype: int, shape: list[int], values: Any) -> str:
        unique = self.name(hint)
        self.container.add_initializer(unique, dtype, shape, values)
        return unique

    def node(self, op: str, inputs: list[str], **attrs: Any) -> str:
        out = self.name(op.lower())
        self.container.add_node(op, inputs, out, **attrs)
        return out

    def column(self, source: str, j: int, width: int, is_string: bool) -> str:
        """Column j of `source` as [N, 1], cast to int64 unless it holds strings."""
        from skl2onnx.common._apply_operation import apply_cast

        column = source
        if width > 1:
            where = self.constant("index", self.types.INT64, [1], [j])
            column = self.node(
                "Gather",
                [source, where],
                axis=1,
                name=self.scope.get_unique_operator_name("Gather"),
            )
        if not is_string:
            cast = self.name("cast")
            apply_cast(self.scope, column, cast, self.container, to=self.types.INT64)
            column = cast
        return column

    def one_hot(self, column: str, categories: Any, is_string: bool) -> str:
        """ai.onnx.ml OneHotEncoder: [N, 1] -> [N, 1, len(categories)], zeros for the rest."""
        attrs: dict[str, Any] = {
            "name": self.scope.get_unique_operator_name("OneHotEncoder"),
            "zeros": 1,
            "op_domain": "ai.onnx.ml",
        }
        if is_string:
            attrs["cats_strings"] = np.array([str(c).encode("utf-8") for c in categories])
        else:
            attrs["cats_int64s"] = np.asarray(categories).astype(np.int64)
        return self.node("OneHotEncoder", [column], **attrs)


def _infrequent_one_hot(scope: Any, operator: Any, container: Any, encoder: Any) -> None:
    from skl2onnx.common._apply_operation import apply_concat, apply_reshape
    from skl2onnx.common.data_types import StringTensorType

    sources = []  # (input name, column index in it, width, is_string) per encoded column
    for item in operator.inputs:
        width = item.type.shape[1]
        if not isinstance(width, int):
            raise RuntimeError("OneHotEncoder input width must be known")
        sources.extend(
            (item.full_name, j, width, isinstance(item.type, StringTensorType))
            for j in range(width)
        )
    if len(sources) != len(encoder.categories_):
        raise RuntimeError("OneHotEncoder inputs do not match its categories")
    build = _Builder(scope, container)
    axis = build.constant("axis", build.types.INT64, [1], [-1])
    one = build.constant("one", build.types.FLOAT, [], [1.0])
    parts, total = [], 0
    for index, (source, j, width, is_string) in enumerate(sources):
        column = build.column(source, j, width, is_string)
        rare = encoder.infrequent_categories_[index]
        shown = list(encoder._compute_transformed_categories(index))
        total += len(shown)
        if rare is None:
            parts.append(build.one_hot(column, encoder.categories_[index], is_string))
            continue
        frequent = build.one_hot(column, shown[:-1], is_string) if len(shown) > 1 else None
        if encoder.handle_unknown == "infrequent_if_exist" and frequent is not None:
            # Anything not frequent (infrequent or never seen) lands in the last column.
            seen = build.node("ReduceSum", [frequent, axis], keepdims=1)
            flag = build.node("Sub", [one, seen])
        else:
            flag = build.node(
                "ReduceSum", [build.one_hot(column, list(rare), is_string), axis], keepdims=1
            )
        parts.extend([frequent, flag] if frequent is not None else [flag])
    joined = parts[0]
    if len(parts) > 1:
        joined = build.name("concat")
        apply_concat(scope, parts, joined, container, axis=-1)
    apply_reshape(scope, joined, operator.output_full_names, container, desired_shape=(-1, total))

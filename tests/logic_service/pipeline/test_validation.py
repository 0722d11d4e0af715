"""Request validation against the contract read from the fitted transformer itself."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from devtools.sklearn_artifacts import CREDIT_COLUMNS, credit_records
from devtools.sklearn_fits import coverage_records
from logic_service.errors import BadRequestError
from logic_service.pipeline.contract import CATEGORY, NUMBER, infer_schema, read_contract
from logic_service.pipeline.validation import Validator, frame_from_columns


def to_frame(data, schema, max_rows):
    """The frame the scikit-learn path gets for `data`, after every check."""
    return Validator("p", schema, max_rows=max_rows).validate(data).frame


@pytest.fixture(scope="module")
def schema(sklearn_artifacts):
    return infer_schema([sklearn_artifacts.transformer], {})


def test_contract_comes_from_the_column_transformer(schema) -> None:
    assert list(schema.columns) == CREDIT_COLUMNS
    assert schema.kinds == {
        "age": NUMBER,
        "income": NUMBER,
        "region": CATEGORY,
        "channel": CATEGORY,
    }


def test_records_columns_and_single_record_give_the_same_frame(schema) -> None:
    records = credit_records(3)
    columns = {name: [r[name] for r in records] for name in CREDIT_COLUMNS}
    by_records = to_frame(records, schema, 10)
    by_columns = to_frame(columns, schema, 10)
    assert by_records.equals(by_columns)
    single = to_frame(records[0], schema, 10)
    assert single.shape == (1, 4)
    assert single.iloc[0].equals(by_records.iloc[0])


def test_extra_columns_are_dropped_and_order_follows_training(schema) -> None:
    record = {"channel": "app", "noise": 1, "income": 10.0, "region": "north", "age": 3}
    frame = to_frame([record], schema, 10)
    assert list(frame.columns) == CREDIT_COLUMNS


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], '"data" is empty'),
        ({}, '"data" is empty'),
        ([{"age": 1, "income": 2, "region": "n"}], "missing column(s) 'channel'"),
        (
            [
                {"age": 1, "income": 2, "region": "n", "channel": "a"},
                {"age": "old", "income": 2, "region": "n", "channel": "a"},
            ],
            "column 'age', row 1: 'old' is not a number",
        ),
        (
            [{"age": 1, "income": [2, 3], "region": "n", "channel": "a"}],
            "column 'income', row 0: [2, 3] is not a number",
        ),
        (
            [
                {"age": 1, "income": 2, "region": "n", "channel": "a"},
                {"age": 1, "income": 2, "region": {"name": "n"}, "channel": "a"},
            ],
            "column 'region', row 1: {'name': 'n'} is not a single value",
        ),
        ({"age": [1], "income": [2], "region": ["n"]}, "missing column(s) 'channel'"),
        (
            [{"age": True, "income": 2, "region": "n", "channel": "a"}],
            "column 'age', row 0: true is a boolean, not a number",
        ),
        (
            {"age": [1, 2], "income": [3, False], "region": ["n", "s"], "channel": ["a", "b"]},
            "column 'income', row 1: false is a boolean, not a number",
        ),
        ("text", "must be a list of records"),
        ([1, 2], "must hold records"),
        ({"age": [1, 2], "income": [1]}, "different lengths"),
    ],
)
def test_bad_data_names_the_column_or_row(schema, data, message: str) -> None:
    with pytest.raises(BadRequestError) as error:
        to_frame(data, schema, 10)
    assert message in str(error.value)


def test_max_rows(schema) -> None:
    with pytest.raises(BadRequestError, match="11 rows, more than this pipeline's max_rows=10"):
        to_frame(credit_records(11), schema, 10)


def test_a_key_missing_from_one_record_names_the_record(schema) -> None:
    """A typo in one record of a batch must not be scored as a missing value."""
    records = [
        {"age": 30, "income": 1.5, "region": "n", "channel": "a"},
        {"income": 2.5, "region": "s", "chanel": "b"},
    ]
    with pytest.raises(BadRequestError, match="record 1 has no 'age', 'channel'"):
        to_frame(records, schema, 10)


def test_a_record_with_a_list_field_is_one_record_not_columns(schema) -> None:
    record = {"age": 30, "income": 1.5, "region": "n", "channel": "a", "tags": ["a", "b", "c"]}
    frame = to_frame(record, schema, 10)
    assert len(frame) == 1
    assert list(frame.columns) == CREDIT_COLUMNS


def test_numeric_strings_and_nulls_are_accepted(schema) -> None:
    frame = to_frame([{"age": "42", "income": None, "region": "n", "channel": "a"}], schema, 10)
    assert frame["age"].iloc[0] == 42.0
    assert frame["income"].isna().iloc[0]


def test_declared_columns_only_keep_the_rest_for_the_hook() -> None:
    """A preprocess pipeline declares some columns; the hook still sees every column sent."""
    schema = infer_schema([], {"balance": "number"})
    assert not schema.closed
    frame = to_frame([{"balance": "12.5", "geography": "Spain"}], schema, 10)
    assert list(frame.columns) == ["balance", "geography"]
    assert frame["balance"].iloc[0] == 12.5
    with pytest.raises(BadRequestError, match="missing column"):
        to_frame([{"geography": "Spain"}], schema, 10)


def test_booleans_are_refused_in_declared_numeric_columns_too() -> None:
    """`true` used to be scored as 1: a caller's type confusion must be a 400 instead."""
    schema = infer_schema([], {"balance": "number"})
    with pytest.raises(BadRequestError, match="column 'balance', row 0: true is a boolean"):
        to_frame([{"balance": True, "geography": "Spain"}], schema, 10)


def test_the_compiled_path_gets_columns_without_a_frame_and_the_same_messages(schema) -> None:
    records = credit_records(3)
    validator = Validator("p", schema, max_rows=10, build_frame=False)
    request = validator.validate(records)
    columns, rows = request.columns, request.rows
    assert request.frame is None
    assert rows == 3 and list(columns) == CREDIT_COLUMNS
    assert columns["age"].dtype == np.float64 and columns["region"] == [
        r["region"] for r in records
    ]
    frame = frame_from_columns(columns, schema)
    assert frame.equals(to_frame(records, schema, 10))
    with pytest.raises(BadRequestError, match="record 1 has no 'age'"):
        validator.validate([records[0], {"income": 1, "region": "n", "channel": "a"}])


def test_nulls_are_found_in_the_same_pass(schema) -> None:
    """The first null of each column, for the message when the features cannot be scored."""
    records = credit_records(4)
    records[2] = {**records[2], "age": None, "region": None}
    records[3] = {**records[3], "age": None}
    request = Validator("p", schema, max_rows=10).validate(records)
    assert request.nulls == {"age": 2, "region": 2}
    assert request.first_null() == "column 'age', row 2"
    assert request.first_null(lambda name: name != "age") == "column 'region', row 2"
    assert request.first_null(lambda name: name == "channel") is None


def test_a_null_reaches_scikit_learn_as_the_missing_value_it_was_fitted_on(
    coverage_artifacts,
) -> None:
    """pandas gave the transformers NaN for a missing string, and SimpleImputer(missing_values=
    np.nan) does not see None as missing in an object array: the frame carries NaN.
    An imputer fitted on a "?" marker gets "?", which is then a known value, not an unknown."""
    imputers = coverage_artifacts.fitted["string_imputers"]
    schema = infer_schema([imputers], {})
    contract = read_contract(imputers, schema)
    record = coverage_records(1)[0] | {"city": None, "plan": None, "channel": None}
    frame = Validator("p", schema, contract, max_rows=1).validate([record]).frame
    assert math.isnan(frame["city"][0]) and math.isnan(frame["plan"][0])
    assert frame["channel"][0] == "?" and contract.columns["channel"].is_known("?")
    assert contract.columns["channel"].nullable


def test_an_encoder_fitted_on_none_gets_none() -> None:
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder

    # What pandas 2 made of records with None (pandas 3 makes NaN of it, as read_csv does).
    fitted_on = pd.DataFrame({"c": pd.Series(["a", None, "b"], dtype=object)})
    encoder = ColumnTransformer([("c", OneHotEncoder(), ["c"])]).fit(fitted_on)
    schema = infer_schema([encoder], {})
    contract = read_contract(encoder, schema)
    frame = Validator("p", schema, contract, max_rows=2).validate([{"c": None}, {"c": "a"}]).frame
    assert frame["c"].tolist() == [None, "a"]
    np.testing.assert_array_equal(encoder.transform(frame), [[0, 0, 1], [1, 0, 0]])

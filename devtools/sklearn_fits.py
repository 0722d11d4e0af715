"""What real pipelines hold (issue 21): one fit_* function per kind of pipeline.

Each takes the training frame and returns fitted objects. This module imports only numpy,
pandas and scikit-learn (1.2 and later), so the same objects are fitted by this session's
scikit-learn (devtools/sklearn_artifacts.py's `coverage_artifacts`) and by older releases in
their own build environments (devtools/legacy_train.py, run with the repository on its path).
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pandas as pd

COVERAGE_CITIES = ["paris", "lyon", "nice", "brest", "metz"]
COVERAGE_COLUMNS = ["age", "income", "balance", "rate", "city", "plan", "channel", "size", "grade"]


def coverage_records(n: int, seed: int = 5) -> list[dict[str, Any]]:
    """Records as callers send them: nulls in numbers and strings, rare cities, rare grades,
    and "?" where the training CSV marked a missing channel."""
    rng = np.random.default_rng(seed)
    return [
        {
            "age": None if i % 9 == 4 else float(rng.integers(18, 80)),
            "income": float(np.round(rng.normal(50_000, 15_000), 2)),
            "balance": float(np.round(rng.gamma(2.0, 20_000), 2)),
            "rate": float(np.round(rng.uniform(0, 1), 4)),
            "city": None
            if i % 11 == 3
            else str(rng.choice(COVERAGE_CITIES, p=[0.4, 0.3, 0.2, 0.07, 0.03])),
            "plan": None if i % 13 == 5 else str(rng.choice(["basic", "plus"])),
            "channel": "?" if i % 10 == 7 else str(rng.choice(["app", "web", "branch"])),
            "size": str(rng.choice(["S", "L"])),
            "grade": int(rng.choice([1, 2, 3, 7], p=[0.4, 0.35, 0.22, 0.03])),
        }
        for i in range(n)
    ]


def coverage_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """The training frame as users get it: the records written to CSV, read back by pandas
    (a missing string is NaN, "?" stays "?")."""
    return pd.read_csv(io.StringIO(pd.DataFrame(records).to_csv(index=False)))


def offline_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """The frame an offline scoring script builds from records: a null is NaN (what pandas
    3 makes of None in a string column; pandas 2 keeps None, so it is replaced here)."""
    frame = pd.DataFrame(records)
    for name in frame.columns:
        if frame[name].dtype == object:
            frame[name] = frame[name].where(frame[name].notna(), np.nan)
    return frame


def template_preprocessor(numbers: list[str], strings: list[str]) -> Any:
    """The commonest public end-to-end template's preprocessor, unfitted: `numbers` through
    SimpleImputer(median) + StandardScaler, `strings` through SimpleImputer(most_frequent) +
    OneHotEncoder() + StandardScaler(with_mean=False)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = Pipeline(
        [("imputer", SimpleImputer(strategy="median")), ("scaler", StandardScaler())]
    )
    categorical = Pipeline(
        [
            ("imputer", SimpleImputer(strategy="most_frequent")),
            ("one_hot_encoder", OneHotEncoder()),
            ("scaler", StandardScaler(with_mean=False)),
        ]
    )
    return ColumnTransformer(
        [("num_pipeline", numeric, numbers), ("cat_pipelines", categorical, strings)]
    )


def fit_template(frame: pd.DataFrame) -> tuple[Any, Any]:
    """The commonest public end-to-end template: `preprocessor.pkl` and a regressor."""
    from sklearn.linear_model import Ridge

    preprocessor = template_preprocessor(["age", "income"], ["city", "plan"]).fit(frame)
    target = frame["income"] / 1000 + 3 * (frame["city"] == "paris") + frame["age"].fillna(40)
    # Ridge, not LinearRegression: the one-hot columns plus an intercept are collinear, and
    # lstsq may then answer with coefficients near 1e11 whose float32 sum is noise (the parity
    # gate refuses such a model, as it did for scikit-learn 1.3.2's fit of this frame).
    model = Ridge(alpha=1.0).fit(preprocessor.transform(frame), target)
    return preprocessor, model


def fit_string_imputers(frame: pd.DataFrame) -> Any:
    """SimpleImputer on strings (constant and most_frequent, NaN and a "?" marker) and on
    integer-coded categories, each before an encoder."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder

    def imputed(imputer: Any, encoder: Any) -> Any:
        return Pipeline([("impute", imputer), ("encode", encoder)])

    return ColumnTransformer(
        [
            (
                "constant",
                imputed(
                    SimpleImputer(strategy="constant", fill_value="unknown"),
                    OneHotEncoder(handle_unknown="ignore"),
                ),
                ["city"],
            ),
            (
                "marker",
                imputed(
                    SimpleImputer(strategy="most_frequent", missing_values="?"), OneHotEncoder()
                ),
                ["channel"],
            ),
            (
                "frequent",
                imputed(SimpleImputer(strategy="most_frequent"), OrdinalEncoder()),
                ["plan"],
            ),
            (
                "both",
                imputed(
                    SimpleImputer(strategy="constant", fill_value="none"),
                    OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                ),
                ["city", "plan"],
            ),
            (
                "integers",
                imputed(
                    SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")
                ),
                ["grade"],
            ),
        ]
    ).fit(frame)


def fit_one_hot_variants(frame: pd.DataFrame) -> Any:
    """OneHotEncoder with drop= (first, if_binary, a list), infrequent categories (also
    with drop), unknowns sent to the infrequent column, and NaN as a fitted category."""
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder

    return ColumnTransformer(
        [
            ("first", OneHotEncoder(drop="first", handle_unknown="ignore"), ["city"]),
            ("if_binary", OneHotEncoder(drop="if_binary"), ["size", "plan"]),
            (
                "listed",
                OneHotEncoder(drop=["lyon", "L"], handle_unknown="ignore"),
                ["city", "size"],
            ),
            (
                "rare",
                OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=20),
                ["city", "grade"],
            ),
            (
                "rare_first",
                OneHotEncoder(drop="first", handle_unknown="infrequent_if_exist", max_categories=3),
                ["city"],
            ),
        ]
    ).fit(frame)


def fit_ordinal_variants(frame: pd.DataFrame) -> Any:
    """OrdinalEncoder with unknown_value (a number, NaN) and encoded_missing_value."""
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OrdinalEncoder

    def ordinal(unknown: float, **missing: Any) -> Any:
        return OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=unknown, **missing)

    return ColumnTransformer(
        [
            ("missing", ordinal(-1, encoded_missing_value=-2), ["city"]),
            ("nan_unknown", ordinal(np.nan, encoded_missing_value=-2), ["plan"]),
            ("integers", ordinal(99), ["grade"]),
            ("two", ordinal(-1, encoded_missing_value=-3), ["size", "city"]),
        ]
    ).fit(frame)


def fit_recent_encoder_options(frame: pd.DataFrame) -> Any:
    """Options newer releases added: handle_unknown="warn" (1.6), OrdinalEncoder with
    infrequent categories (1.3), and an integer output dtype."""
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder

    rare = OrdinalEncoder(
        handle_unknown="use_encoded_value",
        unknown_value=-1,
        encoded_missing_value=-5,
        min_frequency=20,
    )
    return ColumnTransformer(
        [
            ("warn", OneHotEncoder(handle_unknown="warn", min_frequency=20), ["city"]),
            ("warn_plain", OneHotEncoder(handle_unknown="warn"), ["plan"]),
            ("rare", rare, ["city"]),
            ("integers", OneHotEncoder(dtype=np.int64, drop="first"), ["size"]),
        ]
    ).fit(frame)


def halve(values: Any) -> Any:
    """A Python function in a FunctionTransformer: it cannot be compiled, and is named."""
    return values / 2


def fit_functions(frame: pd.DataFrame, func: Any = None) -> Any:
    """FunctionTransformer with numpy ufuncs (and func=None), alone and inside a Pipeline;
    `func` replaces them all (e.g. `halve`) to build the one that cannot compile."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    def function(ufunc: Any) -> Any:
        return FunctionTransformer(func if func is not None else ufunc)

    return ColumnTransformer(
        [
            ("log1p", function(np.log1p), ["balance"]),
            ("sqrt", function(np.sqrt), ["balance"]),
            ("log", function(np.log), ["balance"]),
            ("exp", function(np.exp), ["rate"]),
            ("expm1", function(np.expm1), ["rate"]),
            ("abs", function(np.abs), ["income"]),
            ("none", function(None), ["rate"]),
            (
                "pipeline",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy="median")),
                        ("log", function(np.log1p)),
                        ("scale", StandardScaler()),
                    ]
                ),
                ["age", "income"],
            ),
        ]
    ).fit(frame)


def fit_label_encoder(column: pd.Series) -> Any:
    """One column's LabelEncoder, as glue code fits it (part of an `assemble:` list)."""
    from sklearn.preprocessing import LabelEncoder

    return LabelEncoder().fit(column)

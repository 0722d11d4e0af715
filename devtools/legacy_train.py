"""Fit and save artifacts the way users of one scikit-learn release do, in that release.

Run by `devtools/legacy_sklearn.py` with the interpreter of a build environment (any
scikit-learn from 1.2 on, numpy, pandas, joblib, dill) and the repository on PYTHONPATH:
`python legacy_train.py OUT`. It imports nothing from the kit, only `devtools/sklearn_fits.py`
(the template's preprocessor and the coverage fixtures). On a student-performance table with
the missing values and strings of real tabular data (and an id column no step reads, so
1.5/1.6 ColumnTransformers pickle their `_RemainderColsList`), it fits:

- `template`: the commonest public end-to-end template's preprocessor, exactly: numbers
  through SimpleImputer(median) + StandardScaler, strings through SimpleImputer(most_frequent)
  + OneHotEncoder() + StandardScaler(with_mean=False); then a Ridge and a
  GradientBoostingRegressor on its output (a plain LinearRegression on those collinear one-hot
  columns gets coefficients near 1e11 under some releases, which no float32 graph reproduces:
  the parity gate refuses it, rightly).
- `simple`: the same columns with imputation on numbers only and one-hot (ignoring unknowns)
  on strings, and a LinearRegression.

Each object is saved with pickle, joblib (plain and zlib-compressed) and dill, as users do.
`records.json` holds JSON records (null for a missing value) and `expected.json` the scores
this release computes for them: what the kit must reproduce, whatever it runs.

- `coverage/NAME.joblib`: every kind of step the compiled engine converts (string imputers,
  one-hot and ordinal variants, numpy functions, the template on other columns), fitted by
  `devtools/sklearn_fits.py`'s functions, with this release's features for
  `coverage_records.json` in `expected.json` under `coverage/NAME`.
"""

from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path

import dill
import joblib
import numpy as np
import pandas as pd
import sklearn
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from devtools import sklearn_fits as fits

NUMERIC = ["reading_score", "writing_score"]
CATEGORICAL = [
    "gender",
    "race_ethnicity",
    "parental_level_of_education",
    "lunch",
    "test_preparation_course",
]
LEVELS = {
    "gender": ["female", "male"],
    "race_ethnicity": ["group A", "group B", "group C", "group D", "group E"],
    "parental_level_of_education": [
        "some high school",
        "high school",
        "some college",
        "associate's degree",
        "bachelor's degree",
        "master's degree",
    ],
    "lunch": ["standard", "free/reduced"],
    "test_preparation_course": ["none", "completed"],
}


def students(n: int, seed: int, missing: bool = True) -> pd.DataFrame:
    """A table like the public StudentsPerformance.csv, read by pandas (NaN for missing)."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"student_id": [f"s{seed}-{i}" for i in range(n)]})
    for column, levels in LEVELS.items():
        frame[column] = rng.choice(levels, n)
    frame["reading_score"] = rng.integers(17, 101, n).astype(float)
    frame["writing_score"] = np.clip(frame["reading_score"] + rng.normal(0, 6, n), 10, 100).round()
    frame["math_score"] = (
        0.45 * frame["reading_score"]
        + 0.35 * frame["writing_score"]
        + 6 * (frame["lunch"] == "standard")
        + 4 * (frame["test_preparation_course"] == "completed")
        + rng.normal(0, 4, n)
    ).round()
    if missing:
        frame.loc[frame.index % 13 == 5, "reading_score"] = np.nan
        frame.loc[frame.index % 17 == 3, "lunch"] = np.nan
        frame.loc[frame.index % 19 == 7, "parental_level_of_education"] = np.nan
    return frame


def template() -> ColumnTransformer:
    return fits.template_preprocessor(NUMERIC, CATEGORICAL)


def simple() -> ColumnTransformer:
    numeric = Pipeline(
        [("imputer", SimpleImputer(strategy="median")), ("scaler", StandardScaler())]
    )
    return ColumnTransformer(
        [("num", numeric, NUMERIC), ("cat", OneHotEncoder(handle_unknown="ignore"), CATEGORICAL)]
    )


def save(obj: object, folder: Path, stem: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / f"{stem}.pkl").open("wb") as handle:
        pickle.dump(obj, handle)
    joblib.dump(obj, folder / f"{stem}.joblib")
    joblib.dump(obj, folder / f"{stem}.z.joblib", compress=3)
    with (folder / f"{stem}.dill").open("wb") as handle:
        dill.dump(obj, handle)


def as_records(frame: pd.DataFrame) -> list[dict]:
    """JSON records as a business service sends them: null for a missing value."""
    plain = frame.astype(object).where(frame.notna(), None)
    return plain.to_dict("records")


def as_frame(records: list[dict]) -> pd.DataFrame:
    """The records as the training data had them: NaN for a missing value."""
    frame = pd.DataFrame(records)
    return frame.where(frame.notna(), np.nan)


def coverage(out: Path) -> dict[str, list]:
    """The converter coverage fixtures, fitted by this release, and its features for them."""
    frame = fits.coverage_frame(fits.coverage_records(400, seed=0))
    records = fits.coverage_records(60, seed=7)
    template, _ = fits.fit_template(frame)
    fitted = {
        "template": template,
        "string_imputers": fits.fit_string_imputers(frame),
        "one_hot": fits.fit_one_hot_variants(frame),
        "ordinal": fits.fit_ordinal_variants(frame),
        "functions": fits.fit_functions(frame),
    }
    (out / "coverage").mkdir(parents=True, exist_ok=True)
    (out / "coverage_records.json").write_text(json.dumps(records))
    expected = {}
    for name, obj in fitted.items():
        joblib.dump(obj, out / "coverage" / f"{name}.joblib")
        result = obj.transform(fits.offline_frame(records))
        dense = result.toarray() if hasattr(result, "toarray") else result
        expected[f"coverage/{name}"] = np.asarray(dense, dtype=float).tolist()
    return expected


def main(out: Path) -> None:
    train = students(600, seed=0)
    features, target = train.drop(columns=["math_score"]), train["math_score"]
    records = as_records(students(40, seed=1).drop(columns=["math_score"]))
    expected = {}
    for name, make in (("template", template), ("simple", simple)):
        pre = make().fit(features)
        matrix = pre.transform(features)
        folder = out / name
        save(pre, folder, "preprocessor")
        linear = (Ridge() if name == "template" else LinearRegression()).fit(matrix, target)
        save(linear, folder, "model")
        scored = pre.transform(as_frame(records))
        expected[f"{name}/model"] = linear.predict(scored).tolist()
        if name == "template":
            boosted = GradientBoostingRegressor(n_estimators=40, max_depth=3, random_state=0)
            boosted.fit(matrix, target)
            save(boosted, folder, "boosted")
            expected[f"{name}/boosted"] = boosted.predict(scored).tolist()
        expected[f"{name}/features"] = np.asarray(
            scored.toarray() if hasattr(scored, "toarray") else scored
        ).tolist()
    expected.update(coverage(out))
    (out / "records.json").write_text(json.dumps(records, indent=1))
    (out / "expected.json").write_text(json.dumps(expected))
    (out / "versions.json").write_text(
        json.dumps({"scikit-learn": sklearn.__version__, "numpy": np.__version__})
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]))

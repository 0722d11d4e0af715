"""The start-up self-test: a pipeline that cannot score never reports ready."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import pandas as pd
import pytest
import yaml

from devtools.logic_tier import start_logic_service
from devtools.servers import script

# A team's own transformer as it was when it was pickled ...
CLASSES_V1 = '''
import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin


class IncomeRatio(BaseEstimator, TransformerMixin):
    """income / age, scaled by the training median."""

    def fit(self, X, y=None):
        ratio = np.asarray(X["income"], float) / np.asarray(X["age"], float)
        self.median_ = float(np.median(ratio))
        return self

    def transform(self, X):
        ratio = np.asarray(X["income"], float) / np.asarray(X["age"], float)
        return (ratio / self.median_).reshape(-1, 1)
'''
# ... and as the repository has it now: transform reads state the old pickle does not have
# (what scikit-learn 1.9's SimpleImputer does with a 1.3 pickle's missing `_fill_dtype`).
CLASSES_V2 = CLASSES_V1.replace(
    "return (ratio / self.median_).reshape(-1, 1)",
    "return ((ratio - self.offset_) / self.median_).reshape(-1, 1)",
)


@pytest.fixture
def drifted(tmp_path, sklearn_artifacts):
    (tmp_path / "team_features.py").write_text(textwrap.dedent(CLASSES_V1))
    run = (
        "import sys, joblib, pandas as pd; sys.path.insert(0, sys.argv[1]);"
        "from team_features import IncomeRatio;"
        "frame = pd.read_csv(sys.argv[2]);"
        "joblib.dump(IncomeRatio().fit(frame), sys.argv[1] + '/ratio.pkl')"
    )
    frame = sklearn_artifacts.credit_frame.dropna()[["age", "income"]]
    frame.to_csv(tmp_path / "train.csv", index=False)
    subprocess.run(
        [sys.executable, "-c", run, str(tmp_path), str(tmp_path / "train.csv")], check=True
    )
    (tmp_path / "team_features.py").write_text(textwrap.dedent(CLASSES_V2))
    document = {
        "imports": ["team_features"],
        "pipelines": {
            "ratio": {
                "transformer": "ratio.pkl",
                "graph_model": "ratio",
                "columns": {"age": "number", "income": "number"},
                "samples": "samples.json",
            }
        },
        "graph_service_url": "http://127.0.0.1:9",
    }
    pd.DataFrame(frame.head(3)).to_json(tmp_path / "samples.json", orient="records")
    config = tmp_path / "pipelines.yaml"
    config.write_text(yaml.safe_dump(document))
    return config


def test_check_refuses_a_pipeline_that_cannot_score_in_one_line(drifted) -> None:
    result = subprocess.run(
        [script("logic-service"), "--config", str(drifted), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"logic-service: error: {drifted}: pipeline 'ratio': self-test failed: ")
    assert "AttributeError" in last and "offset_" in last
    assert "Traceback" not in result.stderr


def test_the_server_never_reports_ready(drifted, tmp_path) -> None:
    with pytest.raises(RuntimeError, match="exited with 2 before serving") as error:
        start_logic_service(drifted, tmp_path / "logic.log")
    assert "self-test failed" in str(error.value)


def test_a_pipeline_that_scores_says_so(drifted) -> None:
    (drifted.parent / "team_features.py").write_text(textwrap.dedent(CLASSES_V1))
    result = subprocess.run(
        [script("logic-service"), "--config", str(drifted), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    # Its contract rows (from the fitted class's feature names) and its three samples.
    assert re.search(r"self-test: (\d+) of \1 rows scored", result.stdout), result.stdout

"""Project-wide pytest setup. Model builders live in tests/fixtures/, one module per kind."""

from __future__ import annotations

import os

# Keep TensorFlow quiet and deterministic in every test process and the servers they start.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")

# Fixture modules, one per kind of artifact, shared by every test package.
pytest_plugins = [
    "tests.fixtures.servers",
    "tests.fixtures.keras_models",
    "tests.fixtures.ckpt_models",
    "tests.fixtures.savedmodels",
    "tests.fixtures.sklearn_artifacts",
]

"""Project-wide pytest setup. Model builders live in devtools/, one module per kind."""

from __future__ import annotations

import os

# Keep TensorFlow quiet and deterministic in every test process and the servers they start.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")

# Fixture modules, one per kind of artifact, shared by every test package.
pytest_plugins = [
    "devtools.servers",
    "devtools.keras_models",
    "devtools.ckpt_models",
    "devtools.savedmodels",
    "devtools.sklearn_artifacts",
    "devtools.legacy_sklearn",
    "devtools.traffic",
]

"""TF Serving's fixed names: the serve tag, signature keys and method names.

Values are those of tensorflow/python/saved_model/signature_constants.py and tag_constants.py,
written out so that neither tier needs TensorFlow to know them.
"""

from __future__ import annotations

SERVE_TAG = "serve"
DEFAULT_SIGNATURE = "serving_default"

PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"

CLASSIFY_INPUTS = "inputs"
CLASSIFY_OUTPUT_CLASSES = "classes"
CLASSIFY_OUTPUT_SCORES = "scores"
REGRESS_INPUTS = "inputs"
REGRESS_OUTPUTS = "outputs"

# Output tensors whose key ends in this are written as {"b64": ...} (api_rest.md).
BYTES_SUFFIX = "_bytes"

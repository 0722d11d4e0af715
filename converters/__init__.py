"""Turn Keras and TF1 models into TensorFlow Serving SavedModel versions, verified.

- `cli/`: the console scripts (convert-h5, convert-ckpt, models-config, inspect-model,
  export-frozen), argparse and summaries only.
- `keras/`, `ckpt/`: loading and exporting each kind of source.
- `verify.py` (parity of the export against the source), `publish.py` (staging folder to
  version folder), `models_config.py` (TF Serving's models.config), `signatures.py`
  (a SavedModel's signatures), `frozen.py` (one signature as a frozen GraphDef), `errors.py`.
"""

"""Keras (`.h5`, `.keras`, architecture JSON + weights) to a TF Serving SavedModel.

- `source.py`: what the file is (read by content), `loader.py`: load it with the Keras that
  can, `custom_objects.py`: user layers named on the command line, `export.py`: the
  `serving_default` signature and the export.
"""

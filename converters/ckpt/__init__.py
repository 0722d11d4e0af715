"""TF1 checkpoints to a TF Serving SavedModel.

- `loader.py`: the checkpoint's files and meta graph.
- `plan.py`: a signature's tensors as users read them, and the chosen plan.
- `detect.py`: the signature from the graph alone (inputs, ranked outputs, what is set aside).
- `signature.py`: flags over the graph's own signature_def over detection, checked.
- `shapes.py`: serving shapes for inputs the graph leaves unknown.
- `assets.py`: vocabulary files the tables read, checked and shipped in assets/.
- `export.py`: the SavedModel, with tables and initialisers wired into its init op.
- `probes.py`: input values the graph knows (table keys, embedding ids) for verification.
- `dependence.py`: the constant-output check, fed random values, probes and --sample.
"""

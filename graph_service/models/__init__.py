"""The models a graph-service process serves, shared by the REST and gRPC fronts.

- `registry.py`: versions and labels per model, by TF Serving's version policies.
- `servable.py`, `saved_model.py`: one loaded SavedModel version and its signatures.
- `watcher.py`: live reload of models.config and new version folders.
- `pools.py`: per-model call slots (a stuck model never takes every thread).
- `metadata.py`: the metadata answer (`/metadata`, GetModelMetadata).
"""

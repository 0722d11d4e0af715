"""Traffic between versions of a pipeline's graph model: weighted and sticky routes, a shadow
compared off the caller's path, and reloading both without a restart.

A map, by job:

- `spec.py`: the pipeline file's `traffic:` block -> a checked `TrafficSpec` (one-line errors).
- `routes.py`: lanes and their weights, the sticky hash (documented, reproducible).
- `shadow.py`: the shadow queue and threads, and the comparison of two answers.
- `metrics.py`: requests per version, the shadow comparison, reloads; summed for /pipelines.
- `table.py`: the plans a process serves now, swapped whole; labels asked of the graph.
- `board.py`: the last accepted file, in memory the gunicorn master and workers share.
- `reload.py`: SIGHUP and file changes -> validate, then swap (master judges, workers follow).

docs/traffic.md is the user's side of all this.
"""

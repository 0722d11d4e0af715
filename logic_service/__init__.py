"""The logic tier: business JSON records in, features, a graph (or in-process) model, scores out.

A map, by job:

- `app.py` (`create_app`), `cli.py` (`logic-service`), `settings.py` (LOGIC_* environment),
  `config.py` (the pipeline file), `errors.py` (one exception hierarchy, each with its status),
  `metrics.py`, `deadline.py` (a request's time budget), `scoring.py` (`Scorer.score`: the
  request path, top to bottom).
- `http/`: the HTTP front: the gunicorn worker and its config, `/get_score` before Flask, the
  one error-to-response mapping, the request log line, drain, OpenAPI, our `/get_score` wire
  format.
- `pipeline/`: what a pipeline is: artifacts (read before they are unpickled), the request
  contract and its validation, the compiled (ONNX) engine and its parity gate, compiled
  builds on disk, loading and the self-test at start-up.
- `compiler/`: `logic-service compile`: each pipeline compiled ahead of time in the
  scikit-learn release that pickled it (a cached build environment when it is not this one).
- `graph/`: calls to the graph tier: the HTTP transport and client, one target per servable
  with its batcher and breaker, TF Serving's wire format.
- `traffic/`: which version answers (weighted, sticky routes), the shadow compared off the
  caller's path, and reloading both on SIGHUP or a file change.

Never imports TensorFlow.
"""

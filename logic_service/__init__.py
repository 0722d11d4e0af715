"""The logic tier: business JSON records in, features, a graph (or in-process) model, scores out.

A map, by job:

- `app.py` (`create_app`), `cli.py` (`logic-service`), `settings.py` (LOGIC_* environment),
  `config.py` (the pipeline file), `errors.py` (one exception hierarchy, one HTTP mapping),
  `metrics.py`, `deadline.py` (a request's time budget), `scoring.py` (`Scorer.score`: the
  request path, top to bottom).
- `http/`: the HTTP front: the gunicorn worker and its config, `/get_score` before Flask, the
  request log line, drain, OpenAPI, our `/get_score` wire format.
- `pipeline/`: what a pipeline is: artifacts, the request contract and its validation, the
  compiled (ONNX) engine and its parity gate, loading at start-up.
- `graph/`: calls to the graph tier: the HTTP transport and client, one target per servable
  with its batcher and breaker, TF Serving's wire format.
- `traffic/`: which version answers (weighted, sticky routes), the shadow compared off the
  caller's path, and reloading both on SIGHUP or a file change.

Never imports TensorFlow.
"""

"""The graph tier's local stand-in: TF Serving's REST and gRPC APIs over the same models.config.

- `cli.py` (`graph-service`, tensorflow_model_server's flags), `settings.py`, `server.py`
  (gunicorn, one worker), `worker.py` (the gunicorn worker that opens the REST port once the
  models are loaded), `ports.py` (a port already taken is found before loading),
  `bootstrap.py` (assemble a serving process), `errors.py` (TF Serving's error codes and
  texts), `metrics.py` (TF Serving's metric names).
- `models/`: model versions and labels, loading, live reload, per-model call slots.
- `rest/`: the REST API (`/v1/models/...`).
- `grpc/`: the gRPC API (PredictionService, ModelService) over the same registry.
"""

"""The logic tier's HTTP front, in the order a request meets it.

- `gunicorn.conf.py`: the server's settings (workers, threads, timeouts, pinning, hooks).
- `worker.py`: gunicorn's gthread worker plus probe lanes, a refusing drain, the linger.
- `gunicorn_check.py`: refuses at start a gunicorn lacking the gthread internals the worker uses.
- `score_endpoint.py`: `POST /get_score` as plain WSGI in front of Flask (the hot path).
- `codecs.py`: the `/get_score` body and the `{"msg", "code", "data"}` envelope.
- `error_handlers.py`: the one place errors become responses (Flask routes and ScoreEndpoint).
- `request_log.py`: request ids and the one JSON log line per request.
- `drain.py`: what "draining" means to a request (`/ready` 503 after SIGTERM).
- `openapi.py`: `/openapi.json`, generated from the pipelines' contracts.
"""

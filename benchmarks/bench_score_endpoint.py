"""CPU per call of POST /get_score through ScoreEndpoint against the same work as a Flask route.

`logic_service/http/score_endpoint.py` serves /get_score before Flask. This measures why, in
process (no server, no network: the difference is only the framework's own work): the same
app, the same compiled in-process pipeline (the credit fixtures' transformer and logistic
regression), the same body, called as WSGI (a) through the app as built (ScoreEndpoint),
(b) through a Flask view registered for the benchmark that does what ScoreEndpoint does
(decode, Scorer.score, encode, the request's log line and metrics). Medians of rounds of
CPU microseconds per call. Run: `python benchmarks/bench_score_endpoint.py`.
"""

from __future__ import annotations

import argparse
import io
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import orjson
from flask import Response, g, request

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from devtools.sklearn_artifacts import build_sklearn_artifacts, credit_records  # noqa: E402
from logic_service.app import EXTENSION, create_app  # noqa: E402
from logic_service.http.codecs import decode_score_request, encode_score_response  # noqa: E402
from logic_service.settings import Settings  # noqa: E402


def environ_for(path: str, body: bytes) -> dict:
    return {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": path,
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "bench",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "wsgi.version": (1, 0),
    }


def cpu_per_call(app, path: str, body: bytes, calls: int) -> float:
    """CPU microseconds per WSGI call (body fully consumed, status checked)."""
    statuses = []

    def start_response(status, headers, exc_info=None):
        statuses.append(status)

    started = time.process_time()
    for _ in range(calls):
        b"".join(app(environ_for(path, body), start_response))
    elapsed = time.process_time() - started
    assert set(statuses) == {"200 OK"}, set(statuses)
    return elapsed / calls * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-endpoint-") as tmp:
        artifacts = build_sklearn_artifacts(Path(tmp) / "artifacts")
        config = artifacts.write_config(
            "bench.yaml",
            {
                "pipelines": {
                    "credit": {
                        "transformer": "credit/transformer.pkl",
                        "model": "credit/sk_model.pkl",
                        "method": "predict_proba",
                    }
                }
            },
        )
        app = create_app(Settings(config_path=config, json_logs=True))
        state = app.extensions[EXTENSION]
        endpoint = app.wsgi_app

        @app.post("/flask_score")
        def flask_score():  # what ScoreEndpoint does, as a Flask view
            score_request = decode_score_request(request.get_data(), request.content_type)
            pipeline = state.scorer.select(score_request.model)
            g.info.pipeline = pipeline.name
            result = state.scorer.score(
                pipeline, score_request.data, g.info.request_id, g.info.timings
            )
            state.metrics.observe(pipeline.name, 200, g.info.timings)
            return Response(encode_score_response(result.data), mimetype="application/json")

        body = orjson.dumps({"data": credit_records(1)})
        for path in ("/get_score", "/flask_score"):  # warm up both (sessions, caches)
            cpu_per_call(endpoint, path, body, 200)
        logging.disable(logging.INFO)  # the request log line is written by both; keep the
        # terminal quiet (the formatting cost stays: disable only drops the emit)
        rounds = {"ScoreEndpoint (as shipped)": [], "a Flask route doing the same": []}
        for _ in range(args.rounds):
            rounds["ScoreEndpoint (as shipped)"].append(
                cpu_per_call(endpoint, "/get_score", body, args.calls)
            )
            rounds["a Flask route doing the same"].append(
                cpu_per_call(endpoint, "/flask_score", body, args.calls)
            )
    shipped = statistics.median(rounds["ScoreEndpoint (as shipped)"])
    print(
        f"\nPOST /get_score, 1-row body, in-process, median of {args.rounds} x {args.calls} calls:"
    )
    print("| path | CPU us/call | vs ScoreEndpoint |\n|---|---:|---:|")
    for name, values in rounds.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.1f} | {median / shipped:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

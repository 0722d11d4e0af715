"""The KServe v1 peer for `make bench-logic`: a transformer in front of the same graph tier.

Written the way KServe's transformer samples are: a `kserve.Model` whose `preprocess` turns
the request's `instances` (business records) into features with the fitted scikit-learn
transformer, and whose inherited `predict` POSTs them to the predictor
(`--predictor_host`, here the kit's graph-service, which speaks TF Serving's v1 REST API).
Served by kserve's own ModelServer (FastAPI/uvicorn, `--workers` processes).

Runs only in the benchmark environment (.venv-bench: kserve pins protobuf and pandas below the
kit's). Usage:
    .venv-bench/bin/python benchmarks/kserve_transformer.py --transformer transformer.pkl \
        --model_name credit --predictor_host 127.0.0.1:8501 --http_port 8080 --workers 2
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import joblib
import kserve
import pandas as pd
from kserve import model_server
from kserve.predictor_config import PredictorConfig
from kserve.protocol.rest.multiprocess.server import RESTServerProcess

# kserve's supervisor pings each --workers process every 0.5 s and kills and restarts one that
# has not answered within 5 s. A new worker answers only once multiprocessing's spawn has
# imported kserve, pandas and scikit-learn and unpickled the model; on a busy 2-core machine
# that takes longer, and the workers are restarted forever (seen here at load average ~8).
# Workers get the minute gunicorn gives its own (timeout 60 s) before they count as hung.
WORKER_PING_TIMEOUT = 60.0
_kserve_is_alive = RESTServerProcess.is_alive


def _patient_is_alive(self: RESTServerProcess, timeout: float = WORKER_PING_TIMEOUT) -> bool:
    return _kserve_is_alive(self, max(timeout, WORKER_PING_TIMEOUT))


class SklearnTransformer(kserve.Model):
    """Records -> features with a fitted transformer; the predictor does the rest."""

    def __init__(self, name: str, transformer_path: str, predictor: PredictorConfig) -> None:
        super().__init__(name)
        self.transformer_path = transformer_path
        self.transformer: Any = None
        self._predictor = predictor

    @property
    def predictor_config(self) -> PredictorConfig:
        # kserve 0.21 keeps this in a contextvar that the processes started for --workers > 1
        # (multiprocessing spawn) do not inherit ("Could not find PredictorConfig"); the
        # model object is pickled into each of them, so it carries its own copy.
        return self._predictor

    def load(self) -> bool:
        self.transformer = joblib.load(self.transformer_path)
        self.ready = True
        return self.ready

    def preprocess(self, payload: dict, headers: dict[str, str] | None = None) -> dict:
        features = self.transformer.transform(pd.DataFrame(payload["instances"]))
        if hasattr(features, "toarray"):
            features = features.toarray()
        return {"instances": features.tolist()}


def main(argv: list[str] | None = None) -> int:
    # kserve's own parser (--http_port, --workers, --predictor_host, ...) plus ours.
    parser = argparse.ArgumentParser(parents=[model_server.parser], description=__doc__)
    parser.add_argument("--transformer", required=True, help="fitted transformer (joblib pickle)")
    args, _ = parser.parse_known_args(argv)
    RESTServerProcess.is_alive = _patient_is_alive
    predictor = PredictorConfig(
        predictor_host=args.predictor_host,
        predictor_protocol=args.predictor_protocol,
        predictor_request_timeout_seconds=args.predictor_request_timeout_seconds,
    )
    model = SklearnTransformer(args.model_name, args.transformer, predictor)
    model.load()
    kserve.ModelServer(
        http_port=args.http_port,
        workers=args.workers,
        enable_grpc=False,
        enable_latency_logging=False,
        predictor_config=predictor,
    ).start([model])
    return 0


if __name__ == "__main__":
    sys.exit(main())

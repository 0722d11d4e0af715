"""`graph-service`: TF Serving's REST and gRPC APIs here, with tensorflow_model_server's flags."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from converters.errors import ConverterError
from converters.models_config import ModelsConfig, validate_model_name
from graph_service import settings as defaults
from graph_service.settings import Settings

logger = logging.getLogger("graph_service")

EPILOG = """examples:
  graph-service --model_config_file=models/models.config --rest_api_port=8501
  graph-service --model_name=credit --model_base_path=models/credit --port=0   # REST only
  curl localhost:8501/v1/models/credit
  curl -d '{"instances": [[0.1, 0.2]]}' localhost:8501/v1/models/credit:predict
  curl localhost:8501/monitoring/prometheus/metrics   # TF Serving's metric names
  curl localhost:8501/monitoring/config               # config watcher state, last error
  gRPC on localhost:8500: tensorflow-serving-api's PredictionServiceStub / ModelServiceStub

start-up order (as TF Serving): every model in the config loads first, then the gRPC port
(--port) and the REST port (--rest_api_port) open. Until then both refuse connections, during
a start or a restart alike: a caller sees "connection refused" at once and can retry, never a
connection that is accepted and left waiting. A port another server holds stops graph-service
before anything loads. SIGTERM closes both ports at once; requests already accepted finish
(up to 10 s), then exit 0.

exit codes: 0 stopped cleanly, 2 bad flags or models.config, 4 no loadable model version
            or --port / --rest_api_port already taken
"""


def _gflags_bool(text: str) -> bool:
    """tensorflow_model_server's bool flags: `--flag`, `--flag=true`, `--flag=false`."""
    value = text.strip().lower()
    if value in {"true", "1", "yes"}:
        return True
    if value in {"false", "0", "no"}:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


class _Parser(argparse.ArgumentParser):
    """One-line usage errors (exit 2), like every other error this command prints."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="graph-service",
        description=(
            "Serve SavedModels listed in a TF Serving models.config over TF Serving's REST "
            "API (/v1/models/..., --rest_api_port) and gRPC API (PredictionService and "
            "ModelService, --port), with live reload of new versions and config changes."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    models = parser.add_argument_group("models (one of)")
    models.add_argument(
        "--model_config_file", type=Path, help="TF Serving models.config (text ModelServerConfig)"
    )
    models.add_argument("--model_name", help="single-model form: the model's name")
    models.add_argument(
        "--model_base_path", help="single-model form: folder holding version folders"
    )
    http = parser.add_argument_group("REST server")
    http.add_argument(
        "--rest_api_port",
        type=int,
        default=defaults.DEFAULT_REST_PORT,
        help="REST port, opened once every model has loaded (default 8501)",
    )
    http.add_argument(
        "--rest_api_host", default="0.0.0.0", help="address to bind (default 0.0.0.0)"
    )
    http.add_argument(
        "--rest_api_num_threads", type=int, default=8, help="request threads (default 8)"
    )
    http.add_argument(
        "--rest_api_timeout_in_ms",
        type=int,
        default=defaults.DEFAULT_TIMEOUT_MS,
        help="per-request deadline for REST, 504 when exceeded; 0 disables (default 30000); "
        "gRPC calls run under the caller's own deadline",
    )
    http.add_argument(
        "--max_body_bytes",
        type=int,
        default=defaults.DEFAULT_MAX_BODY_BYTES,
        help="larger request bodies get 413 (default 64 MiB)",
    )
    http.add_argument(
        "--model_max_inflight",
        type=int,
        default=0,
        help="calls one model may run at once, REST and gRPC together; more get 429 "
        "(gRPC: RESOURCE_EXHAUSTED) after a 50 ms wait, so a "
        "stuck model never takes every thread (default 0 = auto: all request threads with "
        "one model, 3/4 of them with several)",
    )
    grpc = parser.add_argument_group("gRPC server (tensorflow-serving-api clients)")
    grpc.add_argument(
        "--port",
        type=int,
        default=defaults.DEFAULT_GRPC_PORT,
        help="gRPC port for PredictionService and ModelService, bound on --rest_api_host "
        "once every model has loaded (default 8500); 0 = no gRPC, REST only (TF Serving "
        "itself always needs one)",
    )
    grpc.add_argument(
        "--grpc_max_threads",
        type=int,
        default=defaults.DEFAULT_GRPC_MAX_THREADS,
        help="gRPC calls handled at once (default 8)",
    )
    reload = parser.add_argument_group("live reload")
    reload.add_argument(
        "--model_config_file_poll_wait_seconds",
        type=float,
        default=0.0,
        help="re-read models.config every N s; 0 = never (default 0, as TF Serving)",
    )
    reload.add_argument(
        "--file_system_poll_wait_seconds",
        type=float,
        default=defaults.DEFAULT_FS_POLL_SECONDS,
        help="look for new version folders every N s; 0 = only at start (default 1)",
    )
    reload.add_argument(
        "--allow_version_labels_for_unavailable_models",
        nargs="?",
        const=True,
        default=False,
        type=_gflags_bool,
        metavar="true|false",
        help="let a label point at a version that is not loaded (canary set-ups); "
        "the bare flag means true, as in tensorflow_model_server",
    )
    compat = parser.add_argument_group(
        "accepted for tensorflow_model_server compatibility, not used"
    )
    compat.add_argument(
        "--enable_batching", nargs="?", const="true", help="server-side batching (TF Serving only)"
    )
    compat.add_argument("--batching_parameters_file", help="batching parameters (TF Serving only)")
    compat.add_argument(
        "--monitoring_config_file", help="Prometheus monitoring config (TF Serving only)"
    )
    parser.add_argument(
        "--log_level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="default INFO",
    )
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Validated settings; ConverterError (exit 2) with a one-line reason otherwise."""
    single = args.model_name is not None or args.model_base_path is not None
    if args.model_config_file is not None and single:
        raise _usage("pass either --model_config_file or --model_name/--model_base_path, not both")
    if args.model_config_file is None and not single:
        raise _usage(
            "pass --model_config_file=models/models.config (or --model_name and --model_base_path)"
        )
    if single:
        if not args.model_name or not args.model_base_path:
            raise _usage("the single-model form needs both --model_name and --model_base_path")
        validate_model_name(args.model_name)
        if not Path(args.model_base_path).is_dir():
            raise _usage(f"--model_base_path {args.model_base_path}: no such folder")
    else:
        config = ModelsConfig.load(args.model_config_file)
        if not config.names():
            raise _usage(
                f"{args.model_config_file} lists no model; add one with 'models-config add NAME'"
            )
    if not 0 < args.rest_api_port < 65536:
        raise _usage(f"--rest_api_port {args.rest_api_port}: use a port between 1 and 65535")
    if not 0 <= args.port < 65536:
        raise _usage(f"--port {args.port}: use a port between 1 and 65535, or 0 for no gRPC")
    if args.port == args.rest_api_port:
        raise _usage(f"--port and --rest_api_port are both {args.port}; give gRPC its own port")
    if args.grpc_max_threads < 1:
        raise _usage("--grpc_max_threads must be at least 1")
    if args.rest_api_num_threads < 1:
        raise _usage("--rest_api_num_threads must be at least 1")
    if args.model_max_inflight < 0:
        raise _usage("--model_max_inflight must be 0 (auto) or a positive number of calls")
    if args.max_body_bytes < 1:
        raise _usage("--max_body_bytes must be a positive number of bytes")
    return Settings(
        model_config_file=args.model_config_file,
        model_name=args.model_name,
        model_base_path=args.model_base_path,
        rest_api_port=args.rest_api_port,
        rest_api_host=args.rest_api_host,
        grpc_port=args.port,
        grpc_max_threads=args.grpc_max_threads,
        model_config_file_poll_wait_seconds=max(args.model_config_file_poll_wait_seconds, 0.0),
        file_system_poll_wait_seconds=max(args.file_system_poll_wait_seconds, 0.0),
        rest_api_timeout_in_ms=args.rest_api_timeout_in_ms,
        rest_api_num_threads=args.rest_api_num_threads,
        max_body_bytes=args.max_body_bytes,
        model_max_inflight=args.model_max_inflight,
        allow_version_labels_for_unavailable_models=args.allow_version_labels_for_unavailable_models,
        log_level=args.log_level,
    )


def _usage(message: str) -> ConverterError:
    error = ConverterError(message)
    error.exit_code = 2
    return error


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # usage errors and --help: a return code, so tests can call main()
        return exc.code if isinstance(exc.code, int) else 2
    try:
        settings = settings_from_args(args)
    except ConverterError as exc:
        print(f"graph-service: error: {exc}", file=sys.stderr)
        return 2
    ignored = [
        flag
        for flag in (
            "enable_batching",
            "batching_parameters_file",
            "monitoring_config_file",
        )
        if getattr(args, flag) is not None
    ]
    if ignored:
        print(
            f"graph-service: ignoring --{', --'.join(ignored)} (TF Serving only)", file=sys.stderr
        )
    from graph_service.bootstrap import StartupError
    from graph_service.server import serve

    try:
        serve(settings)
    except StartupError as exc:  # a port already taken, found before loading anything
        print(f"graph-service: {exc}", file=sys.stderr)
        return 4
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Everything the graph service is configured with, in one explicit object."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# TF Serving's own defaults (tensorflow_serving/model_servers/main.cc).
DEFAULT_REST_PORT = 8501
DEFAULT_GRPC_PORT = 8500
DEFAULT_GRPC_MAX_THREADS = 8
DEFAULT_FS_POLL_SECONDS = 1.0
DEFAULT_TIMEOUT_MS = 30_000
DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Settings:
    """Flags of `graph-service`; names follow `tensorflow_model_server` where one exists."""

    model_config_file: Path | None = None
    model_name: str | None = None
    model_base_path: str | None = None
    rest_api_port: int = DEFAULT_REST_PORT
    grpc_port: int = DEFAULT_GRPC_PORT  # TF Serving's --port; 0 serves REST only
    grpc_max_threads: int = DEFAULT_GRPC_MAX_THREADS
    rest_api_host: str = "0.0.0.0"
    model_config_file_poll_wait_seconds: float = 0.0
    file_system_poll_wait_seconds: float = DEFAULT_FS_POLL_SECONDS
    rest_api_timeout_in_ms: int = DEFAULT_TIMEOUT_MS
    rest_api_num_threads: int = 8
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    # Calls in flight per model before 429 RESOURCE_EXHAUSTED; 0 = auto (see graph_service.models.pools).
    model_max_inflight: int = 0
    allow_version_labels_for_unavailable_models: bool = False
    log_level: str = "INFO"

    @property
    def timeout_seconds(self) -> float | None:
        """Per-request deadline; None when disabled (0 or negative, as in TF Serving)."""
        return self.rest_api_timeout_in_ms / 1000 if self.rest_api_timeout_in_ms > 0 else None

"""Live reload: poll models.config and the version folders, and sync the registry.

Mirrors TF Serving's two knobs: `--model_config_file_poll_wait_seconds` (re-read the config;
0 = never) and `--file_system_poll_wait_seconds` (look for new version folders; 0 = only at
start). A config file that cannot be read (OSError, bad UTF-8, a parse error, anything) is
reported (log, `status()`, the graph_config_reload_errors_total metric) and the previous one
stays in force; the thread outlives every error and stops on `stop()`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from converters.models_config import ModelEntry
from graph_service.models.registry import ModelRegistry

logger = logging.getLogger(__name__)

EntrySource = Callable[[], list[ModelEntry]]


class ConfigWatcher:
    """A daemon thread that keeps `registry` in line with `read_entries()` and the disk."""

    def __init__(
        self,
        registry: ModelRegistry,
        read_entries: EntrySource,
        entries: list[ModelEntry],
        *,
        config_poll_seconds: float,
        fs_poll_seconds: float,
    ) -> None:
        self._registry = registry
        self._read_entries = read_entries
        self._entries = entries
        self._config_poll = config_poll_seconds
        self._fs_poll = fs_poll_seconds
        self._stop = threading.Event()
        # Polls and HandleReloadConfigRequest (gRPC) both change entries and sync; one at a
        # time. Re-entrant: a poll holds it across reload_config() and sync().
        self._sync_lock = threading.RLock()
        self._status_lock = threading.Lock()
        self._errors = {"read": 0, "sync": 0}
        self._last_error = ""
        self._last_error_at = ""
        self._thread = threading.Thread(target=self._run, name="graph-service-watcher", daemon=True)

    def start(self) -> None:
        if self._config_poll > 0 or self._fs_poll > 0:
            self._thread.start()

    def stop(self, timeout: float = 5) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def apply(self, entries: list[ModelEntry]) -> None:
        """Serve `entries` from now on (gRPC HandleReloadConfigRequest); loads before returning.

        With --model_config_file_poll_wait_seconds on, the next poll puts the file's entries
        back, as in TF Serving.
        """
        with self._sync_lock:
            self._entries = entries
            try:
                self._registry.sync(entries)
            except Exception as exc:
                # Reported like a poll's failure; the caller answers it, the next poll retries.
                self._record("sync", exc)
                raise

    def _run(self) -> None:
        now = time.monotonic()
        next_config = now + self._config_poll if self._config_poll > 0 else float("inf")
        next_fs = now + self._fs_poll if self._fs_poll > 0 else float("inf")
        while not self._stop.wait(max(0.0, min(next_config, next_fs) - time.monotonic())):
            now = time.monotonic()
            if now >= next_fs:
                next_fs = now + self._fs_poll
            with self._sync_lock:
                if now >= next_config:
                    next_config = now + self._config_poll
                    self.reload_config()
                self.sync()

    def sync(self) -> None:
        """Apply the current entries; any failure is reported and retried at the next poll."""
        with self._sync_lock:
            try:
                self._registry.sync(self._entries)
            except Exception as exc:
                # The watcher must outlive any one bad poll; the next poll tries again.
                logger.exception("reload failed; serving what was loaded before")
                self._record("sync", exc)

    def reload_config(self) -> None:
        """Re-read models.config; on any error keep the previous entries and report it."""
        with self._sync_lock:
            self._reload_config()

    def _reload_config(self) -> None:
        try:
            entries = self._read_entries()
        except Exception as exc:
            logger.error(
                "models.config not reloaded, keeping the previous one: %s: %s",
                type(exc).__name__,
                exc,
            )
            self._record("read", exc)
            return
        if entries != self._entries:
            logger.info(
                "models.config changed: %s", ", ".join(e.name for e in entries) or "no models"
            )
            self._entries = entries

    def _record(self, stage: str, exc: BaseException) -> None:
        with self._status_lock:
            self._errors[stage] += 1
            self._last_error = f"{stage}: {type(exc).__name__}: {' '.join(str(exc).split())[:500]}"
            self._last_error_at = datetime.now(UTC).isoformat(timespec="seconds")

    def error_counts(self) -> dict[str, int]:
        with self._status_lock:
            return dict(self._errors)

    def status(self) -> dict:
        """For GET /monitoring/config: is the watcher alive, and the last error it survived."""
        with self._status_lock:
            return {
                "watcher_running": self._thread.is_alive(),
                "models": [e.name for e in self._entries],
                "reload_errors": dict(self._errors),
                "last_error": self._last_error,
                "last_error_at": self._last_error_at,
            }

"""Live reload: poll models.config and the version folders, and sync the registry.

Mirrors TF Serving's two knobs: `--model_config_file_poll_wait_seconds` (re-read the config;
0 = never) and `--file_system_poll_wait_seconds` (look for new version folders; 0 = only at
start). A config file that no longer parses is reported and the previous one stays in force.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from converters.errors import ConverterError
from converters.models_config import ModelEntry
from graph_service.registry import ModelRegistry

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
        # Polls and HandleReloadConfigRequest (gRPC) both sync; one at a time.
        self._sync_lock = threading.Lock()
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
            self._registry.sync(entries)

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
                    self._reload_config()
                try:
                    self._registry.sync(self._entries)
                except Exception:
                    # The watcher must outlive any one bad poll; the next poll tries again.
                    logger.exception("reload failed; serving what was loaded before")

    def _reload_config(self) -> None:
        try:
            entries = self._read_entries()
        except ConverterError as exc:
            logger.error("models.config not reloaded, keeping the previous one: %s", exc)
            return
        if entries != self._entries:
            logger.info(
                "models.config changed: %s", ", ".join(e.name for e in entries) or "no models"
            )
            self._entries = entries

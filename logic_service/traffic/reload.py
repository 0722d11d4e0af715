"""Reloading the pipeline file's `traffic:` blocks without a restart: validate, then swap.

Under gunicorn (preload_app) one process judges and the others follow:

- The master judges. gunicorn's own SIGHUP would fork new workers from the app the master
  built at start, which re-reads nothing; `take_over_sighup` makes SIGHUP read the file
  instead: parse and check it as at start (`config.parse_text`, then every label it names
  asked of the graph), and only when all of it passes, apply it in the master, publish it on
  the shared `TrafficBoard` and SIGHUP the workers. A refused edit is one log line; the
  current generation keeps serving. Workers are never restarted, so no request is lost.
- Each worker follows (`Follower`, a thread started after the fork): on SIGHUP, and every
  LOGIC_TRAFFIC_POLL_SECONDS, it adopts a newer board generation, and when it sees the file
  changed on disk it sends the master a SIGHUP: a file edit is a SIGHUP.

Only the traffic blocks reload. Anything else that changed in the file (artifacts, hooks,
pipelines added) is named in the reload's log line as needing a restart, and not applied.
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from logic_service.config import GraphTarget, PipelineSpec, ServiceConfig, parse_text
from logic_service.errors import ConfigError
from logic_service.traffic.board import TrafficBoard
from logic_service.traffic.spec import TrafficSpec
from logic_service.traffic.table import TrafficTable

log = logging.getLogger(__name__)

# How long a reload waits for the graph's answer about each label (the master waits).
VERIFY_TIMEOUT = 2.0
SETTLE_SECONDS = 0.1
_READ_ATTEMPTS = 5  # a file still changing after these is read again once settled
RESTART_NOTE = "artifact and other changes need a restart"
# PipelineSpec fields named otherwise in the pipeline file.
_FILE_KEYS = {"transformers": "transformer", "graph": "graph_model"}


@dataclass(frozen=True)
class FileState:
    """A version of the pipeline file: what stat says, and its bytes."""

    stat: tuple[int, int, int] | None  # inode, size, mtime (ns); None when unreadable
    digest: str | None
    text: bytes = b""

    @classmethod
    def read(cls, path: Path) -> FileState:
        """The file now, its stat and bytes from one version; an unreadable file gives an
        empty state (the caller reports it).

        Stat is taken before and after the read: a write landing in between would otherwise
        pair the old stat with the new bytes, and the same content would be judged twice."""
        for _ in range(_READ_ATTEMPTS):
            try:
                before = os.stat(path)
                text = Path(path).read_bytes()
                after = os.stat(path)
            except OSError:
                return cls(None, None)
            key = _stat_key(after)
            if _stat_key(before) == key and len(text) == after.st_size:
                break
        return cls(key, hashlib.sha256(text).hexdigest(), text)


class TrafficReloader:
    """Judges new versions of the file (one process) and follows the judged ones (the rest)."""

    def __init__(
        self,
        config: ServiceConfig,
        table: TrafficTable,
        state: FileState,
        *,
        poll_seconds: float = 2.0,
    ) -> None:
        self.config = config  # as started: everything but the traffic blocks stays so
        self.path = config.path
        self.table = table
        self.board = TrafficBoard()
        self.poll_seconds = poll_seconds
        # The last file version judged (accepted or refused): its content and its stat, so
        # every worker's notice of one edit is judged once, and a touch has it judged again.
        self.judged = (state.digest, state.stat)
        self.seen = state.stat  # the last file version a follower noticed

    @property
    def generation(self) -> int:
        return self.table.generation

    def start(self, timeout: float) -> None:
        """Check generation 1 (the file as started, applied by the Scorer): a label the graph
        does not know stops the start (ConfigError); a graph that cannot tell yet is a
        warning. The board stays empty until a reload: every process starts from this."""
        specs = _specs(self.config, self.table)
        for warning in self.table.verify(specs, timeout, str(self.path)):
            log.warning("traffic: %s; requests routed there fail until it is served", warning)

    # --- the judging process (the gunicorn master) -------------------------------------

    def check(self) -> bool:
        """Judge the file if it changed since last judged; True when a new generation was
        applied (the caller wakes the workers)."""
        current = _settled(self.path)
        self.seen = current.stat
        if (current.digest, current.stat) == self.judged:
            log.debug("traffic reload: %s unchanged since judged", self.path)
            return False
        self.judged = (current.digest, current.stat)
        if current.digest is None:
            self._refuse(f"cannot read {self.path}")
            return False
        try:
            new = parse_text(current.text, self.path)
            specs = _specs(new, self.table)
            changes = outside_traffic(self.config, new)
            restart = f"; not applied until a restart: {'; '.join(changes)}" if changes else ""
            if specs == {name: self.table.specs.get(name) for name in specs}:
                level = logging.WARNING if changes else logging.INFO
                log.log(level, "traffic reload: %s: traffic unchanged%s", self.path, restart)
                return False
            if len(current.text) > self.board.capacity:  # before asking the graph anything
                raise ConfigError(
                    f"{self.path} is {len(current.text)} bytes; a traffic reload takes files up "
                    f"to {self.board.capacity} bytes: restart to apply it"
                )
            for warning in self.table.verify(specs, VERIFY_TIMEOUT, str(self.path)):
                log.warning(
                    "traffic reload: %s; requests routed there fail until it is served", warning
                )
        except ConfigError as error:
            self._refuse(str(error))
            return False
        generation = self.generation + 1
        self.table.apply(specs, generation)
        self.board.publish(generation, current.text)
        self._count("applied")
        log.info(
            "traffic generation %d from %s: %s; only traffic blocks reload, %s%s",
            generation,
            self.path,
            describe_specs(self.table.specs),
            RESTART_NOTE,
            restart,
        )
        return True

    def _refuse(self, reason: str) -> None:
        self._count("refused")
        log.error(
            "traffic reload refused, generation %d keeps serving: %s",
            self.generation,
            reason.replace("\n", " "),
        )

    def _count(self, outcome: str) -> None:
        if self.table.metrics is not None:
            self.table.metrics.reloads.labels(outcome).inc()

    # --- the following processes (gunicorn workers) ------------------------------------

    def adopt(self) -> bool:
        """Serve the board's generation when it is newer than ours; True when it was."""
        if self.board.generation() <= self.generation:
            return False
        published = self.board.read()
        if published is None:  # being written: the next look takes it
            return False
        generation, text = published
        new = parse_text(text, self.path)
        self.table.apply(_specs(new, self.table), generation)
        log.debug("worker %d serves traffic generation %d", os.getpid(), generation)
        return True

    def file_changed(self) -> bool:
        """True once each time stat shows another version of the file than last seen."""
        try:
            key: tuple[int, int, int] | None = _stat_key(os.stat(self.path))
        except OSError:
            key = None
        changed, self.seen = key != self.seen, key
        return changed

    def follow(self, master_pid: int) -> Follower:
        """Start this worker's follower (call in the worker, after the fork)."""
        follower = Follower(self, master_pid)
        follower.start()
        return follower


class Follower:
    """A worker's thread: adopt new generations, tell the master when the file changed."""

    def __init__(self, reloader: TrafficReloader, master_pid: int) -> None:
        self.reloader = reloader
        self.master_pid = master_pid
        self._wake = threading.Event()

    def start(self) -> None:
        # The worker's main thread runs this (gunicorn's post_worker_init), as signal wants.
        signal.signal(signal.SIGHUP, lambda _signum, _frame: self._wake.set())
        threading.Thread(target=self._run, name="traffic-follower", daemon=True).start()

    def _run(self) -> None:
        poll = self.reloader.poll_seconds
        while True:
            self._wake.wait(poll if poll > 0 else None)
            self._wake.clear()
            try:
                self.reloader.adopt()
                if poll > 0 and self.reloader.file_changed():
                    os.kill(self.master_pid, signal.SIGHUP)
            except Exception:  # the follower must outlive any one bad turn
                log.exception("traffic follower: could not follow the pipeline file")


def take_over_sighup(server: Any, reloader: TrafficReloader) -> None:
    """Make the gunicorn master's SIGHUP reload traffic in place (call from on_starting).

    gunicorn looks its signal handlers up by name on the arbiter, so this instance's
    `handle_hup` replaces the re-fork: with preload_app it would only restart the workers
    with the app built at start."""

    def handle_hup() -> None:
        try:
            changed = reloader.check()
        except Exception:  # the master must survive whatever the file holds
            log.exception("traffic reload failed unexpectedly; the current routes keep serving")
            return
        if changed:
            server.kill_workers(signal.SIGHUP)

    server.handle_hup = handle_hup


def outside_traffic(old: ServiceConfig, new: ServiceConfig) -> list[str]:
    """What changed in the file besides traffic blocks (applied only by a restart)."""
    changes = [
        key
        for key in ("graph_service_url", "default", "imports", "skops_trusted")
        if getattr(old, key) != getattr(new, key)
    ]
    for name in sorted(old.pipelines.keys() | new.pipelines.keys()):
        before, after = old.pipelines.get(name), new.pipelines.get(name)
        if before is None:
            changes.append(f"pipeline {name!r} added")
        elif after is None:
            changes.append(f"pipeline {name!r} removed")
        elif keys := _changed_keys(before, after):
            changes.append(f"pipeline {name!r}: {', '.join(keys)}")
    return changes


def _changed_keys(before: PipelineSpec, after: PipelineSpec) -> list[str]:
    """The pipeline-file keys (not the field names) whose values differ, traffic aside."""
    keys = []
    for item in fields(PipelineSpec):
        old, new = getattr(before, item.name), getattr(after, item.name)
        if item.name in ("name", "traffic") or old == new:
            continue
        if item.name == "graph" and old is not None and new is not None:
            keys += [
                "graph_model" if part.name == "model" else part.name
                for part in fields(GraphTarget)
                if getattr(old, part.name) != getattr(new, part.name)
            ]
        else:
            keys.append(_FILE_KEYS.get(item.name, item.name))
    return keys


def describe_specs(specs: dict[str, TrafficSpec | None]) -> str:
    """`credit: stable 95, canary 5, sticky customer_id, shadow canary (sample 0.1)`."""
    parts = []
    for name, spec in sorted(specs.items()):
        if spec is None:
            parts.append(f"{name}: no traffic block")
            continue
        words = [f"{route.servable.name} {route.weight}" for route in spec.routes]
        if spec.sticky_key or spec.sticky_header:
            words.append(f"sticky {spec.sticky_key or 'header ' + str(spec.sticky_header)}")
        if spec.shadow is not None:
            words.append(f"shadow {spec.shadow.name} (sample {spec.shadow_sample:g})")
        parts.append(f"{name}: {', '.join(words) or 'own version'}")
    return "; ".join(parts)


def _specs(config: ServiceConfig, table: TrafficTable) -> dict[str, TrafficSpec | None]:
    """The file's traffic blocks for the graph pipelines this process runs."""
    return {
        name: config.pipelines[name].traffic for name in table.pipelines if name in config.pipelines
    }


def _settled(path: Path) -> FileState:
    """The file once it has not changed for SETTLE_SECONDS: an editor writing it in place
    (truncate, then write) is not judged half-written."""
    state = FileState.read(path)
    for _ in range(10):
        if state.stat is None or time.time_ns() - state.stat[2] >= SETTLE_SECONDS * 1e9:
            break
        time.sleep(SETTLE_SECONDS)
        state = FileState.read(path)
    return state


def _stat_key(info: os.stat_result) -> tuple[int, int, int]:
    return (info.st_ino, info.st_size, info.st_mtime_ns)

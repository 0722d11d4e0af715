"""Refuse, at start-up, a gunicorn whose gthread internals differ from what worker.py builds on.

`worker.py` subclasses gunicorn's threaded worker and reads its private parts: the main loop's
method queue and pending connections, `TConn`'s fields, the parser's unreader buffer, the
body reader's remaining length. Those are not gunicorn's public API and change between
releases (gunicorn 23 has no method queue at all). The logic extra pins the range the tests
ran (SUPPORTED); this check looks for every name the worker uses, so an install outside
that range (a constraints file, a base image's own gunicorn) is refused in one line before
the server starts, instead of failing on the first request.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from types import ModuleType
from typing import Any

# The logic extra's range in pyproject.toml; requirements.txt pins the release CI runs.
SUPPORTED = ">=27.0.1,<27.1"
_LOWEST, _BELOW = (27, 0, 1), (27, 1)

# Module attributes the worker imports or reads.
_MODULES: dict[str, tuple[str, ...]] = {
    "gunicorn.workers.gthread": (
        "ThreadWorker",
        "TConn",
        "DEFAULT_WORKER_DATA_TIMEOUT",
        "PollableMethodQueue",
    ),
    "gunicorn.http.body": ("LengthReader", "Body"),
    "gunicorn.http.parser": ("Parser",),
    "gunicorn.http.unreader": ("Unreader",),
}
# ThreadWorker methods the worker overrides or calls, with how many arguments (after self)
# it passes them.
_METHODS: dict[str, int] = {
    "handle": 1,
    "enqueue_req": 1,
    "finish_request": 2,
    "on_pending_socket_readable": 2,
    "_keepalive_after": 2,
    "set_accept_enabled": 1,
    "get_thread_pool": 0,
    "init_process": 0,
    "load_wsgi": 0,
    "run": 0,
    "notify": 0,
    "handle_exit": 2,
}
# Instance attributes the worker reads, by (module, class, method that sets them).
_FIELDS: dict[tuple[str, str, str], tuple[str, ...]] = {
    ("gunicorn.workers.gthread", "ThreadWorker", "__init__"): (
        "method_queue",
        "pending_conns",
        "nr_conns",
    ),
    ("gunicorn.workers.gthread", "ThreadWorker", "init_process"): ("tpool", "poller"),
    ("gunicorn.workers.gthread", "TConn", "__init__"): (
        "sock",
        "parser",
        "timeout",
        "data_ready",
        "is_http2",
    ),
    ("gunicorn.http.body", "LengthReader", "__init__"): ("length",),
    ("gunicorn.http.body", "Body", "__init__"): ("reader", "buf", "failed"),
    ("gunicorn.http.parser", "Parser", "__init__"): ("unreader", "mesg"),
    ("gunicorn.http.unreader", "Unreader", "__init__"): ("buf",),
}

Importer = Callable[[str], ModuleType]


def missing_internals(importer: Importer = importlib.import_module) -> list[str]:
    """Names the worker relies on that this gunicorn lacks (empty when all are there)."""
    missing: list[str] = []
    modules: dict[str, ModuleType] = {}
    for name, attributes in _MODULES.items():
        try:
            modules[name] = importer(name)
        except ImportError:
            missing.append(name)
            continue
        missing.extend(f"{name}.{a}" for a in attributes if not hasattr(modules[name], a))
    gthread = modules.get("gunicorn.workers.gthread")
    worker = getattr(gthread, "ThreadWorker", None)
    if worker is not None:
        for method, arguments in _METHODS.items():
            if not _accepts(getattr(worker, method, None), arguments):
                missing.append(f"ThreadWorker.{method} taking {arguments} argument(s)")
    queue = getattr(gthread, "PollableMethodQueue", None)
    if queue is not None and not callable(getattr(queue, "defer", None)):
        missing.append("PollableMethodQueue.defer")
    for (module, cls, method), fields in _FIELDS.items():
        code = getattr(
            getattr(getattr(modules.get(module), cls, None), method, None), "__code__", None
        )
        if code is None:
            continue  # the class itself is reported missing above
        missing.extend(f"{cls}.{field}" for field in fields if field not in code.co_names)
    return missing


def _accepts(method: Any, arguments: int) -> bool:
    """True when `method` (a function on the class) can be called with `arguments` positional
    arguments after self."""
    if not callable(method):
        return False
    try:
        inspect.signature(method).bind(None, *([None] * arguments))
    except (TypeError, ValueError):
        return False
    return True


def version_of(module: ModuleType) -> tuple[int, ...]:
    """gunicorn's `version_info`, or () when it has none."""
    info = getattr(module, "version_info", ())
    return tuple(part for part in info if isinstance(part, int))


def gunicorn_problem(importer: Importer = importlib.import_module) -> str | None:
    """One line refusing this gunicorn, or None when the worker finds all it builds on."""
    try:
        gunicorn = importer("gunicorn")
    except ImportError:
        return f"gunicorn is not installed: pip install 'gunicorn{SUPPORTED}'"
    found = getattr(gunicorn, "__version__", "of unknown version")
    missing = missing_internals(importer)
    if not missing:
        return None
    shown = ", ".join(missing[:6]) + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
    return (
        f"gunicorn {found} lacks what the logic tier's worker (logic_service/http/worker.py) "
        f"builds on: {shown}; it supports gunicorn{SUPPORTED}: install that range "
        f"(pip install 'gunicorn{SUPPORTED}', or reinstall the kit's logic extra)"
    )


def untested_version(importer: Importer = importlib.import_module) -> str | None:
    """A warning when the internals are all there but the release is outside SUPPORTED."""
    gunicorn = importer("gunicorn")
    version = version_of(gunicorn)
    if version and _LOWEST <= version < _BELOW:
        return None
    return (
        f"gunicorn {getattr(gunicorn, '__version__', '?')} is outside the tested range "
        f"{SUPPORTED}; the worker found everything it builds on, but run the tests before "
        "serving with it"
    )

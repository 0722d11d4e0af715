"""The draining flag: how a stopping worker tells the app that /ready must say 503.

The gunicorn worker (logic_service/http/worker.py) marks every request it serves after SIGTERM
with `environ[DRAINING_KEY] = True`; the app only reads the WSGI environ, so it never imports
gunicorn and works the same under any server (where the key is simply absent).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from logic_service.errors import LogicError

DRAINING_KEY = "logic_service.draining"


class DrainingError(LogicError):
    """This process received SIGTERM: it finishes what it has and takes nothing new."""

    status = 503


def refuse_if_draining(environ: Mapping[str, Any]) -> None:
    """Raise DrainingError (503) when the serving worker is shutting down."""
    if environ.get(DRAINING_KEY):
        raise DrainingError(
            "draining: this instance received SIGTERM and is finishing the requests it "
            "already has; send new requests to another instance"
        )

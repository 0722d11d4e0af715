"""The start-up refusal of a gunicorn whose gthread internals differ from what worker.py uses.

In-process: the installed gunicorn passes, and each kind of difference (a method gone, a
method taking other arguments, a field no longer set, a module gone, a release outside the
tested range) is named. Through `logic-service` and through `gunicorn -c gunicorn.conf.py`:
a gunicorn with a changed internal (patched in by a sitecustomize before the server starts)
ends the start with one line and exit 2, before anything listens.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import types
from pathlib import Path

import gunicorn
import pytest
from gunicorn.http import body as gunicorn_body
from gunicorn.workers import gthread

from devtools.servers import free_port, script
from logic_service.http.gunicorn_check import (
    SUPPORTED,
    gunicorn_problem,
    missing_internals,
    untested_version,
)

CONF = Path(__file__).resolve().parents[3] / "logic_service" / "http" / "gunicorn.conf.py"


def test_the_installed_gunicorn_has_everything_the_worker_uses() -> None:
    assert missing_internals() == []
    assert gunicorn_problem() is None
    assert untested_version() is None, gunicorn.__version__


def test_a_method_gone_or_taking_other_arguments_is_named(monkeypatch) -> None:
    monkeypatch.delattr(gthread.ThreadWorker, "_keepalive_after")
    monkeypatch.setattr(gthread.ThreadWorker, "finish_request", lambda self, fs: None)
    problem = gunicorn_problem()
    assert problem is not None and "\n" not in problem
    assert problem.startswith(f"gunicorn {gunicorn.__version__} lacks what the logic tier's worker")
    assert "ThreadWorker._keepalive_after taking 2 argument(s)" in problem
    assert "ThreadWorker.finish_request taking 2 argument(s)" in problem
    assert f"supports gunicorn{SUPPORTED}" in problem and "pip install" in problem


def test_a_field_no_longer_set_is_named(monkeypatch) -> None:
    def init(self, cfg, sock, client, server) -> None:  # gthread's TConn without is_http2
        self.cfg, self.sock, self.client, self.server = cfg, sock, client, server
        self.timeout = self.parser = None
        self.data_ready = False

    def length_init(self, unreader, size) -> None:
        self.unreader, self.remaining = unreader, size

    monkeypatch.setattr(gthread.TConn, "__init__", init)
    monkeypatch.setattr(gunicorn_body.LengthReader, "__init__", length_init)
    assert missing_internals() == ["TConn.is_http2", "LengthReader.length"]


def test_a_module_gone_and_an_unknown_release_are_named() -> None:
    def importer(name: str) -> types.ModuleType:
        if name == "gunicorn.http.unreader":
            raise ImportError(name)
        return importlib.import_module(name)

    assert missing_internals(importer) == ["gunicorn.http.unreader"]

    def release(version: tuple[int, ...]):
        fake = types.SimpleNamespace(version_info=version, __version__=".".join(map(str, version)))
        return lambda name: fake if name == "gunicorn" else importlib.import_module(name)

    assert untested_version(release((27, 0, 1))) is None
    assert untested_version(release((27, 0, 9))) is None
    for outside in ((27, 0, 0), (27, 1, 0), (28, 0, 0), (23, 0, 0)):
        warning = untested_version(release(outside))
        assert warning is not None and f"outside the tested range {SUPPORTED}" in warning


# A gunicorn of another release, as the server process sees it: gthread without the
# keep-alive drain hook worker.py overrides.
_SITECUSTOMIZE = """
from gunicorn.workers import gthread
del gthread.ThreadWorker._keepalive_after
"""


@pytest.fixture
def changed_gunicorn(tmp_path: Path) -> dict[str, str]:
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(_SITECUSTOMIZE)
    env = {key: value for key, value in os.environ.items() if not key.startswith("LOGIC_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(shim), env.get("PYTHONPATH")]))
    return env


def _assert_refused(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"logic-service: error: gunicorn {gunicorn.__version__} lacks")
    assert "ThreadWorker._keepalive_after" in lines[0]
    assert f"gunicorn{SUPPORTED}" in lines[0]


def test_logic_service_refuses_a_changed_gunicorn_in_one_line(changed_gunicorn, tmp_path) -> None:
    config = tmp_path / "pipelines.yaml"
    config.write_text("pipelines: {}\n")
    port = free_port()
    result = subprocess.run(
        [script("logic-service"), "--config", str(config), "--bind", f"127.0.0.1:{port}"],
        env=changed_gunicorn,
        capture_output=True,
        text=True,
        timeout=60,
    )
    _assert_refused(result)


def test_gunicorn_on_the_conf_file_refuses_a_changed_gunicorn_too(changed_gunicorn, tmp_path):
    result = subprocess.run(
        [script("gunicorn"), "-c", str(CONF), "--check-config"],
        env=changed_gunicorn,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    _assert_refused(result)

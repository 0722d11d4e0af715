"""A port another server holds stops graph-service at once, before any model loads."""

from __future__ import annotations

import socket
import subprocess

import pytest

from devtools.savedmodels import write_dense_savedmodel
from devtools.servers import free_port, script
from graph_service.bootstrap import StartupError
from graph_service.ports import check_ports_free
from graph_service.settings import Settings


@pytest.mark.parametrize(
    ("held", "message"),
    [
        (
            "rest",
            "cannot open the REST port 0.0.0.0:{port} (OSError: Address already in use); "
            "is another server on it? Pass --rest_api_port=N for another port",
        ),
        (
            "grpc",
            "cannot open the gRPC port 0.0.0.0:{port} (OSError: Address already in use); "
            "is another server on it? Pass --port=N for another port or --port=0 to serve REST only",
        ),
    ],
)
def test_a_held_port_exits_4_in_one_line_before_loading(tmp_path, held, message):
    write_dense_savedmodel(tmp_path / "dense" / "1", 2)
    rest_port, grpc_port = free_port(), free_port()
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("0.0.0.0", rest_port if held == "rest" else grpc_port))
        holder.listen()
        result = subprocess.run(
            [
                script("graph-service"),
                "--model_name=dense",
                f"--model_base_path={tmp_path / 'dense'}",
                f"--rest_api_port={rest_port}",
                f"--port={grpc_port}",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 4, result.stderr
    port = rest_port if held == "rest" else grpc_port
    # One line and nothing else: no worker was forked, no model loaded.
    assert result.stderr == f"graph-service: {message.format(port=port)}\n"


def test_an_address_not_on_this_host_names_the_flags():
    """Not "another server": the address itself cannot be bound here (TEST-NET-3)."""
    settings = Settings(model_name="m", rest_api_host="203.0.113.7", rest_api_port=free_port())
    with pytest.raises(StartupError, match=r"check --rest_api_host and --rest_api_port$"):
        check_ports_free(settings)


def test_free_ports_and_grpc_off_pass():
    check_ports_free(Settings(model_name="m", rest_api_port=free_port(), grpc_port=0))
    check_ports_free(Settings(model_name="m", rest_api_port=free_port(), grpc_port=free_port()))

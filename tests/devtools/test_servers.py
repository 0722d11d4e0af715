"""The test servers' port picker: two servers started in one run never get the same port."""

from __future__ import annotations

import socket

from devtools.servers import free_port


def test_free_port_never_repeats_a_port_it_handed_out() -> None:
    ports = [free_port() for _ in range(2000)]
    assert len(set(ports)) == len(ports)


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()

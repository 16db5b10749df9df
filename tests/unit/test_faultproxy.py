"""The fault proxy of the e2e tests (tests/e2e/faultproxy.py) does what they rely on, against an echo server of
its own (no service needed): it forwards, goes silent (and a silent connection stays dead once healed, while new
ones go through), delays, and resets."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import suppress

import pytest

from tests.e2e.faultproxy import FaultProxy


@pytest.fixture
def proxy() -> Iterator[FaultProxy]:
    server = socket.create_server(("127.0.0.1", 0))

    def echo(connection: socket.socket) -> None:
        with connection, suppress(OSError):  # a reset ends it
            while data := connection.recv(4096):
                connection.sendall(data)

    def serve() -> None:
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=echo, args=(connection,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    with FaultProxy(server.getsockname()[1]) as proxy:
        yield proxy
    server.close()


def client(proxy: FaultProxy) -> socket.socket:
    return socket.create_connection(("127.0.0.1", proxy.port), timeout=1)


def echoed(sock: socket.socket, data: bytes = b"ping") -> bytes | None:
    sock.sendall(data)
    try:
        return sock.recv(4096)
    except TimeoutError:
        return None


def test_forwards_then_a_silent_connection_stays_dead_while_new_ones_go_through_once_healed(proxy):
    old = client(proxy)
    assert echoed(old) == b"ping"

    proxy.silent()
    assert echoed(old) is None
    assert echoed(client(proxy)) is None  # new connections are silent too

    proxy.heal()
    assert echoed(old) is None
    assert echoed(client(proxy)) == b"ping"


@pytest.mark.parametrize("direction", ["up", "down"])
def test_one_way_silence_loses_the_bytes_of_that_way(proxy, direction):
    sock = client(proxy)
    proxy.silent(direction)

    assert echoed(sock) is None


def test_latency_delays_each_way_and_keeps_the_order(proxy):
    sock = client(proxy)
    proxy.latency(0.2)

    started = time.monotonic()
    sock.sendall(b"a")
    sock.sendall(b"b")
    received = b""
    while len(received) < 2:
        received += sock.recv(4096)

    assert received == b"ab"
    assert time.monotonic() - started >= 0.4


def test_reset_sends_an_rst_to_open_and_new_connections(proxy):
    sock = client(proxy)
    assert echoed(sock) == b"ping"

    proxy.reset()
    with pytest.raises(ConnectionResetError):
        echoed(sock)
        echoed(sock)
    with pytest.raises((ConnectionResetError, BrokenPipeError)):
        fresh = client(proxy)
        echoed(fresh)
        echoed(fresh)

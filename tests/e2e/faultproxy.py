"""A TCP proxy the tests put between a worker and RabbitMQ or PostgreSQL, to fail the way networks do.

Modes, switched at any time and applied to every connection at once, open or new:

- `forward()`: bytes go through (the proxy starts so; `heal()` returns to it);
- `silent(direction)`: a black hole, both ways or one way (`"up"`, client to server; `"down"`, server to client).
  The sockets stay open and the kernel still acknowledges every byte, so TCP sees nothing wrong: only the
  application can notice. A connection that went silent stays so for good, as after a NAT or load balancer
  dropped it: the bytes it lost are gone, and healing brings back new connections, not that one;
- `latency(seconds)`: every chunk arrives that much later, in order;
- `reset()`: every open connection gets a TCP RST (SO_LINGER 0), and so does every new one until healed.
"""

from __future__ import annotations

import collections
import select
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import suppress
from urllib.parse import urlsplit, urlunsplit

UP, DOWN = "up", "down"


class FaultProxy:
    """Listens on 127.0.0.1:`port` and relays each connection to `target`. Use it as a context manager."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1"):
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._silent: frozenset[str] = frozenset()
        self._latency_s = 0.0
        self._resetting = False
        self._links: set[_Link] = set()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self.accepted = 0

    def __enter__(self) -> FaultProxy:
        threading.Thread(target=self._accept, name=f"faultproxy-{self.port}", daemon=True).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def url(self, url: str) -> str:
        """`url` with its host and port replaced by the proxy's."""
        parts = urlsplit(url)
        credentials = parts.netloc.rpartition("@")[0]
        netloc = f"{credentials}@127.0.0.1:{self.port}" if credentials else f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    def forward(self) -> None:
        self._silent, self._latency_s, self._resetting = frozenset(), 0.0, False

    heal = forward

    def silent(self, direction: str = "both") -> None:
        self._silent = frozenset({UP, DOWN} if direction == "both" else {direction})

    def latency(self, seconds: float) -> None:
        self._latency_s = seconds

    def reset(self) -> None:
        self._resetting = True
        with self._lock:
            links = list(self._links)
        for link in links:
            link.reset()

    def connections(self) -> int:
        """How many connections are open through the proxy now."""
        with self._lock:
            return len(self._links)

    def close(self) -> None:
        self._closed.set()
        with suppress(OSError):
            self._listener.close()
        with self._lock:
            links = list(self._links)
        for link in links:
            link.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.accepted += 1
            if self._resetting:
                _reset(client)
                continue
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                _reset(client)
                continue
            link = _Link(self, client, server)
            with self._lock:
                self._links.add(link)
            link.start()

    def _forget(self, link: _Link) -> None:
        with self._lock:
            self._links.discard(link)


class _Link:
    """One proxied connection: a reader and a writer thread each way."""

    def __init__(self, proxy: FaultProxy, client: socket.socket, server: socket.socket):
        self.proxy = proxy
        self.client, self.server = client, server
        for sock in (client, server):
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.dead: set[str] = set()  # the directions that went silent, for good
        self.queues = {UP: _Delayed(), DOWN: _Delayed()}
        self.closed = threading.Event()

    def start(self) -> None:
        for direction, source, target in ((UP, self.client, self.server), (DOWN, self.server, self.client)):
            threading.Thread(target=self._read, args=(direction, source), daemon=True).start()
            threading.Thread(target=self._write, args=(direction, target), daemon=True).start()

    def _read(self, direction: str, source: socket.socket) -> None:
        while not self.closed.is_set():
            try:
                ready, _, _ = select.select([source], [], [], 0.1)
                if not ready:
                    continue
                data = source.recv(65536)
            except (OSError, ValueError):
                data = b""
            if not data:
                self.close()
                return
            if direction in self.proxy._silent:
                self.dead.add(direction)
            if direction not in self.dead:
                self.queues[direction].put(time.monotonic() + self.proxy._latency_s, data)

    def _write(self, direction: str, target: socket.socket) -> None:
        for data in self.queues[direction].items(self.closed):
            if direction in self.dead:
                continue
            try:
                target.sendall(data)
            except OSError:
                self.close()
                return

    def reset(self) -> None:
        if not self.closed.is_set():
            self.closed.set()
            _reset(self.client)
            _reset(self.server)
            self.proxy._forget(self)

    def close(self) -> None:
        if not self.closed.is_set():
            self.closed.set()
            for sock in (self.client, self.server):
                with suppress(OSError):
                    sock.close()
            self.proxy._forget(self)


class _Delayed:
    """A queue of chunks, each handed out at its time, in order."""

    def __init__(self) -> None:
        self._items: collections.deque[tuple[float, bytes]] = collections.deque()
        self._ready = threading.Condition()

    def put(self, due: float, data: bytes) -> None:
        with self._ready:
            self._items.append((due, data))
            self._ready.notify()

    def items(self, closed: threading.Event) -> Iterator[bytes]:
        while not closed.is_set():
            with self._ready:
                if not self._items:
                    self._ready.wait(0.1)
                    continue
                due, data = self._items[0]
                wait = due - time.monotonic()
                if wait > 0:
                    self._ready.wait(min(wait, 0.1))
                    continue
                self._items.popleft()
            yield data


def _reset(sock: socket.socket) -> None:
    """Close with an RST instead of a FIN."""
    with suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with suppress(OSError):
        sock.close()

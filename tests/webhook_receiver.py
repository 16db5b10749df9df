"""A real HTTP server for the webhook tests: threaded, on 127.0.0.1 and a port of its own, in the test process.

Each path behaves as a kind of receiver does:

- `/ok`: takes every event (204);
- `/flaky/<n>`: answers 503 to the first n POSTs of each event, then takes it;
- `/down`: always 500;
- `/timeout`: waits `hang_s` before it answers, longer than the product waits;
- `/slow`: waits `slow_s`, less than the product waits, then takes it.

Every request is kept as it came (path, headers, body, whether its signature verifies under `secret`, when),
and a receiver's deduplication is kept as the docs advise: by the event id, once per path.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from orders.webhooks import EVENT_ID_HEADER, SIGNATURE_HEADER, verify


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool
    at: float  # time.monotonic() when the request was read
    answered: int | None = None


@dataclass
class Receiver:
    secret: str
    hang_s: float = 3.0
    slow_s: float = 1.0
    requests: list[Received] = field(default_factory=list)
    # path -> event ids taken, each once: what a receiver that deduplicates acts on
    taken: dict[str, list[str]] = field(default_factory=dict)
    duplicates: Counter = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def to(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if r.path == path]

    def answer(self, request: Received) -> int:
        """The status to answer `request` with, after any wait its path asks for."""
        path = request.path
        if path == "/down":
            return 500
        if path == "/timeout":
            time.sleep(self.hang_s)
            return 204
        if path == "/slow":
            time.sleep(self.slow_s)
        if path.startswith("/flaky/"):
            fails = int(path.rsplit("/", 1)[1])
            event_id = request.headers.get(EVENT_ID_HEADER.lower(), "")
            with self.lock:
                seen = sum(
                    1 for r in self.requests if r.path == path and r.headers.get(EVENT_ID_HEADER.lower()) == event_id
                )
            if seen <= fails:
                return 503
        event_id = request.headers.get(EVENT_ID_HEADER.lower(), "")
        with self.lock:
            taken = self.taken.setdefault(path, [])
            if event_id in taken:
                self.duplicates[path] += 1
            else:
                taken.append(event_id)
        return 204


def start_receiver(secret: str, **timing: float) -> Receiver:
    receiver = Receiver(secret, **timing)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            headers = {k.lower(): v for k, v in self.headers.items()}
            request = Received(
                path=self.path,
                headers=headers,
                body=body,
                verified=verify(receiver.secret, headers.get(SIGNATURE_HEADER.lower(), ""), body),
                at=time.monotonic(),
            )
            with receiver.lock:
                receiver.requests.append(request)
            status = receiver.answer(request)
            request.answered = status
            try:
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
            except OSError:
                pass  # the product gave up waiting, as it should have

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver.server = server
    threading.Thread(target=server.serve_forever, name="webhook-receiver", daemon=True).start()
    return receiver


def stop_receiver(receiver: Receiver) -> None:
    if receiver.server is not None:
        receiver.server.shutdown()
        receiver.server.server_close()

"""Real processes for end-to-end tests: Celery workers and beat, started, stopped and killed by the test."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.plugin import IN_PROCESS_ONLY, worker_database_url

ROOT = Path(__file__).resolve().parent.parent
LOG_DIR = Path(os.environ.get("TEST_LOG_DIR", "/tmp/sagaflow-test-logs"))


def wait_for(
    predicate: Callable[[], object], *, timeout: float = 30.0, interval: float = 0.1, message: str = "condition"
) -> object:
    """Poll until `predicate()` is truthy; fail the test with `message` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now, for a process the test starts."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def process_env(**overrides: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name not in IN_PROCESS_ONLY}
    env.update(
        {"DATABASE_URL": worker_database_url(), "PYTHONUNBUFFERED": "1", "LOG_FORMAT": "json", "LOG_LEVEL": "info"}
    )
    env.update(overrides)
    return env


def manage(*args: str) -> str:
    """`manage.py *args` in a child process with the workers' environment, which must succeed; what it printed."""
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=process_env(), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


class Process:
    """One child process with its log in a file, so a failing test can show what it said."""

    def __init__(self, name: str, args: list[str], env: dict[str, str]):
        self.name = name
        self.args = args
        self.env = env
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.log_path = LOG_DIR / f"{name}-{os.getpid()}-{time.monotonic_ns()}.log"
        self.popen: subprocess.Popen | None = None

    def start(self) -> Process:
        log = open(self.log_path, "ab")
        self.popen = subprocess.Popen(
            self.args, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        return self

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL: no cleanup, no acks, as when a machine dies."""
        if self.running():
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(10)

    def stop(self, timeout: float = 20.0) -> None:
        if self.running():
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def background_replay(*args: str) -> str:
    """`manage.py replay_dead_letters --background` in a child process with the workers' environment, so that
    its job goes to their broker; returns what it printed, once it says the job started."""
    begun = subprocess.run(
        [sys.executable, "manage.py", "replay_dead_letters", "--background", "--by", "ops", *args],
        cwd=ROOT,
        env=process_env(LOG_LEVEL="error"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "started replay job" in begun.stdout, begun.stdout + begun.stderr
    return begun.stdout


class Embedded:
    """The embedded default as `make run` starts it: SQLite at `database`, the in-process transport, no broker.
    `manage()` runs a command on it; `web()` starts its gunicorn with no process flags (gunicorn.conf.py's
    embedded process model)."""

    def __init__(self, database: Path, **env: str):
        self.env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "BROKER_URL", *IN_PROCESS_ONLY}}
        self.env.update({"SQLITE_PATH": str(database), "PYTHONUNBUFFERED": "1", **env})

    def manage(self, *args: str) -> str:
        """Run `manage.py *args`, which must succeed; returns the last line it printed ("" for none)."""
        done = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""

    @contextmanager
    def web(
        self, name: str = "embedded-web", ready: tuple[int, ...] = (200,), **env: str
    ) -> Iterator[tuple[str, Process]]:
        """Its gunicorn, once /health answers one of `ready`: (base URL, process); stopped after."""
        port = free_port()
        web = Process(
            name, [sys.executable, "-m", "gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{port}"], {**self.env, **env}
        ).start()
        base_url = f"http://127.0.0.1:{port}"
        try:
            wait_for(lambda: _answers(f"{base_url}/health", ready), timeout=60, message=f"{name} to answer /health")
            yield base_url, web
        finally:
            web.stop()
            if web.popen and web.popen.returncode not in (0, None, -15):
                print(web.log()[-4000:])


@contextmanager
def asgi_server(env: dict[str, str], name: str = "asgi") -> Iterator[tuple[str, Process]]:
    """The ASGI server (the waits) as docker-compose runs it, with `env`, once it answers /health/live: (base
    URL, process); stopped after."""
    port = free_port()
    args = ["-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1", "--port", str(port), "--lifespan", "off"]
    server = Process(name, [sys.executable, *args], env).start()
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(f"{base_url}/health/live", (200,)), timeout=60, message=f"{name} to be live")
        yield base_url, server
    finally:
        server.stop()
        if server.popen and server.popen.returncode not in (0, None, -15):
            print(server.log()[-4000:])


def _answers(url: str, statuses: tuple[int, ...]) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code in statuses
    except httpx.HTTPError:
        return False


def _worker_args(name: str) -> list[str]:
    return [
        "-A",
        "config",
        "worker",
        "--loglevel=INFO",
        f"--hostname={name}-{time.monotonic_ns()}@%h",
        "--without-mingle",
        "--without-gossip",
    ]


def celery_worker(name: str = "worker", **env: str) -> Process:
    return Process(name, [sys.executable, "-m", "celery", *_worker_args(name)], process_env(**env))


def dying_worker(name: str, instant: str, message_type: str, **env: str) -> Process:
    """A worker that dies at `instant` ("ack" or "mark") of the first `message_type` (tests/e2e/dying_worker.py)."""
    args = [sys.executable, "-m", "tests.e2e.dying_worker", instant, message_type, *_worker_args(name)]
    return Process(name, args, process_env(**env))


def celery_beat(**env: str) -> Process:
    schedule = LOG_DIR / f"beat-schedule-{time.monotonic_ns()}"
    args = [sys.executable, "-m", "celery", "-A", "config", "beat", "--loglevel=INFO", f"--schedule={schedule}"]
    return Process("beat", args, process_env(**env))


def queue_consumers(queue: str) -> int:
    """How many consumers RabbitMQ counts on `queue` right now (0 when it does not exist yet)."""
    declared = _declared(queue)
    return declared.consumer_count if declared is not None else 0


def queue_messages(queue: str) -> int:
    """How many messages wait in `queue` right now (0 when it does not exist yet)."""
    declared = _declared(queue)
    return declared.message_count if declared is not None else 0


def _declared(queue: str):
    """RabbitMQ's answer to a passive declare of `queue`, or None when it does not exist yet."""
    from django.conf import settings
    from kombu import Connection

    with Connection(settings.BROKER_URL) as broker:
        channel = broker.channel()
        try:
            return channel.queue_declare(queue, passive=True)
        except Exception:  # noqa: BLE001 - the queue is not declared yet
            return None


def wait_until_consuming(process: Process, queues=("payments", "inventory", "saga"), timeout: float = 60) -> None:
    """Until `process` itself said that it consumes each of `queues` and RabbitMQ counts a consumer on each. The
    count alone is not enough beside a second worker: it already counts the first worker's consumers. The log
    alone is not enough after a reconnect: it still holds the last connection's lines."""

    def ready() -> bool:
        if not process.running():
            raise AssertionError(f"{process.name} exited early:\n{process.log()[-4000:]}")
        log = process.log()
        return all(f"consuming {q}" in log and queue_consumers(q) > 0 for q in queues)

    wait_for(ready, timeout=timeout, interval=0.3, message=f"{process.name} to consume {queues}")

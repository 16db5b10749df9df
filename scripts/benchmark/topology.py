"""The pieces of a deployment the bench starts: child processes, manage.py, gunicorn, PostgreSQL and RabbitMQ."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from .console import say

if TYPE_CHECKING:
    import psycopg

ROOT = Path(__file__).resolve().parents[2]
# The application_name of the bench's own PostgreSQL connections, so that the CPU figures can leave them out.
BENCH_APP = "sagaflow-bench"


class Child:
    """One process we started, in its own session so that it and its children stop together."""

    def __init__(self, kind: str, args: list[str], env: dict[str, str], log_dir: Path, name: str = ""):
        self.kind, self.args, self.env = kind, args, env
        self.log_path = log_dir / f"{name or kind}.log"
        self.popen: subprocess.Popen | None = None

    def start(self) -> Child:
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(
                self.args, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, timeout: float = 20.0) -> None:
        popen = self.popen
        if popen is None or popen.poll() is not None:
            return
        os.killpg(popen.pid, signal.SIGTERM)
        try:
            popen.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(popen.pid, signal.SIGKILL)
            popen.wait(10)

    def tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout[-2000:]}{result.stderr[-3000:]}")
    return result.stdout


def api_token(env: dict[str, str]) -> str | None:
    """An operator token from `manage.py create_api_token`; None for a checkout from before API tokens."""
    # The command lives in an app at the top (config/, before the kernel split) or one level down (config/access/).
    if not any(next(ROOT.glob(f"{apps}/management/commands/create_api_token.py"), None) for apps in ("*", "*/*")):
        return None
    return manage(env, "create_api_token", "--role", "operator").strip().splitlines()[-1].strip()


def gunicorn(env: dict[str, str], log_dir: Path, port: int, workers: int, threads: int) -> Child:
    args = [
        sys.executable,
        "-m",
        "gunicorn",
        "config.wsgi",
        "-b",
        f"127.0.0.1:{port}",
        "-w",
        str(workers),
        "--threads",
        str(threads),
    ]
    return Child("web", args, env, log_dir).start()


def uvicorn(env: dict[str, str], log_dir: Path, port: int) -> Child:
    """The ASGI server, for GET /api/orders/{id}/wait, as docker-compose runs it."""
    args = [sys.executable, "-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1", "--port", str(port)]
    args += ["--lifespan", "off", "--no-access-log"]
    return Child("web-async", args, env, log_dir).start()


def wait_until(predicate: Callable[[], bool], what: str, timeout: float, children: list[Child]) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        for child in children:
            if not child.alive():
                raise RuntimeError(f"{child.kind} exited while waiting for {what}:\n{child.tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)


def healthy(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/health", timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def pg_connect(url: str) -> psycopg.Connection:
    import psycopg

    # Named, so that the CPU figures can leave the bench's own backends out.
    return psycopg.connect(url, autocommit=True, connect_timeout=5, application_name=BENCH_APP)


def create_database(server_url: str, name: str) -> None:
    """CREATE DATABASE `name` on the server; RuntimeError, saying why, when it cannot."""
    import psycopg

    try:
        with pg_connect(f"{server_url.rstrip('/')}/postgres") as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as error:
        raise RuntimeError(f"cannot create a database on {server_url}: {error}") from None


def drop_databases(server_url: str, names: list[str]) -> None:
    """Drop the databases `names`, their connections too; a failure is said, not raised: cleanup goes on."""
    try:
        with pg_connect(f"{server_url.rstrip('/')}/postgres") as conn:
            for name in names:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except Exception as error:  # noqa: BLE001 - report and go on cleaning up
        say(f"warning: could not drop database {', '.join(names)}: {error}")


def rabbitmqctl(*args: str) -> None:
    if shutil.which("rabbitmqctl") is None:
        raise RuntimeError("rabbitmqctl is not installed: the self-started topology needs RabbitMQ here")
    result = subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {result.stderr.strip()}")

"""`make run`: migrate, seed the demo data, then serve.

Embedded default (neither DATABASE_URL nor BROKER_URL set): two child processes, web (gunicorn with one
worker and threads, gunicorn.conf.py: the in-process transport is a thread of the process that serves the API,
config/wsgi.py starts it, so a second worker process would be a second, competing transport) and web-async
(uvicorn on PORT + 1, the waits for an order's end, on the same SQLite; it starts no transport).

Production topology (both set): four child processes, web (gunicorn), web-async (uvicorn, on PORT + 1),
worker (Celery) and beat (Celery beat).

In both, SIGINT and SIGTERM are forwarded to the children; when any one of them exits, the others are stopped
and this script exits with that child's status.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# `make run` calls this with .venv/bin/python: the tools sit next to it. Not resolved, so a symlinked
# venv interpreter still points at the venv's own bin/.
BIN = Path(sys.executable).parent
STOP_TIMEOUT_S = 30.0
# `make run` never serves with the public development key: without SECRET_KEY it makes one, once, and keeps
# it here (git- and docker-ignored), so that admin sessions survive a restart.
SECRET_KEY_FILE = ROOT / ".secret_key"


def fail(message: str, status: int = 2) -> None:
    print(f"run: {message}", file=sys.stderr, flush=True)
    sys.exit(status)


def port() -> int:
    raw = os.environ.get("PORT", "") or "8000"
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 0 < value < 65536:
        fail(f"PORT must be a TCP port number, got {raw!r}")
    return value


def tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        fail(f"{path} not found: run `make install` (or `make run`, which installs first)")
    return str(path)


def manage(*args: str) -> None:
    """Run one manage.py command to completion; stop here if it fails."""
    result = subprocess.run([str(BIN / "python"), "manage.py", *args], cwd=ROOT)
    if result.returncode != 0:
        fail(f"manage.py {' '.join(args)} failed with status {result.returncode}", result.returncode)


def manage_last_line(*args: str) -> str:
    """Run one manage.py command and return the last line it printed; stop here if it fails."""
    result = subprocess.run([str(BIN / "python"), "manage.py", *args], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    if result.returncode != 0:
        fail(f"manage.py {' '.join(args)} failed with status {result.returncode}", result.returncode)
    return result.stdout.strip().splitlines()[-1]


def ensure_secret_key() -> None:
    """SECRET_KEY from the environment, else the one kept in SECRET_KEY_FILE, made on first use."""
    if os.environ.get("SECRET_KEY", "").strip():
        return
    if not SECRET_KEY_FILE.exists():
        SECRET_KEY_FILE.touch(mode=0o600)
        SECRET_KEY_FILE.write_text(secrets.token_urlsafe(50) + "\n")
        print(f"run: SECRET_KEY is not set; made a random one and keep it in {SECRET_KEY_FILE.name}", flush=True)
    os.environ["SECRET_KEY"] = SECRET_KEY_FILE.read_text().strip()


def demo_tokens() -> dict[str, str]:
    """A new operator token and a new token of the demo customer alice (tokens are stored hashed, so the
    ones of an earlier start cannot be shown again)."""
    demo = ("--label", "make run demo", "--by", "make run")
    return {
        "OPERATOR_TOKEN": manage_last_line("create_api_token", "--role", "operator", *demo),
        "ALICE_TOKEN": manage_last_line("create_api_token", "--role", "customer", "--customer-id", "alice", *demo),
    }


def banner(mode: str, web_port: int, tokens: dict[str, str]) -> None:
    base = f"http://localhost:{web_port}"
    waits = f"http://localhost:{web_port + 1}"
    order = '{"customer_id": "alice", "items": [{"sku": "WIDGET-1", "quantity": 1}]}'
    print(
        f"""
sagaflow is starting ({mode}) on {base}
  API       {base}/api/products, {base}/api/orders, {base}/api/accounts/alice  (a bearer token is needed)
  API docs  {base}/api/docs   ("Authorize" takes a token)
  admin     {base}/admin/   (create a user first: .venv/bin/python manage.py createsuperuser)
  health    {base}/health

Demo API tokens, made for this start (revoke one with .venv/bin/python manage.py revoke_api_token TOKEN):
  export OPERATOR_TOKEN={tokens["OPERATOR_TOKEN"]}   # may do everything
  export ALICE_TOKEN={tokens["ALICE_TOKEN"]}   # the customer alice: her orders, payments and account only

Place a first order (the demo customer alice buys one WIDGET-1) and keep its id:
  ORDER_ID=$(curl -s -X POST {base}/api/orders -H "Authorization: Bearer $ALICE_TOKEN" -H 'Content-Type: application/json' -d '{order}' | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])'); echo "$ORDER_ID"
Then follow it through the saga (PAYMENT_PENDING, INVENTORY_PENDING, COMPLETED):
  curl -s {base}/api/orders/$ORDER_ID -H "Authorization: Bearer $ALICE_TOKEN"
Or wait for its end in one request (the ASGI server, on {waits}, answers once the order has ended, 30 s at most):
  curl -s {waits}/api/orders/$ORDER_ID/wait -H "Authorization: Bearer $ALICE_TOKEN"
""",
        flush=True,
    )


def web_commands(web_port: int) -> dict[str, list[str]]:
    """web and web-async, the same in both modes. gunicorn.conf.py reads the processes and threads
    (WEB_CONCURRENCY, WEB_THREADS; one process in the embedded default)."""
    gunicorn, uvicorn = tool("gunicorn"), tool("uvicorn")
    return {
        "web": [gunicorn, "config.wsgi", "--bind", f"0.0.0.0:{web_port}"],
        "web-async": [uvicorn, "config.asgi:application", "--host", "0.0.0.0", "--port", str(web_port + 1)]
        + ["--lifespan", "off", "--no-access-log"],
    }


def run_embedded(web_port: int) -> int:
    commands = web_commands(web_port)
    manage("migrate", "--noinput")
    manage("seed_demo")
    mode = "embedded: SQLite and the in-process transport, web and web-async"
    banner(mode, web_port, demo_tokens())
    return supervise(commands)


def run_topology(web_port: int) -> int:
    celery = tool("celery")
    commands = web_commands(web_port)
    manage("migrate", "--noinput")
    manage("seed_demo")
    # The application's logging applies in worker and beat; --loglevel keeps Celery's own banner in line.
    log_level = os.environ.get("LOG_LEVEL", "").strip() or "info"
    commands["worker"] = [celery, "-A", "config", "worker", f"--loglevel={log_level}"]
    commands["beat"] = [celery, "-A", "config", "beat", f"--loglevel={log_level}"]
    mode = "production topology: web, web-async, worker and beat against PostgreSQL and RabbitMQ"
    banner(mode, web_port, demo_tokens())
    return supervise(commands)


def supervise(commands: dict[str, list[str]]) -> int:
    """Start every command, forward SIGINT/SIGTERM, and stop them all as soon as one exits."""
    received: list[int] = []

    def forward(signum: int, frame: object) -> None:
        received.append(signum)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    children: dict[str, subprocess.Popen] = {}
    # Own process groups: a Ctrl-C in the terminal reaches the children once, through us, not twice.
    for name, args in commands.items():
        children[name] = subprocess.Popen(args, cwd=ROOT, process_group=0)
        print(f"run: started {name} (pid {children[name].pid}): {' '.join(args[1:])}", flush=True)
    while True:
        if received:
            print(f"run: got {signal.Signals(received[0]).name}; stopping {', '.join(children)}", flush=True)
            stop(children, received[0])
            return 128 + received[0]
        exited = [(name, child) for name, child in children.items() if child.poll() is not None]
        if exited:
            name, child = exited[0]
            print(f"run: {name} exited with status {child.returncode}; stopping the others", flush=True)
            stop(children, signal.SIGTERM)
            return child.returncode if child.returncode >= 0 else 128 - child.returncode
        time.sleep(0.2)


def stop(children: dict[str, subprocess.Popen], signum: int) -> None:
    for child in children.values():
        if child.poll() is None:
            child.send_signal(signum)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for name, child in children.items():
        try:
            child.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            print(f"run: {name} did not stop within {STOP_TIMEOUT_S:.0f}s; killing it", flush=True)
            child.kill()
            child.wait()


def main() -> int:
    database_url = os.environ.get("DATABASE_URL", "").strip()
    broker_url = os.environ.get("BROKER_URL", "").strip()
    web_port = port()
    if database_url and broker_url:
        ensure_secret_key()
        return run_topology(web_port)
    if database_url or broker_url:
        given, missing = ("DATABASE_URL", "BROKER_URL") if database_url else ("BROKER_URL", "DATABASE_URL")
        fail(
            f"{given} is set but {missing} is not. Set both for the production topology "
            "(PostgreSQL and RabbitMQ), or neither for the embedded default (SQLite, in-process transport)."
        )
    ensure_secret_key()
    return run_embedded(web_port)


if __name__ == "__main__":
    sys.exit(main())

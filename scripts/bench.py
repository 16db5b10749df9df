"""`make bench`: places orders over HTTP and measures what the saga costs and how long it takes.

By default it builds the production topology itself and removes it afterwards: a fresh PostgreSQL database, a
fresh RabbitMQ vhost, `migrate`, gunicorn, one `celery -A config worker` and `celery -A config beat`. With
`--url` it measures a deployment that is already running instead (and only creates its own product and
accounts through the API). Then, unless `--skip-embedded`, it measures the embedded default (one gunicorn
process on SQLite with the in-process transport, no DATABASE_URL and no BROKER_URL). `--celery-workers` and
`--split-consumers` measure scaled-out workers.

Before the phases, a self-started run measures the raw parts alone on its own database and vhost (2-row
transactions, confirmed publishes one at a time and with a window, consumes through kombu), so that the
product's cost per saga can be set against the sum of what it is made of on this machine, at this time.

Phases:
- throughput: `--orders` orders by `--concurrency` closed-loop clients. Each client places an order and waits
  for it to reach a final status before placing the next, so `--concurrency` sagas are in flight at most;
- steady: an open-loop `--steady-rate` orders a second for `--steady-seconds`;
- embedded: `--embedded-orders` orders by `--embedded-concurrency` closed-loop clients.

How a final status is observed, and why. Polling GET /api/orders/{id} per order at a 5 ms interval would send
~4,000 requests a second at concurrency 20 to a 2-core machine: the poll would be the load. One poller thread
asking GET /api/orders?status=PENDING every 10 ms is cheaper, but measured here it still cost the web tier as
much CPU as the POSTs themselves, which doubled "web CPU per saga". So when the bench can read the database
(always when it starts the deployment itself, and with `--database-url`), one poller thread asks the database
every `--poll-interval` (5 ms) which of the orders in flight are no longer PENDING: one indexed query on its
own connection, excluded from the CPU figures. Against `--url` alone it falls back to the list endpoint (all
pages), every 50 ms by default, and counts an order final once it is missing from that list; the web CPU
then includes those requests, whose count is reported.

The poller's detection time is reported as `post_to_final_observed_ms`, an upper bound. The figure reported
as POST-to-final is measured from the server's own stamp instead: the order's `updated_at`, which
`order_finish` writes in the transaction that makes the order final, minus the client's clock just before it
sent the POST. Both are this machine's wall clock when the deployment is local; against a remote `--url`
with clock skew, trust the observed figure.

Relay lag is read from the database after each phase: `published_at - created_at` of the phase's outbox rows.
`created_at` is stamped when the row is inserted, a little before the transaction commits, and `published_at`
after the broker acked the row's batch, so the figure slightly overstates commit-to-ack. From the same stamps
and the inbox's `processed_at`, each message of the saga's path is split into relay, queue (broker plus the
wait behind earlier messages of the consumer) and handler time ("where the time goes").

CPU seconds per saga come from /proc/<pid>/stat (utime+stime, plus cutime+cstime of reaped children) of every
process in each tree we started, sampled before and after the phase: gunicorn's master and workers (web),
the Celery worker, Celery beat. Also shown: the PostgreSQL backends connected to the bench database, the
RabbitMQ node (shared with anything else on this machine) and this client. Web includes the poller's requests
when they go through HTTP (their count is reported). Anything else running on the machine makes every figure noisy.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import http.client
import itertools
import json
import os
import platform
import queue
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator


ROOT = Path(__file__).resolve().parent.parent
FINAL_STATUSES = {"COMPLETED", "FAILED", "CANCELLED"}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
BENCH_APP = "sagaflow-bench"
CONSUMERS = ("payments", "inventory", "saga")
PRICE = "1.00"
BALANCE = "1000000.00"


# ---------------------------------------------------------------------------------------------- options


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--orders", type=int, default=1000, help="orders of the throughput phase (0 skips it)")
    p.add_argument("--concurrency", type=int, default=20, help="closed-loop clients of the throughput phase")
    p.add_argument("--steady-rate", type=float, default=10.0, help="orders a second of the steady phase")
    p.add_argument("--steady-seconds", type=float, default=20.0, help="length of the steady phase (0 skips it)")
    p.add_argument("--url", help="measure this running deployment instead of starting one, e.g. http://host:8000")
    p.add_argument("--token", default=os.environ.get("SAGAFLOW_API_TOKEN"),
                   help="bearer token for --url (env SAGAFLOW_API_TOKEN); self-started runs make their own")
    p.add_argument("--database-url",
                   help="with --url: the deployment's database, to poll statuses and read the relay lag")
    p.add_argument("--embedded-orders", type=int, default=100, help="orders of the embedded phase")
    p.add_argument("--embedded-concurrency", type=int, default=1, help="closed-loop clients, embedded phase")
    p.add_argument("--skip-embedded", action="store_true", help="do not measure the embedded default")
    p.add_argument("--out", default="bench-results.json", help="where to write the JSON results")
    p.add_argument("--gunicorn-workers", type=int, default=2, help="gunicorn -w of the production web")
    p.add_argument("--gunicorn-threads", type=int, default=4, help="gunicorn --threads of the production web")
    p.add_argument("--celery-workers", type=int, default=1, help="`celery -A config worker` processes to start")
    p.add_argument("--split-consumers", action="store_true",
                   help="start --celery-workers workers for each consumer (MESSAGING_CONSUMERS=one of them)")
    p.add_argument("--customers", type=int, default=20, help="accounts the orders of a phase are spread over")
    p.add_argument("--warmup", type=int, default=20, help="unmeasured orders placed before the first phase")
    p.add_argument("--poll-interval", type=float,
                   help="seconds between the poller's questions (default 0.005 from the database, 0.05 over HTTP)")
    p.add_argument("--phase-timeout", type=float, default=120.0,
                   help="seconds to wait for the last orders of a phase to become final")
    p.add_argument("--postgres-url", default=os.environ.get("BENCH_POSTGRES_URL", "postgres://root@127.0.0.1:5432"),
                   help="PostgreSQL server of the self-started topology (env BENCH_POSTGRES_URL)")
    p.add_argument("--amqp-url", default=os.environ.get("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672"),
                   help="RabbitMQ server of the self-started topology (env BENCH_AMQP_URL)")
    p.add_argument("--keep-logs", action="store_true", help="keep the processes' logs even when all went well")
    args = p.parse_args(argv)
    if min(args.concurrency, args.embedded_concurrency, args.customers, args.celery_workers) < 1:
        p.error("--concurrency, --embedded-concurrency, --customers and --celery-workers must be at least 1")
    return args


def say(message: str) -> None:
    print(message, flush=True)


# ----------------------------------------------------------------------------------------- processes


def proc_times(pid: int, *, with_reaped_children: bool = True) -> tuple[int, int]:
    """(ppid, utime+stime, plus cutime+cstime of its reaped children unless told not to, in clock ticks)."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        rest = f.read().rsplit(b")", 1)[1].split()
    # rest[0] is field 3 (state): field n of proc(5) is rest[n - 3].
    return int(rest[1]), sum(int(x) for x in rest[11:15 if with_reaped_children else 13])


def process_table() -> dict[int, tuple[int, int]]:
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                table[int(entry)] = proc_times(int(entry))
    return table


def tree_ticks(root: int, table: dict[int, tuple[int, int]]) -> dict[int, int]:
    """{pid: ticks} of a process and all its descendants. A reaped child's time is in its parent's cutime."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if pid in table:
            found[pid] = table[pid][1]
            todo.extend(children.get(pid, []))
    return found


def ticks_delta_s(before: dict[int, int], after: dict[int, int]) -> float:
    """CPU seconds used between two samples; a process born in between counts from its start."""
    return sum(ticks - before.get(pid, 0) for pid, ticks in after.items()) / CLOCK_TICKS


def machine_busy_s() -> float:
    """CPU seconds every core of the machine has spent busy since boot, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / CLOCK_TICKS  # all but idle and iowait


def pids_named(name: str) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if Path(f"/proc/{entry}/comm").read_text().strip() == name:
                    pids.append(int(entry))
    return pids


class Child:
    """One process we started, in its own session so that it and its children stop together."""

    def __init__(self, kind: str, args: list[str], env: dict[str, str], log_dir: Path, name: str = ""):
        self.kind, self.args, self.env = kind, args, env
        self.log_path = log_dir / f"{name or kind}.log"
        self.popen: subprocess.Popen | None = None

    def start(self) -> "Child":
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(self.args, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True)
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, timeout: float = 20.0) -> None:
        if not self.alive():
            return
        os.killpg(self.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.pid, signal.SIGKILL)
            self.popen.wait(10)

    def tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=300)
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout[-2000:]}{result.stderr[-3000:]}")
    return result.stdout


def api_token(env: dict[str, str]) -> str | None:
    """An operator token, once the project has `create_api_token` (DESIGN §5); None while the API is open."""
    if not list(ROOT.glob("*/management/commands/create_api_token.py")):
        return None
    return manage(env, "create_api_token", "--role", "operator").strip().splitlines()[-1].strip()


def gunicorn(env: dict[str, str], log_dir: Path, port: int, workers: int, threads: int) -> Child:
    args = [sys.executable, "-m", "gunicorn", "config.wsgi", "-b", f"127.0.0.1:{port}", "-w", str(workers),
            "--threads", str(threads)]
    return Child("web", args, env, log_dir).start()


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


# ---------------------------------------------------------------------------------------- deployments


class Deployment:
    """What a phase needs from the system under test. This base is a deployment we did not start (--url)."""

    name = "production"

    def __init__(self, base_url: str, token: str | None = None, database_url: str | None = None):
        self.base_url, self.token, self.database_url = base_url.rstrip("/"), token, database_url
        self.children: list[Child] = []

    def stop(self) -> None:
        for child in reversed(self.children):
            with contextlib.suppress(Exception):
                child.stop()

    def check_alive(self) -> None:
        for child in self.children:
            if not child.alive():
                raise RuntimeError(f"{child.kind} exited during the run:\n{child.tail()}")

    def cpu_sample(self) -> dict[str, dict[int, int]] | None:
        """{kind: {pid: ticks}}, or None when we cannot see the processes."""
        if not self.children:
            return None
        machine = machine_busy_s()
        table = process_table()
        sample: dict[str, dict[int, int]] = {}
        for child in self.children:
            sample.setdefault(child.kind, {}).update(tree_ticks(child.pid, table))
        # Only this process: the processes we started are its children, and counted above.
        sample["bench client"] = {os.getpid(): proc_times(os.getpid(), with_reaped_children=False)[1]}
        sample["whole machine"] = {0: int(machine * CLOCK_TICKS)}
        return sample

    def settle(self) -> None:
        """Let the messages that follow the final status (inventory's commit of the reservation) drain."""
        if self.database_url is None:
            time.sleep(1.0)
            return
        deadline, last = time.monotonic() + 15, None
        while time.monotonic() < deadline:
            now = self.query("SELECT (SELECT count(*) FROM messaging_outboxmessage WHERE published_at IS NULL),"
                             " (SELECT count(*) FROM messaging_inboxmessage)")[0]
            if now == last and now[0] == 0:
                return
            last = now
            time.sleep(0.3)

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        with pg_connect(self.database_url) as conn:
            return conn.execute(sql, params).fetchall()

    def status_reader(self, api: "Api") -> "StatusReader":
        return PostgresStatusReader(self.database_url) if self.database_url else HttpStatusReader(api)

    def relay_lags_ms(self, order_ids: list[str]) -> tuple[list[float], int] | None:
        """(published_at - created_at in ms of the published rows, count of rows not yet published)."""
        if self.database_url is None or not order_ids:
            return None
        rows = self.query("SELECT EXTRACT(EPOCH FROM (published_at - created_at)) * 1000 "
                          "FROM messaging_outboxmessage WHERE order_id = ANY(%s)", (order_ids,))
        lags = [float(lag) for (lag,) in rows if lag is not None]
        return lags, len(rows) - len(lags)

    def hops_ms(self, order_ids: list[str]) -> dict[str, dict[str, dict[str, Any]]] | None:
        """Where the time between POST and final status goes, message by message, from the database's stamps.

        For each message: `relay` is outbox insert to published; `queue` is published to the consumer's inbox
        insert (the broker, and the wait behind earlier messages in the consumer's queue); `handler` is that
        inbox insert to the insert of the first message the handler emitted (its work, not its commit).
        """
        if self.database_url is None or not order_ids:
            return None
        rows = self.query(HOPS_SQL, (order_ids, order_ids))
        hops: dict[str, dict[str, list[float]]] = {}
        for routing_key, *durations in rows:
            stages = hops.setdefault(routing_key, {"relay": [], "queue": [], "handler": []})
            for stage, value in zip(("relay", "queue", "handler"), durations):
                if value is not None:
                    stages[stage].append(float(value))
        return {key: {stage: spread(values) for stage, values in stages.items()} for key, stages in hops.items()}


HOPS_SQL = """
WITH phase AS (SELECT * FROM messaging_outboxmessage WHERE order_id = ANY(%s)),
     emitted AS (SELECT causation_id, min(created_at) AS first_at FROM messaging_outboxmessage
                 WHERE order_id = ANY(%s) GROUP BY causation_id)
SELECT o.routing_key,
       EXTRACT(EPOCH FROM (o.published_at - o.created_at)) * 1000,
       EXTRACT(EPOCH FROM (i.processed_at - o.published_at)) * 1000,
       EXTRACT(EPOCH FROM (e.first_at - i.processed_at)) * 1000
FROM phase o
LEFT JOIN messaging_inboxmessage i ON i.message_id = o.message_id::text
LEFT JOIN emitted e ON e.causation_id = o.message_id::text
"""
SAGA_PATH = ("payment.process", "payment.processed", "inventory.reserve", "inventory.reserved", "order.completed")


def pg_connect(url: str):
    import psycopg

    # Named, so that the CPU figures can leave the bench's own backends out.
    return psycopg.connect(url, autocommit=True, connect_timeout=5, application_name=BENCH_APP)


class ProductionDeployment(Deployment):
    """PostgreSQL database, RabbitMQ vhost, gunicorn, Celery worker and beat, all made for this run."""

    def __init__(self, args: argparse.Namespace, run_id: str, log_dir: Path):
        self.args, self.log_dir = args, log_dir
        self.db_name = self.vhost = f"sagaflow_bench_{run_id}"
        self.db_created = self.vhost_created = False
        # A deployment refuses the development key; the processes of one run share this one.
        self.secret_key = secrets.token_urlsafe(50)
        server = args.postgres_url.rstrip("/")
        super().__init__(f"http://127.0.0.1:{free_port()}", database_url=f"{server}/{self.db_name}")

    def start(self) -> None:
        self._create_database()
        self._rabbitmqctl("add_vhost", self.vhost)
        self.vhost_created = True
        self._rabbitmqctl("set_permissions", "-p", self.vhost, "guest", ".*", ".*", ".*")
        env = self.env()
        say(f"  migrating {self.db_name} ...")
        manage(env, "migrate", "--noinput")
        self.token = api_token(env)
        port = self.base_url.rsplit(":", 1)[1]
        self.children = [
            gunicorn(env, self.log_dir, int(port), self.args.gunicorn_workers, self.args.gunicorn_threads),
            *self._workers(env),
            Child("beat", [sys.executable, "-m", "celery", "-A", "config", "beat",
                           f"--schedule={self.log_dir / 'beat-schedule'}"], env, self.log_dir).start(),
        ]
        wait_until(lambda: healthy(self.base_url), "/health to answer 200", 60, self.children)
        wait_until(self._consuming, "the worker to consume payments, inventory and saga", 60, self.children)

    def _workers(self, env: dict[str, str]) -> list[Child]:
        """`--celery-workers` workers running every consumer, or that many for each consumer when split."""
        groups = [[c] for c in CONSUMERS] if self.args.split_consumers else [list(CONSUMERS)]
        workers = []
        for consumers in groups:
            for i in range(1, self.args.celery_workers + 1):
                name = f"worker-{'-'.join(consumers) if self.args.split_consumers else 'all'}-{i}"
                args = [sys.executable, "-m", "celery", "-A", "config", "worker", "--without-mingle",
                        "--without-gossip", f"--hostname={name}-{self.vhost}@%h"]
                workers.append(Child("worker", args, {**env, "MESSAGING_CONSUMERS": ",".join(consumers)},
                                     self.log_dir, name=name).start())
        return workers

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({"DATABASE_URL": self.database_url, "BROKER_URL": f"{self.args.amqp_url.rstrip('/')}/{self.vhost}",
                    "SECRET_KEY": os.environ.get("SECRET_KEY") or self.secret_key, "PYTHONUNBUFFERED": "1",
                    # Read by the throttle once authentication lands (DESIGN §5); the bench is one operator.
                    "API_OPERATOR_ORDER_RATE": "off"})
        return env

    def _create_database(self) -> None:
        import psycopg

        try:
            with pg_connect(f"{self.args.postgres_url.rstrip('/')}/postgres") as conn:
                conn.execute(f'CREATE DATABASE "{self.db_name}"')
        except psycopg.Error as error:
            raise RuntimeError(f"cannot create a database on {self.args.postgres_url}: {error}") from None
        self.db_created = True

    def _rabbitmqctl(self, *args: str) -> None:
        if shutil.which("rabbitmqctl") is None:
            raise RuntimeError("rabbitmqctl is not installed: the self-started topology needs RabbitMQ here")
        result = subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {result.stderr.strip()}")

    def _consuming(self) -> bool:
        from kombu import Connection

        with Connection(self.env()["BROKER_URL"], connect_timeout=5) as broker:
            channel = broker.channel()
            try:
                return all(channel.queue_declare(q, passive=True).consumer_count > 0 for q in CONSUMERS)
            except Exception:  # noqa: BLE001 - not declared yet
                return False

    def cpu_sample(self) -> dict[str, dict[int, int]]:
        sample = super().cpu_sample()
        table = process_table()
        backends = [pid for (pid,) in self.query("SELECT pid FROM pg_stat_activity WHERE datname = %s "
                                                 "AND application_name <> %s", (self.db_name, BENCH_APP))]
        sample["postgres backends"] = {pid: table[pid][1] for pid in backends if pid in table}
        sample["rabbitmq node (shared)"] = {pid: table[pid][1] for pid in pids_named("beam.smp") if pid in table}
        return sample

    def stop(self) -> None:
        super().stop()
        if self.db_created:
            try:
                with pg_connect(f"{self.args.postgres_url.rstrip('/')}/postgres") as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
            except Exception as error:  # noqa: BLE001 - report and go on cleaning up
                say(f"warning: could not drop database {self.db_name}: {error}")
        if self.vhost_created:
            try:
                self._rabbitmqctl("delete_vhost", self.vhost)
            except Exception as error:  # noqa: BLE001
                say(f"warning: could not delete vhost {self.vhost}: {error}")


class EmbeddedDeployment(Deployment):
    """`gunicorn config.wsgi -w 1 --threads 8` with no DATABASE_URL or BROKER_URL: SQLite and in-process."""

    name = "embedded"

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.sqlite_path = log_dir / "embedded.sqlite3"
        super().__init__(f"http://127.0.0.1:{free_port()}")

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "BROKER_URL"}}
        env.update({"SQLITE_PATH": str(self.sqlite_path), "PYTHONUNBUFFERED": "1", "API_OPERATOR_ORDER_RATE": "off"})
        return env

    def start(self) -> None:
        env = self.env()
        say(f"  migrating {self.sqlite_path} ...")
        manage(env, "migrate", "--noinput")
        self.token = api_token(env)
        self.children = [gunicorn(env, self.log_dir, int(self.base_url.rsplit(":", 1)[1]), 1, 8)]
        wait_until(lambda: healthy(self.base_url), "/health to answer 200", 60, self.children)

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        with contextlib.closing(sqlite3.connect(self.sqlite_path, timeout=20)) as conn:
            return conn.execute(sql, params).fetchall()

    def status_reader(self, api: "Api") -> "StatusReader":
        return SqliteStatusReader(self.sqlite_path)

    def hops_ms(self, order_ids: list[str]) -> None:
        """None: in-process, a row is marked published only after its consumers ran, so the stages overlap."""
        return None

    def settle(self) -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and self.query(
                "SELECT count(*) FROM messaging_outboxmessage WHERE published_at IS NULL")[0][0]:
            time.sleep(0.1)

    def relay_lags_ms(self, order_ids: list[str]) -> tuple[list[float], int] | None:
        marks = ",".join("?" * len(order_ids))
        rows = self.query(f"SELECT created_at, published_at FROM messaging_outboxmessage "
                          f"WHERE order_id IN ({marks})", tuple(order_ids))
        lags = [(dt.datetime.fromisoformat(p) - dt.datetime.fromisoformat(c)).total_seconds() * 1000
                for c, p in rows if p is not None]
        return lags, len(rows) - len(lags)


# ------------------------------------------------------------------------------------------------ load


class Api:
    """The HTTP API, with one keep-alive connection per thread.

    Plain `http.client`, not httpx: the load generator shares the 2 cores with what it measures, and httpx
    cost about 4 ms of CPU per request here, several times more than http.client.
    """

    IDLE_EXPIRY_S = 1.0  # below gunicorn's keep-alive (2 s): a POST on a connection it is closing would fail

    def __init__(self, deployment: Deployment):
        target = urllib.parse.urlsplit(deployment.base_url)
        self.host, self.port, self.secure = target.hostname, target.port, target.scheme == "https"
        self.headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if deployment.token:
            self.headers["Authorization"] = f"Bearer {deployment.token}"
        self.local = threading.local()

    def _connection(self) -> http.client.HTTPConnection:
        last_used = getattr(self.local, "last_used", 0.0)
        if getattr(self.local, "connection", None) is not None and time.monotonic() - last_used > self.IDLE_EXPIRY_S:
            self.local.connection.close()
            self.local.connection = None
        if getattr(self.local, "connection", None) is None:
            kind = http.client.HTTPSConnection if self.secure else http.client.HTTPConnection
            self.local.connection = kind(self.host, self.port, timeout=30)
        return self.local.connection

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, bytes]:
        """(status, body bytes). Raises OSError or http.client.HTTPException; the connection is then dropped."""
        connection = self._connection()
        try:
            connection.request(method, path, body=None if body is None else json.dumps(body), headers=self.headers)
            response = connection.getresponse()
            content = response.read()
        except (OSError, http.client.HTTPException):
            connection.close()
            self.local.connection = None
            raise
        self.local.last_used = time.monotonic()
        return response.status, content

    def post(self, path: str, body: dict[str, Any], expect: int = 201) -> dict[str, Any]:
        status, content = self.request("POST", path, body)
        if status != expect:
            raise RuntimeError(f"POST {path} answered {status}: {content[:500]!r}")
        return json.loads(content)

    def pages(self, path: str, params: dict[str, str]) -> Iterator[dict[str, Any]]:
        url: str | None = f"{path}?{urllib.parse.urlencode({**params, 'page_size': '200'})}"
        while url:
            status, content = self.request("GET", url)
            if status != 200:
                raise RuntimeError(f"GET {url} answered {status}: {content[:500]!r}")
            page = json.loads(content)
            yield from page["results"]
            url = page["next"] and urllib.parse.urlsplit(page["next"])._replace(scheme="", netloc="").geturl()


@dataclass
class OrderRecord:
    customer_id: str
    post_start: float = 0.0
    post_end: float = 0.0
    http_status: int = 0
    error: str = ""
    order_id: str = ""
    observed_final: float | None = None
    status: str = ""
    final_stamp: float | None = None
    failure_reason: str | None = None
    done: threading.Event = field(default_factory=threading.Event, repr=False)


class StatusReader:
    """Says which of the given orders are no longer PENDING."""

    interval = 0.005

    def final_among(self, order_ids: list[str]) -> set[str]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class PostgresStatusReader(StatusReader):
    def __init__(self, database_url: str):
        self.conn = pg_connect(database_url)

    def final_among(self, order_ids: list[str]) -> set[str]:
        rows = self.conn.execute("SELECT id::text FROM orders_order WHERE id = ANY(%s::uuid[]) "
                                 "AND status <> 'PENDING'", (order_ids,)).fetchall()
        return {order_id for (order_id,) in rows}

    def close(self) -> None:
        self.conn.close()


class SqliteStatusReader(StatusReader):
    """Reads the embedded database file from this process: no load on the web process and its GIL."""

    def __init__(self, path: Path):
        self.conn = sqlite3.connect(path, timeout=20, check_same_thread=False)

    def final_among(self, order_ids: list[str]) -> set[str]:
        by_hex = {uuid.UUID(order_id).hex: order_id for order_id in order_ids}  # Django stores hex there
        marks = ",".join("?" * len(by_hex))
        rows = self.conn.execute(f"SELECT id FROM orders_order WHERE status <> 'PENDING' AND id IN ({marks})",
                                 tuple(by_hex)).fetchall()
        return {by_hex[order_id] for (order_id,) in rows}

    def close(self) -> None:
        self.conn.close()


class HttpStatusReader(StatusReader):
    """Through the API: an order is final once GET /api/orders?status=PENDING no longer lists it.

    Only asked about orders whose POST answered before the list was asked for: those are committed, so they
    are listed while pending.
    """

    interval = 0.05

    def __init__(self, api: "Api"):
        self.api = api

    def final_among(self, order_ids: list[str]) -> set[str]:
        pending = {order["id"] for order in self.api.pages("/api/orders", {"status": "PENDING"})}
        return set(order_ids) - pending


class Poller(threading.Thread):
    """One thread that finds which tracked orders have left PENDING, with one question per interval."""

    def __init__(self, reader: StatusReader, interval: float | None, stop: threading.Event):
        super().__init__(name="bench-poller", daemon=True)
        self.reader, self.run_stop = reader, stop
        self.interval = reader.interval if interval is None else interval
        self.halt, self.wake = threading.Event(), threading.Event()
        self.lock = threading.Lock()
        self.in_flight: dict[str, OrderRecord] = {}
        self.requests = 0
        self.errors = 0

    def track(self, record: OrderRecord) -> None:
        with self.lock:
            self.in_flight[record.order_id] = record
        self.wake.set()

    def close(self) -> None:
        self.halt.set()
        self.join(10)
        self.reader.close()

    def run(self) -> None:
        while not (self.halt.is_set() or self.run_stop.is_set()):
            if not self.in_flight:
                self.wake.wait(0.1)
                self.wake.clear()
                continue
            asked = time.time()
            with self.lock:
                candidates = {r.order_id: r for r in self.in_flight.values() if r.post_end <= asked}
            try:
                final = self.reader.final_among(list(candidates))
            except Exception:  # noqa: BLE001 - a failed poll is retried; the run's own checks catch a dead system
                self.errors += 1
                self.halt.wait(0.2)
                continue
            finally:
                self.requests += 1
            seen = time.time()
            for order_id in final:
                candidates[order_id].observed_final = seen
                with self.lock:
                    self.in_flight.pop(order_id, None)
                candidates[order_id].done.set()
            self.halt.wait(self.interval)


def place_order(api: Api, poller: Poller, customer_id: str, sku: str) -> OrderRecord:
    record = OrderRecord(customer_id=customer_id, post_start=time.time())
    try:
        status, content = api.request("POST", "/api/orders", {"customer_id": customer_id,
                                                              "items": [{"sku": sku, "quantity": 1}]})
        record.http_status = status
        if status == 201:
            record.order_id = json.loads(content)["id"]
        else:
            record.error = f"HTTP {status}: {content[:200]!r}"
    except (OSError, http.client.HTTPException) as error:
        record.error = f"{type(error).__name__}: {error}"
    record.post_end = time.time()
    if record.order_id:
        poller.track(record)
    return record


@dataclass
class Phase:
    """One measured batch of orders, with its own product and customers."""

    name: str
    label: str
    sku: str
    customers: list[str]
    records: list[OrderRecord] = field(default_factory=list)
    started: float = 0.0
    ended: float = 0.0
    failure: str = ""
    loadavg_start: str = ""

    def customer(self, index: int) -> str:
        return self.customers[index % len(self.customers)]


def prepare_phase(api: Api, run_id: str, name: str, label: str, orders: int, customers: int) -> Phase:
    phase = Phase(name=name, label=label, sku=f"BENCH-{run_id}-{name}",
                  customers=[f"bench-{run_id}-{name}-{i}" for i in range(min(customers, max(orders, 1)))])
    api.post("/api/products", {"sku": phase.sku, "name": f"bench {name}", "price": PRICE, "stock": orders + 100})
    for customer_id in phase.customers:
        api.post("/api/accounts", {"customer_id": customer_id, "balance": BALANCE})
    return phase


def run_closed_loop(api: Api, poller: Poller, phase: Phase, orders: int, concurrency: int, timeout: float,
                    stop: threading.Event) -> None:
    """`concurrency` clients; each places an order and waits for it to be final before the next."""
    counter, lock = itertools.count(), threading.Lock()

    def client() -> None:
        while not stop.is_set():
            with lock:
                index = next(counter)
            if index >= orders:
                return
            record = place_order(api, poller, phase.customer(index), phase.sku)
            phase.records.append(record)
            deadline = time.monotonic() + timeout
            while record.order_id and not record.done.wait(0.2):
                if stop.is_set() or time.monotonic() > deadline:
                    return

    join_all(start_threads(client, concurrency))


def run_open_loop(api: Api, poller: Poller, phase: Phase, rate: float, seconds: float,
                  stop: threading.Event) -> None:
    """Orders sent on a fixed schedule, whatever the system's answers, by a pool of posting threads."""
    jobs: queue.Queue[int | None] = queue.Queue()
    posters = 16

    def poster() -> None:
        while (index := jobs.get()) is not None and not stop.is_set():
            phase.records.append(place_order(api, poller, phase.customer(index), phase.sku))

    threads = start_threads(poster, posters)
    start = time.monotonic()
    for index in range(int(rate * seconds)):
        if stop.wait(max(0.0, start + index / rate - time.monotonic())):
            break
        jobs.put(index)
    for _ in threads:
        jobs.put(None)
    join_all(threads)


def start_threads(target: Callable[[], None], count: int) -> list[threading.Thread]:
    threads = [threading.Thread(target=target, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    return threads


def join_all(threads: list[threading.Thread]) -> None:
    for thread in threads:
        while thread.is_alive():
            thread.join(0.5)  # in short waits, so that Ctrl-C is seen


def wait_for_finals(phase: Phase, timeout: float, stop: threading.Event) -> None:
    deadline = time.monotonic() + timeout
    for record in list(phase.records):
        while record.order_id and not record.done.wait(0.2):
            if stop.is_set() or time.monotonic() > deadline:
                return


def progress(phase: Phase, deployment: Deployment, expected: int, stop: threading.Event) -> None:
    """Prints a line every two seconds until the phase ends; stops the run if a process died."""
    while not stop.wait(2.0):
        if phase.ended:
            return
        records = list(phase.records)
        finals = sum(1 for r in records if r.done.is_set())
        failed = sum(1 for r in records if r.error)
        elapsed = time.time() - phase.started
        say(f"  [{phase.name}] {elapsed:5.1f}s posted {len(records)}/{expected}, final {finals}"
            f" ({finals / elapsed:.0f}/s), in flight {len(records) - finals - failed}"
            + (f", POST errors {failed}" if failed else ""))
        try:
            deployment.check_alive()
        except RuntimeError as error:
            phase.failure = str(error)
            stop.set()


def collect_finals(api: Api, phase: Phase) -> None:
    """Reads every order of the phase back, for its final status and the server's stamp of it."""
    by_id = {r.order_id: r for r in phase.records if r.order_id}
    for customer_id in phase.customers:
        for order in api.pages("/api/orders", {"customer_id": customer_id}):
            record = by_id.get(order["id"])
            if record is None:
                continue
            record.status = order["status"]
            record.failure_reason = order.get("failure_reason")
            if record.status in FINAL_STATUSES:
                record.final_stamp = dt.datetime.fromisoformat(order["updated_at"]).timestamp()


# --------------------------------------------------------------------------------------------- figures


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def spread(values: list[float]) -> dict[str, Any]:
    rounded = {f"p{int(q * 100)}": percentile(values, q) for q in (0.5, 0.9, 0.99)}
    rounded["max"] = max(values) if values else None
    rounded = {k: (round(v, 2) if v is not None else None) for k, v in rounded.items()}
    return {**rounded, "n": len(values)}


def phase_figures(phase: Phase, deployment: Deployment, poller: Poller, cpu: dict[str, float] | None,
                  settings: dict[str, Any]) -> dict[str, Any]:
    records = phase.records
    placed = [r for r in records if r.order_id]
    finals = [r for r in placed if r.final_stamp is not None]
    statuses = {s: sum(1 for r in placed if r.status == s) for s in sorted(FINAL_STATUSES)}
    reasons: dict[str, int] = {}
    for r in placed:
        if r.status in {"FAILED", "CANCELLED"}:
            reasons[r.failure_reason or "?"] = reasons.get(r.failure_reason or "?", 0) + 1
    first_post = min((r.post_start for r in records), default=phase.started)
    last_final = max((r.final_stamp for r in finals), default=phase.ended)
    window = max(last_final - first_post, 1e-9)
    lags = deployment.relay_lags_ms([r.order_id for r in placed])
    figures = {
        "label": phase.label, **settings,
        "orders_posted": len(records), "post_errors": sum(1 for r in records if r.error),
        "post_error_examples": sorted({r.error for r in records if r.error})[:3],
        "completed": statuses["COMPLETED"], "failed": statuses["FAILED"], "cancelled": statuses["CANCELLED"],
        "not_final": len(placed) - len(finals), "failure_reasons": reasons,
        "window_s": round(window, 3), "wall_s": round(phase.ended - phase.started, 3),
        "sagas_per_s": round(len(finals) / window, 1),
        "post_latency_ms": spread([(r.post_end - r.post_start) * 1000 for r in records if r.order_id]),
        "post_to_final_ms": spread([(r.final_stamp - r.post_start) * 1000 for r in finals]),
        "post_to_final_observed_ms": spread([(r.observed_final - r.post_start) * 1000
                                             for r in placed if r.observed_final is not None]),
        "poll_requests": poller.requests, "poll_errors": poller.errors,
    }
    hops = deployment.hops_ms([r.order_id for r in placed])
    if hops:
        figures["hops_ms"] = hops
    if lags is not None:
        key = "dispatch_lag_ms" if deployment.name == "embedded" else "relay_lag_ms"
        figures[key] = spread(lags[0])
        figures["outbox_rows_unpublished"] = lags[1]
    if cpu is not None:
        machine = cpu.pop("whole machine")
        figures["cpu_s"] = {kind: round(seconds, 3) for kind, seconds in cpu.items()}
        figures["cpu_s_per_saga"] = {kind: round(seconds / max(len(finals), 1), 5) for kind, seconds in cpu.items()}
        # How busy the machine was, and how much of that was not the system under test nor this client: the
        # other users of this machine, whose work makes every figure above noisy.
        measured = max(phase.ended - phase.started, 1e-9)
        ours = sum(seconds for kind, seconds in cpu.items() if kind != "rabbitmq node (shared)")
        figures["machine_busy_cores"] = round(machine / measured, 2)
        figures["other_busy_cores"] = round(max(machine - ours - cpu.get("rabbitmq node (shared)", 0), 0) / measured, 2)
    figures["loadavg_start_end"] = [phase.loadavg_start, loadavg()]
    return figures


def run_phase(deployment: Deployment, api: Api, phase: Phase, load: Callable[[Poller], None], expected: int,
              args: argparse.Namespace, poll_interval: float | None, settings: dict[str, Any],
              stop: threading.Event) -> dict[str, Any]:
    poller = Poller(deployment.status_reader(api), poll_interval, stop)
    poller.start()
    deployment.settle()
    before = deployment.cpu_sample()
    phase.started, phase.loadavg_start = time.time(), loadavg()
    reporter = threading.Thread(target=progress, args=(phase, deployment, expected, stop), daemon=True)
    reporter.start()
    load(poller)
    wait_for_finals(phase, args.phase_timeout, stop)
    phase.ended = time.time()
    deployment.settle()
    after = deployment.cpu_sample()
    poller.close()
    if phase.failure:
        raise RuntimeError(phase.failure)
    if stop.is_set():
        raise KeyboardInterrupt
    collect_finals(api, phase)
    cpu = None
    if before is not None and after is not None:
        cpu = {kind: ticks_delta_s(before.get(kind, {}), after[kind]) for kind in after}
    figures = phase_figures(phase, deployment, poller, cpu, settings)
    say(summary_line(phase.name, figures))
    return figures


def warm_up(deployment: Deployment, api: Api, run_id: str, orders: int, timeout: float,
            stop: threading.Event) -> None:
    if orders <= 0:
        return
    say(f"  warming up with {orders} orders ...")
    phase = prepare_phase(api, run_id, "warmup", "warm-up", orders, 4)
    poller = Poller(deployment.status_reader(api), None, stop)
    poller.start()
    run_closed_loop(api, poller, phase, orders, 4, timeout, stop)
    poller.close()
    if stop.is_set():
        raise KeyboardInterrupt
    errors = [r.error for r in phase.records if r.error]
    if errors:
        raise RuntimeError(f"warm-up orders failed: {errors[0]}")


def measure_raw_parts(database_url: str, broker_url: str, seconds: float = 1.5) -> dict[str, float]:
    """The parts a saga is made of, alone, on this machine now: what the product's cost per saga is set against.

    Single-threaded rates of 2-row transactions (fsync on), of persistent messages confirmed one at a time and
    with a window, all on a quorum queue as the product's, and of messages consumed and acked through kombu.
    """
    import amqp
    from kombu import Connection, Consumer, Queue

    rates: dict[str, float] = {}
    with pg_connect(database_url) as conn:
        conn.execute("CREATE TABLE bench_probe (id bigserial PRIMARY KEY, body jsonb NOT NULL, "
                     "at timestamptz NOT NULL DEFAULT now())")
        try:
            conn.autocommit = False
            done, started = 0, time.perf_counter()
            while time.perf_counter() - started < seconds:
                conn.execute("INSERT INTO bench_probe (body) VALUES (%s), (%s)", ('{"a": 1}', '{"b": 2}'))
                conn.commit()
                done += 1
            rates["pg_two_row_transactions_per_s"] = done / (time.perf_counter() - started)
        finally:
            conn.rollback()
            conn.autocommit = True
            conn.execute("DROP TABLE bench_probe")
    with Connection(broker_url, connect_timeout=5) as broker:
        broker.ensure_connection(max_retries=3)
        channel = broker.connection.channel()
        channel.queue_declare("bench-probe", durable=True, auto_delete=False,
                              arguments={"x-queue-type": "quorum"})
        try:
            channel.confirm_select()
            body = json.dumps({"order_id": str(uuid.uuid4()), "amount": "10.00"}).encode()
            done, started = 0, time.perf_counter()
            while time.perf_counter() - started < seconds:
                channel.basic_publish_confirm(amqp.Message(body, delivery_mode=2), exchange="",
                                              routing_key="bench-probe")
                done += 1
            rates["amqp_confirmed_publishes_one_at_a_time_per_s"] = done / (time.perf_counter() - started)
            acked: list[int] = []
            channel.events["basic_ack"].add(lambda tag, multiple: acked.append(tag))
            windowed, started = 0, time.perf_counter()
            while time.perf_counter() - started < seconds:
                for _ in range(100):
                    channel.basic_publish(amqp.Message(body, delivery_mode=2), exchange="", routing_key="bench-probe")
                windowed += 100
                while not acked or max(acked) < done + windowed:
                    broker.connection.drain_events(timeout=10)
            rates["amqp_confirmed_publishes_windowed_per_s"] = windowed / (time.perf_counter() - started)
            total, consumed = done + windowed, 0

            def on_message(message: Any) -> None:
                nonlocal consumed
                message.ack()
                consumed += 1

            consumer_channel = broker.channel()
            consumer_channel.basic_qos(0, 100, False)
            started = time.perf_counter()
            with Consumer(consumer_channel, queues=[Queue("bench-probe", no_declare=True)], on_message=on_message):
                while consumed < total and time.perf_counter() - started < 30:
                    broker.drain_events(timeout=5)
            rates["kombu_consumed_per_s"] = consumed / (time.perf_counter() - started)
        finally:
            broker.channel().queue_delete("bench-probe")
    # What one saga takes of them, single-threaded: 6 transactions (the POST's and five handlers'), 6 windowed
    # publishes (the relay's) and 5 deliveries. The HTTP request and the relay's own bookkeeping are not in it.
    rates["one_sagas_share_ms"] = 1000 * (6 / rates["pg_two_row_transactions_per_s"]
                                          + 6 / rates["amqp_confirmed_publishes_windowed_per_s"]
                                          + 5 / rates["kombu_consumed_per_s"])
    return {key: round(value, 2) for key, value in rates.items()}


def measure(deployment: Deployment, args: argparse.Namespace, run_id: str,
            stop: threading.Event) -> dict[str, dict[str, Any]]:
    """The throughput and steady phases against one production deployment."""
    api = Api(deployment)
    results: dict[str, dict[str, Any]] = {}
    warm_up(deployment, api, run_id, args.warmup, args.phase_timeout, stop)
    if args.orders > 0:
        label = f"throughput: {args.orders} orders, {args.concurrency} closed-loop clients"
        say(f"phase {label}")
        phase = prepare_phase(api, run_id, "throughput", label, args.orders, args.customers)
        results["throughput"] = run_phase(
            deployment, api, phase,
            lambda poller: run_closed_loop(api, poller, phase, args.orders, args.concurrency, args.phase_timeout,
                                           stop),
            args.orders, args, args.poll_interval, {"orders": args.orders, "concurrency": args.concurrency}, stop)
    steady_orders = int(args.steady_rate * args.steady_seconds)
    if steady_orders > 0:
        label = f"steady: {args.steady_rate:g} orders/s for {args.steady_seconds:g}s"
        say(f"phase {label}")
        phase = prepare_phase(api, run_id, "steady", label, steady_orders, args.customers)
        results["steady"] = run_phase(
            deployment, api, phase,
            lambda poller: run_open_loop(api, poller, phase, args.steady_rate, args.steady_seconds, stop),
            steady_orders, args, args.poll_interval,
            {"orders": steady_orders, "rate_per_s": args.steady_rate, "seconds": args.steady_seconds}, stop)
    return results


def measure_embedded(deployment: Deployment, args: argparse.Namespace, run_id: str,
                     stop: threading.Event) -> dict[str, Any]:
    api = Api(deployment)
    warm_up(deployment, api, run_id, min(args.warmup, 5), args.phase_timeout, stop)
    orders, concurrency = args.embedded_orders, args.embedded_concurrency
    label = f"embedded: {orders} orders, {concurrency} closed-loop client(s), SQLite, in-process transport"
    say(f"phase {label}")
    phase = prepare_phase(api, run_id, "embedded", label, orders, args.customers)
    return run_phase(
        deployment, api, phase,
        lambda poller: run_closed_loop(api, poller, phase, orders, concurrency, args.phase_timeout, stop),
        orders, args, args.poll_interval, {"orders": orders, "concurrency": concurrency}, stop)


# ---------------------------------------------------------------------------------------------- report


def ms(spread_: dict[str, Any] | None, *keys: str) -> str:
    if not spread_ or spread_.get("n", 0) == 0:
        return "-"
    return "/".join(f"{spread_[k]:.0f}" if spread_[k] >= 10 else f"{spread_[k]:.1f}" for k in keys)


def hop_line(stages: dict[str, dict[str, Any]]) -> str:
    return "+".join(ms(stages[stage], "p50") for stage in ("relay", "queue", "handler"))


def summary_line(name: str, f: dict[str, Any]) -> str:
    lag = f.get("relay_lag_ms") or f.get("dispatch_lag_ms")
    return (f"  [{name}] done: {f['completed']} completed, {f['failed']} failed, {f['cancelled']} cancelled, "
            f"{f['not_final']} not final, {f['post_errors']} POST errors; {f['sagas_per_s']} sagas/s; "
            f"POST p50/p90/p99 {ms(f['post_latency_ms'], 'p50', 'p90', 'p99')} ms; "
            f"POST-to-final {ms(f['post_to_final_ms'], 'p50', 'p90', 'p99')} ms "
            f"(observed {ms(f['post_to_final_observed_ms'], 'p50', 'p90', 'p99')}); "
            f"lag p50/p99 {ms(lag, 'p50', 'p99')} ms")


# (phase, figure, percentile, comparison, bound, what, the phase settings the issue states the target for)
TARGETS = [
    ("throughput", "sagas_per_s", None, ">=", 150, "completed sagas/s", {"orders": 1000, "concurrency": 20}),
    ("steady", "post_to_final_ms", "p50", "<=", 50, "steady POST-to-final p50 (ms)", {"rate_per_s": 10}),
    ("steady", "post_to_final_ms", "p99", "<=", 250, "steady POST-to-final p99 (ms)", {"rate_per_s": 10}),
    ("throughput", "relay_lag_ms", "p99", "<=", 20, "relay lag p99, throughput phase (ms)", {}),
    ("steady", "relay_lag_ms", "p99", "<=", 20, "relay lag p99, steady phase (ms)", {}),
    ("embedded", "post_to_final_ms", "p50", "<=", 100, "embedded POST-to-final p50 (ms)", {}),
    ("embedded", "post_to_final_ms", "p99", "<=", 100, "embedded POST-to-final p99 (ms)", {}),
]


def evaluate_targets(phases: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    verdicts = []
    for phase, key, sub, op, bound, what, conditions in TARGETS:
        figures = phases.get(phase, {})
        value = figures.get(key)
        if isinstance(value, dict):
            value = value.get(sub)
        met = None if value is None else (value >= bound if op == ">=" else value <= bound)
        as_stated = all(figures.get(k) == v for k, v in conditions.items())
        verdicts.append({"target": what, "bound": f"{op} {bound}", "measured": value, "met": met,
                         "settings_as_in_target": as_stated if figures else None})
    return verdicts


def report(results: dict[str, Any]) -> None:
    say("\n== sagaflow benchmark ==")
    host = results["host"]
    say(f"{host['cpus']} CPUs; load average {host['loadavg_before']} before, {host['loadavg_after']} after. "
        "Other work on this machine (tests, builds) makes every figure noisy.")
    say(f"{'phase':<11}{'done/failed':>12}{'sagas/s':>9}{'POST p50/90/99':>17}{'to final p50/90/99':>21}"
        f"{'observed p50/99':>17}{'lag p50/99':>12}")
    for name, f in results["phases"].items():
        lag = f.get("relay_lag_ms") or f.get("dispatch_lag_ms")
        say(f"{name:<11}{f['completed']:>6}/{f['failed'] + f['cancelled']:<5}{f['sagas_per_s']:>9}"
            f"{ms(f['post_latency_ms'], 'p50', 'p90', 'p99'):>17}{ms(f['post_to_final_ms'], 'p50', 'p90', 'p99'):>21}"
            f"{ms(f['post_to_final_observed_ms'], 'p50', 'p99'):>17}{ms(lag, 'p50', 'p99'):>12}")
    say("(ms; 'to final' = server's final stamp minus POST start; 'observed' = when the poller saw it; "
        "embedded lag = outbox row to delivered)")
    for name, f in results["phases"].items():
        if "cpu_s_per_saga" in f:
            parts = ", ".join(f"{kind} {seconds * 1000:.1f}" for kind, seconds in f["cpu_s_per_saga"].items())
            say(f"CPU ms per saga, {name}: {parts}  (poller requests: {f['poll_requests']}); the machine was "
                f"busy {f['machine_busy_cores']} of {os.cpu_count()} cores, {f['other_busy_cores']} of them "
                f"with work other than this benchmark")
    for name, f in results["phases"].items():
        if "hops_ms" in f:
            say(f"where the time goes, {name}, p50 ms (relay + queue + handler, for each message of a saga):")
            say("  " + "  ".join(f"{key} {hop_line(f['hops_ms'][key])}" for key in SAGA_PATH if key in f["hops_ms"]))
    raw = results.get("raw_parts")
    if raw:
        say(f"raw parts, alone on this machine before the phases: PostgreSQL {raw['pg_two_row_transactions_per_s']:.0f} "
            f"two-row transactions/s; RabbitMQ {raw['amqp_confirmed_publishes_one_at_a_time_per_s']:.0f} confirmed "
            f"publishes/s one at a time, {raw['amqp_confirmed_publishes_windowed_per_s']:.0f}/s with a window; kombu "
            f"{raw['kombu_consumed_per_s']:.0f} consumed/s. A saga's share of them (6 transactions, 6 publishes, "
            f"5 deliveries; no HTTP): {raw['one_sagas_share_ms']:.1f} ms, single-threaded")
    say("targets:")
    for v in results["targets"]:
        mark = {True: "met", False: "MISSED", None: "not measured"}[v["met"]]
        if v["settings_as_in_target"] is False:
            mark += " (run with other settings than the target's)"
        say(f"  {v['target']:<40} {v['bound']:>7}  measured {v['measured']!s:>8}  {mark}")


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# ------------------------------------------------------------------------------------------------ main


@contextlib.contextmanager
def interrupts_ignored() -> Iterator[None]:
    """A second Ctrl-C must not leave a database, a vhost or processes behind."""
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def interrupt(signum: int, frame: Any) -> None:
    """SIGTERM cleans up as Ctrl-C does."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    run_id = uuid.uuid4().hex[:10]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started in the background
    log_dir = Path(tempfile.mkdtemp(prefix=f"sagaflow-bench-{run_id}-"))
    results: dict[str, Any] = {
        "run_id": run_id, "started_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "mode": "url" if args.url else "self-started", "options": vars(args),
        "host": {"cpus": os.cpu_count(), "python": platform.python_version(), "loadavg_before": loadavg()},
        "phases": {},
    }
    results["options"]["token"] = "(set)" if args.token else None
    ok = False
    try:
        run_production(args, run_id, log_dir, stop, results)
        if not args.skip_embedded and args.embedded_orders > 0:
            run_embedded(args, run_id, log_dir, stop, results)
        ok = True
    except KeyboardInterrupt:
        stop.set()
        say("\ninterrupted; stopping what was started")
    except RuntimeError as error:
        stop.set()
        say(f"\nerror: {error}")
    except Exception:  # noqa: BLE001 - say what broke; the deployments were cleaned up on the way out
        stop.set()
        say("\nerror:")
        traceback.print_exc()
    finally:
        stop.set()
        results["host"]["loadavg_after"] = loadavg()
    results["targets"] = evaluate_targets(results["phases"])
    if results["phases"]:
        report(results)
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
        say(f"results written to {args.out}")
    if ok and not args.keep_logs:
        shutil.rmtree(log_dir, ignore_errors=True)
    else:
        say(f"process logs kept in {log_dir}")
    return 0 if ok else 1


def run_production(args: argparse.Namespace, run_id: str, log_dir: Path, stop: threading.Event,
                   results: dict[str, Any]) -> None:
    if args.orders <= 0 and args.steady_rate * args.steady_seconds <= 0:
        return
    if args.url:
        say(f"measuring the deployment at {args.url}")
        deployment: Deployment = Deployment(args.url, args.token, args.database_url)
        results["phases"].update(measure(deployment, args, run_id, stop))
        return
    deployment = ProductionDeployment(args, run_id, log_dir)
    say(f"starting the production topology: database and vhost {deployment.db_name}, gunicorn "
        f"-w {args.gunicorn_workers} --threads {args.gunicorn_threads}, {args.celery_workers} celery worker(s)"
        f"{' for each consumer' if args.split_consumers else ''}, celery beat")
    try:
        deployment.start()
        say("  measuring the raw parts: PostgreSQL transactions, RabbitMQ publishes and consumes ...")
        results["raw_parts"] = measure_raw_parts(deployment.database_url, deployment.env()["BROKER_URL"])
        results["phases"].update(measure(deployment, args, run_id, stop))
    finally:
        say("  stopping the production topology, dropping its database and vhost ...")
        with interrupts_ignored():
            deployment.stop()


def run_embedded(args: argparse.Namespace, run_id: str, log_dir: Path, stop: threading.Event,
                 results: dict[str, Any]) -> None:
    deployment = EmbeddedDeployment(log_dir)
    say("starting the embedded default: gunicorn config.wsgi -w 1 --threads 8, SQLite, in-process transport")
    try:
        deployment.start()
        results["phases"]["embedded"] = measure_embedded(deployment, args, run_id, stop)
    finally:
        with interrupts_ignored():
            deployment.stop()


if __name__ == "__main__":
    sys.exit(main())

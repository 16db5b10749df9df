"""The systems under test: a deployment we did not start (--url), and the two the bench builds and removes.

Relay lag is read from the database after each phase: `published_at - created_at` of the phase's outbox rows.
`created_at` is stamped when the row is inserted, a little before the transaction commits, and `published_at`
after the broker acked the row's batch, so the figure slightly overstates commit-to-ack. From the same stamps
and the inbox's `processed_at`, each message of the saga's path is split into relay, queue (broker plus the
wait behind earlier messages of the consumer) and handler time ("where the time goes").
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import secrets
import sqlite3
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .console import say
from .cpu import (
    CLOCK_TICKS,
    SHARED_RABBITMQ,
    WHOLE_MACHINE,
    machine_busy_s,
    pids_named,
    proc_times,
    process_table,
    tree_ticks,
)
from .polling import HttpStatusReader, PostgresStatusReader, SqliteStatusReader, StatusReader
from .stats import spread
from .topology import (
    BENCH_APP,
    Child,
    api_token,
    create_database,
    drop_databases,
    free_port,
    gunicorn,
    healthy,
    manage,
    pg_connect,
    rabbitmqctl,
    uvicorn,
    wait_until,
)

if TYPE_CHECKING:
    from .api import Api

# Every consumer the product has: /health wants each one consumed somewhere (webhooks idle when no endpoint is
# registered, as in the bench).
CONSUMERS = ("payments", "inventory", "saga", "webhooks")
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


class Deployment:
    """What a phase needs from the system under test. This base is a deployment we did not start (--url)."""

    name = "production"

    def __init__(
        self, base_url: str, token: str | None = None, database_url: str | None = None, wait_url: str | None = None
    ):
        self.base_url, self.token, self.database_url = base_url.rstrip("/"), token, database_url
        # Where GET /api/orders/{id}/wait is served; None: nowhere the bench knows of.
        self.wait_url = wait_url and wait_url.rstrip("/")
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
        sample[WHOLE_MACHINE] = {0: int(machine * CLOCK_TICKS)}
        return sample

    def settle(self) -> None:
        """Let the messages that follow the final status (inventory's commit of the reservation) drain."""
        if self.database_url is None:
            time.sleep(1.0)
            return
        deadline, last = time.monotonic() + 15, None
        while time.monotonic() < deadline:
            now = self.query(
                "SELECT (SELECT count(*) FROM messaging_outboxmessage WHERE published_at IS NULL),"
                " (SELECT count(*) FROM messaging_inboxmessage)"
            )[0]
            if now == last and now[0] == 0:
                return
            last = now
            time.sleep(0.3)

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        if self.database_url is None:
            raise RuntimeError("the deployment's database is not known: give --database-url")
        with pg_connect(self.database_url) as conn:
            return conn.execute(sql, params).fetchall()

    def status_reader(self, api: Api) -> StatusReader:
        return PostgresStatusReader(self.database_url) if self.database_url else HttpStatusReader(api)

    def backends_sample(self, databases: list[str], table: dict[int, tuple[int, int]]) -> dict[int, int]:
        """{pid: ticks} of the PostgreSQL backends of `databases`, but the bench's own."""
        rows = self.query(
            "SELECT pid FROM pg_stat_activity WHERE datname = ANY(%s) AND application_name <> %s",
            (databases, BENCH_APP),
        )
        return {pid: table[pid][1] for (pid,) in rows if pid in table}

    def relay_lags_ms(self, order_ids: list[str]) -> tuple[list[float], int] | None:
        """(published_at - created_at in ms of the published rows, count of rows not yet published)."""
        if self.database_url is None or not order_ids:
            return None
        rows = self.query(
            "SELECT EXTRACT(EPOCH FROM (published_at - created_at)) * 1000 "
            "FROM messaging_outboxmessage WHERE order_id = ANY(%s)",
            (order_ids,),
        )
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
            for stage, value in zip(("relay", "queue", "handler"), durations, strict=True):
                if value is not None:
                    stages[stage].append(float(value))
        return {key: {stage: spread(values) for stage, values in stages.items()} for key, stages in hops.items()}


class ProductionDeployment(Deployment):
    """PostgreSQL database, RabbitMQ vhost, gunicorn, Celery worker and beat, all made for this run."""

    database_url: str  # always known: this run made the database

    def __init__(self, args: argparse.Namespace, run_id: str, log_dir: Path):
        self.args, self.log_dir = args, log_dir
        self.db_name = self.vhost = f"sagaflow_bench_{run_id}"
        self.db_created = self.vhost_created = False
        # A deployment refuses the development key; the processes of one run share this one.
        self.secret_key = secrets.token_urlsafe(50)
        server = args.postgres_url.rstrip("/")
        super().__init__(
            f"http://127.0.0.1:{free_port()}",
            database_url=f"{server}/{self.db_name}",
            wait_url=f"http://127.0.0.1:{free_port()}",
        )

    def start(self) -> None:
        create_database(self.args.postgres_url, self.db_name)
        self.db_created = True
        rabbitmqctl("add_vhost", self.vhost)
        self.vhost_created = True
        rabbitmqctl("set_permissions", "-p", self.vhost, "guest", ".*", ".*", ".*")
        env = self.env()
        say(f"  migrating {self.db_name} ...")
        manage(env, "migrate", "--noinput")
        self.token = api_token(env)
        port = self.base_url.rsplit(":", 1)[1]
        self.children = [
            gunicorn(env, self.log_dir, int(port), self.args.gunicorn_workers, self.args.gunicorn_threads),
            uvicorn(env, self.log_dir, int(self.wait_url.rsplit(":", 1)[1])),
            *self._workers(env),
            Child(
                "beat",
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "config",
                    "beat",
                    f"--schedule={self.log_dir / 'beat-schedule'}",
                ],
                env,
                self.log_dir,
            ).start(),
        ]
        wait_until(lambda: healthy(self.base_url), "/health to answer 200", 60, self.children)
        wait_until(lambda: healthy(self.wait_url), "the ASGI server's /health to answer 200", 60, self.children)
        wait_until(self._consuming, "the worker to consume payments, inventory, saga and webhooks", 60, self.children)

    def _workers(self, env: dict[str, str]) -> list[Child]:
        """`--celery-workers` workers running every consumer, or that many for each consumer when split."""
        groups = [[c] for c in CONSUMERS] if self.args.split_consumers else [list(CONSUMERS)]
        workers = []
        for consumers in groups:
            for i in range(1, self.args.celery_workers + 1):
                name = f"worker-{'-'.join(consumers) if self.args.split_consumers else 'all'}-{i}"
                args = [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "config",
                    "worker",
                    "--without-mingle",
                    "--without-gossip",
                    f"--hostname={name}-{self.vhost}@%h",
                ]
                workers.append(
                    Child(
                        "worker", args, {**env, "MESSAGING_CONSUMERS": ",".join(consumers)}, self.log_dir, name=name
                    ).start()
                )
        return workers

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "DATABASE_URL": self.database_url,
                "BROKER_URL": f"{self.args.amqp_url.rstrip('/')}/{self.vhost}",
                "SECRET_KEY": os.environ.get("SECRET_KEY") or self.secret_key,
                "PYTHONUNBUFFERED": "1",
                # The bench is one operator placing every order: its order rate must not be throttled.
                "API_OPERATOR_ORDER_RATE": "off",
            }
        )
        if self.args.local_handoff:
            env["MESSAGING_LOCAL_HANDOFF"] = "true"
        return env

    def _consuming(self) -> bool:
        from kombu import Connection

        with Connection(self.env()["BROKER_URL"], connect_timeout=5) as broker:
            channel = broker.channel()
            try:
                return all(channel.queue_declare(q, passive=True).consumer_count > 0 for q in CONSUMERS)
            except Exception:  # noqa: BLE001 - not declared yet
                return False

    def cpu_sample(self) -> dict[str, dict[int, int]]:
        sample = super().cpu_sample() or {}
        table = process_table()
        sample["postgres backends"] = self.backends_sample([self.db_name], table)
        sample[SHARED_RABBITMQ] = {pid: table[pid][1] for pid in pids_named("beam.smp") if pid in table}
        return sample

    def stop(self) -> None:
        super().stop()
        if self.db_created:
            drop_databases(self.args.postgres_url, [self.db_name])
        if self.vhost_created:
            try:
                rabbitmqctl("delete_vhost", self.vhost)
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

    def status_reader(self, api: Api) -> StatusReader:
        return SqliteStatusReader(self.sqlite_path)

    def hops_ms(self, order_ids: list[str]) -> None:
        """None: in-process, a row is marked published only after its consumers ran, so the stages overlap."""
        return None

    def settle(self) -> None:
        deadline = time.monotonic() + 15
        while (
            time.monotonic() < deadline
            and self.query("SELECT count(*) FROM messaging_outboxmessage WHERE published_at IS NULL")[0][0]
        ):
            time.sleep(0.1)

    def relay_lags_ms(self, order_ids: list[str]) -> tuple[list[float], int] | None:
        marks = ",".join("?" * len(order_ids))
        rows = self.query(
            f"SELECT created_at, published_at FROM messaging_outboxmessage WHERE order_id IN ({marks})",
            tuple(order_ids),
        )
        lags = [
            (dt.datetime.fromisoformat(p) - dt.datetime.fromisoformat(c)).total_seconds() * 1000
            for c, p in rows
            if p is not None
        ]
        return lags, len(rows) - len(lags)


class DbosDeployment(Deployment):
    """The DBOS Transact alternative (alternatives/dbos_saga.py): the same saga as a durable workflow in the web
    processes, on a database and a DBOS system database made for this run; uvicorn with as many processes as
    the product's gunicorn has, from the virtualenv of `make bench-dbos`."""

    name = "dbos"
    database_url: str

    def __init__(self, args: argparse.Namespace, run_id: str, log_dir: Path):
        self.args, self.log_dir = args, log_dir
        self.db_name = f"sagaflow_bench_{run_id}_dbos"
        self.databases = [self.db_name, f"{self.db_name}_sys"]
        self.created: list[str] = []
        server = args.postgres_url.rstrip("/")
        base_url = f"http://127.0.0.1:{free_port()}"
        # Its uvicorn serves the waits too: FastAPI's async endpoints are what a DBOS user would write.
        super().__init__(base_url, database_url=f"{server}/{self.db_name}", wait_url=base_url)

    def start(self) -> None:
        python = Path(self.args.dbos_python)
        if not python.exists():
            raise RuntimeError(f"{python} is missing: `make bench-dbos` makes the DBOS virtualenv")
        for name in self.databases:
            create_database(self.args.postgres_url, name)
            self.created.append(name)
        server = self.args.postgres_url.rstrip("/")
        sqlalchemy_server = server.replace("postgres://", "postgresql+psycopg://", 1).replace(
            "postgresql://", "postgresql+psycopg://", 1
        )
        env = {
            **os.environ,
            "DBOS_BENCH_DATABASE_URL": f"{sqlalchemy_server}/{self.databases[0]}",
            "DBOS_BENCH_SYSTEM_DATABASE_URL": f"{sqlalchemy_server}/{self.databases[1]}",
            "PYTHONUNBUFFERED": "1",
        }
        port = self.base_url.rsplit(":", 1)[1]
        args = [str(python), "-m", "uvicorn", "scripts.benchmark.alternatives.dbos_saga:app", "--port", port]
        args += ["--workers", str(self.args.gunicorn_workers), "--log-level", "warning", "--no-access-log"]
        self.children = [Child("web", args, env, self.log_dir, name="dbos").start()]
        wait_until(lambda: healthy(self.base_url), "the DBOS app's /health to answer 200", 60, self.children)

    def settle(self) -> None:
        """Until no workflow is left running."""
        system = f"{self.args.postgres_url.rstrip('/')}/{self.databases[1]}"
        deadline = time.monotonic() + 15
        with pg_connect(system) as conn:
            while time.monotonic() < deadline:
                (running,) = conn.execute(
                    "SELECT count(*) FROM dbos.workflow_status WHERE status IN ('PENDING', 'ENQUEUED')"
                ).fetchone()
                if running == 0:
                    return
                time.sleep(0.3)

    def cpu_sample(self) -> dict[str, dict[int, int]]:
        sample = super().cpu_sample() or {}
        sample["postgres backends"] = self.backends_sample(self.databases, process_table())
        return sample

    def relay_lags_ms(self, order_ids: list[str]) -> None:
        """None: no outbox, no relay."""
        return None

    def hops_ms(self, order_ids: list[str]) -> None:
        return None

    def stop(self) -> None:
        super().stop()
        if self.created:
            drop_databases(self.args.postgres_url, self.created)

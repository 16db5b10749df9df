"""The command line: the options, the run (production topology, then the embedded default), the cleanup."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import platform
import shutil
import signal
import tempfile
import threading
import traceback
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .comparison import SYSTEMS, comparison_figures, comparison_lines
from .console import say
from .cpu import loadavg
from .deployments import DbosDeployment, Deployment, EmbeddedDeployment, ProductionDeployment
from .figures import run_ratios
from .phases import EMBEDDED_PHASES, PHASE_NAMES, PRODUCTION_PHASES, PhaseKind, wanted
from .raw_parts import measure_raw_parts
from .report import report, write_results
from .runner import measure
from .targets import evaluate_targets
from .topology import ROOT

DESCRIPTION = "`make bench`: places orders over HTTP and measures what the saga costs and how long it takes."
# The embedded default is warmed up with fewer orders: one process on SQLite is warm sooner.
EMBEDDED_WARMUP_MAX = 5
# The phases the DBOS alternative runs: the flash sale's invariants read the product's own schema.
DBOS_PHASES = ("throughput", "steady", "burst", "api_polling", "burst_waits", "api_waits")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=DESCRIPTION, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--orders", type=int, default=1000, help="orders of the throughput phase (0 skips it)")
    p.add_argument("--concurrency", type=int, default=20, help="closed-loop clients of the throughput phase")
    p.add_argument("--steady-rate", type=float, default=10.0, help="orders a second of the steady phase")
    p.add_argument("--steady-seconds", type=float, default=20.0, help="length of the steady phase (0 skips it)")
    p.add_argument("--burst-orders", type=int, default=500, help="orders of the burst phase (0 skips it)")
    p.add_argument("--burst-clients", type=int, default=20, help="clients posting the burst at once")
    p.add_argument("--api-poll-orders", type=int, default=400, help="orders of the API-polling phase (0 skips it)")
    p.add_argument("--api-poll-clients", type=int, default=20, help="closed-loop clients of the API-polling phase")
    p.add_argument(
        "--api-poll-interval",
        type=float,
        default=0.02,
        help="seconds between a client's GET /api/orders/{id} of its order (API-polling, burst, flash sale)",
    )
    p.add_argument("--flash-orders", type=int, default=1000, help="orders of the flash sale (0 skips it)")
    p.add_argument("--flash-stock", type=int, default=100, help="units of the flash sale's one product")
    p.add_argument("--flash-customers", type=int, default=300, help="customers of the flash sale")
    p.add_argument("--flash-clients", type=int, default=20, help="clients posting the flash sale at once")
    p.add_argument(
        "--phases",
        type=lambda text: [name.strip() for name in text.split(",") if name.strip()],
        help=f"comma-separated phases to run, of {','.join(PHASE_NAMES)} (default: all whose size is above 0)",
    )
    p.add_argument(
        "--request-cpu-requests",
        type=int,
        default=300,
        help="after each phase, sequential requests of each kind whose web CPU is measured (0 skips it)",
    )
    p.add_argument(
        "--request-cpu-rounds", type=int, default=10, help="rounds the single requests are split into, kind by kind"
    )
    p.add_argument("--url", help="measure this running deployment instead of starting one, e.g. http://host:8000")
    p.add_argument(
        "--wait-url",
        help="with --url: its ASGI server, for the phases that wait for outcomes (burst_waits, api_waits)",
    )
    p.add_argument(
        "--token",
        default=os.environ.get("SAGAFLOW_API_TOKEN"),
        help="bearer token for --url (env SAGAFLOW_API_TOKEN); self-started runs make their own",
    )
    p.add_argument(
        "--database-url", help="with --url: the deployment's database, to poll statuses and read the relay lag"
    )
    p.add_argument("--embedded-orders", type=int, default=100, help="orders of the embedded phase")
    p.add_argument("--embedded-concurrency", type=int, default=1, help="closed-loop clients, embedded phase")
    p.add_argument("--skip-embedded", action="store_true", help="do not measure the embedded default")
    p.add_argument("--out", default="bench-results.json", help="where to write the JSON results")
    p.add_argument("--gunicorn-workers", type=int, default=2, help="gunicorn -w of the production web")
    p.add_argument("--gunicorn-threads", type=int, default=4, help="gunicorn --threads of the production web")
    p.add_argument("--celery-workers", type=int, default=1, help="`celery -A config worker` processes to start")
    p.add_argument(
        "--split-consumers",
        action="store_true",
        help="start --celery-workers workers for each consumer (MESSAGING_CONSUMERS=one of them)",
    )
    p.add_argument(
        "--local-handoff",
        action="store_true",
        help="the self-started workers hand commands and replies to their own consumers (MESSAGING_LOCAL_HANDOFF)",
    )
    p.add_argument("--customers", type=int, default=20, help="accounts the orders of a phase are spread over")
    p.add_argument("--warmup", type=int, default=20, help="unmeasured orders placed before the first phase")
    p.add_argument(
        "--poll-interval",
        type=float,
        help="seconds between the poller's questions (default 0.005 from the database, 0.05 over HTTP)",
    )
    p.add_argument(
        "--phase-timeout",
        type=float,
        default=120.0,
        help="seconds to wait for the last orders of a phase to become final",
    )
    p.add_argument(
        "--postgres-url",
        default=os.environ.get("BENCH_POSTGRES_URL", "postgres://root@127.0.0.1:5432"),
        help="PostgreSQL server of the self-started topology (env BENCH_POSTGRES_URL)",
    )
    p.add_argument(
        "--amqp-url",
        default=os.environ.get("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672"),
        help="RabbitMQ server of the self-started topology (env BENCH_AMQP_URL)",
    )
    p.add_argument(
        "--system",
        choices=("sagaflow", "dbos", "both"),
        default="sagaflow",
        help="what to measure: the product; the same saga on DBOS Transact (alternatives/dbos_saga.py, the "
        f"phases {', '.join(DBOS_PHASES)}, no embedded run); or both in --rounds alternating runs",
    )
    p.add_argument("--rounds", type=int, default=2, help="with --system both: pairs of runs")
    p.add_argument(
        "--dbos-python",
        default=str(ROOT / ".venv-dbos" / "bin" / "python"),
        help="the Python of the DBOS virtualenv, which `make bench-dbos` makes",
    )
    p.add_argument("--keep-logs", action="store_true", help="keep the processes' logs even when all went well")
    args = p.parse_args(argv)
    counts = (
        args.concurrency,
        args.embedded_concurrency,
        args.customers,
        args.celery_workers,
        args.burst_clients,
        args.api_poll_clients,
        args.flash_clients,
        args.flash_customers,
    )
    if min(counts) < 1:
        p.error("--concurrency, --customers, --celery-workers and every --*-clients must be at least 1")
    unknown = sorted(set(args.phases or ()) - set(PHASE_NAMES))
    if unknown:
        p.error(f"--phases: no phase {', '.join(unknown)}; the phases are {', '.join(PHASE_NAMES)}")
    if args.system != "sagaflow" and args.url:
        p.error(f"--system {args.system} starts its own deployments: it takes no --url")
    if args.system != "sagaflow" and set(args.phases or ()) - set(DBOS_PHASES):
        p.error(f"--system {args.system} runs only the phases {', '.join(DBOS_PHASES)}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Runs the bench; 0 when every phase asked for was measured. Leaves nothing behind, even on Ctrl-C."""
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started in the background
    if args.system == "both":
        return compare(args)
    ok, results = measured_run(args)
    if results["phases"]:
        write_results(results, args.out)
    return 0 if ok else 1


def measured_run(args: argparse.Namespace) -> tuple[bool, dict[str, Any]]:
    """One run of `args.system`, reported: (whether every phase asked for was measured, the results)."""
    run_id = uuid.uuid4().hex[:10]
    stop = threading.Event()
    log_dir = Path(tempfile.mkdtemp(prefix=f"sagaflow-bench-{run_id}-"))
    results = new_results(args, run_id)
    ok = run(args, run_id, log_dir, stop, results)
    results["ratios"] = run_ratios(results["phases"], results.get("raw_parts"))
    results["targets"] = evaluate_targets({**results["phases"], "ratios": results["ratios"]})
    if results["phases"]:
        report(results)
    if ok and not args.keep_logs:
        shutil.rmtree(log_dir, ignore_errors=True)
    else:
        say(f"process logs kept in {log_dir}")
    return ok, results


def compare(args: argparse.Namespace) -> int:
    """`--rounds` pairs of runs, the product then DBOS, on the phases both run; the ratios of their rates."""
    rounds: list[dict[str, dict[str, Any]]] = []
    phases = args.phases or list(DBOS_PHASES)
    for index in range(1, args.rounds + 1):
        pair = {}
        for system in SYSTEMS:
            say(f"\n== round {index} of {args.rounds}: {system} ==")
            ok, pair[system] = measured_run(
                argparse.Namespace(**{**vars(args), "system": system, "phases": phases, "skip_embedded": True})
            )
            if not ok:
                return 1
        rounds.append(pair)
    figures = comparison_figures(rounds)
    for line in comparison_lines(figures):
        say(line)
    write_results({"comparison": figures, "rounds": rounds}, args.out)
    return 0


def new_results(args: argparse.Namespace, run_id: str) -> dict[str, Any]:
    results: dict[str, Any] = {
        "run_id": run_id,
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "mode": "url" if args.url else "self-started",
        "options": vars(args),
        "host": {"cpus": os.cpu_count(), "python": platform.python_version(), "loadavg_before": loadavg()},
        "phases": {},
    }
    results["options"]["token"] = "(set)" if args.token else None
    return results


def run(args: argparse.Namespace, run_id: str, log_dir: Path, stop: threading.Event, results: dict[str, Any]) -> bool:
    """Measures into `results`; False when interrupted or broken, which it says."""
    ok = False
    try:
        if args.system == "dbos":
            run_dbos(args, run_id, log_dir, stop, results)
            return True
        run_production(args, run_id, log_dir, stop, results)
        if not args.skip_embedded and wanted(EMBEDDED_PHASES, args):
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
    return ok


def run_production(
    args: argparse.Namespace, run_id: str, log_dir: Path, stop: threading.Event, results: dict[str, Any]
) -> None:
    kinds = wanted(PRODUCTION_PHASES, args)
    if not kinds:
        return
    if args.url:
        say(f"measuring the deployment at {args.url}")
        deployment = Deployment(args.url, args.token, args.database_url, args.wait_url)
        results["phases"].update(measure(deployment, kinds, args, run_id, args.warmup, stop))
        return
    production = ProductionDeployment(args, run_id, log_dir)
    say(
        f"starting the production topology: database and vhost {production.db_name}, gunicorn "
        f"-w {args.gunicorn_workers} --threads {args.gunicorn_threads}, {args.celery_workers} celery worker(s)"
        f"{' for each consumer' if args.split_consumers else ''}, celery beat"
        f"{', with the local hand-off' if production.env().get('MESSAGING_LOCAL_HANDOFF') == 'true' else ''}"
    )
    try:
        production.start()
        say("  measuring the raw parts: PostgreSQL transactions, RabbitMQ publishes and consumes ...")
        results["raw_parts"] = measure_raw_parts(production.database_url, production.env()["BROKER_URL"])
        results["phases"].update(measure(production, kinds, args, run_id, args.warmup, stop))
    finally:
        say("  stopping the production topology, dropping its database and vhost ...")
        with interrupts_ignored():
            production.stop()


def run_dbos(
    args: argparse.Namespace, run_id: str, log_dir: Path, stop: threading.Event, results: dict[str, Any]
) -> None:
    kinds = [kind for kind in wanted(PRODUCTION_PHASES, args) if kind.name in DBOS_PHASES]
    if not kinds:
        return
    deployment = DbosDeployment(args, run_id, log_dir)
    say(
        f"starting the DBOS Transact alternative: uvicorn --workers {args.gunicorn_workers}, "
        f"database {deployment.db_name}"
    )
    measure_started(deployment, kinds, args, run_id, args.warmup, stop, results)


def run_embedded(
    args: argparse.Namespace, run_id: str, log_dir: Path, stop: threading.Event, results: dict[str, Any]
) -> None:
    deployment = EmbeddedDeployment(log_dir)
    say("starting the embedded default: gunicorn config.wsgi -w 1 --threads 8, SQLite, in-process transport")
    warmup = min(args.warmup, EMBEDDED_WARMUP_MAX)
    measure_started(deployment, wanted(EMBEDDED_PHASES, args), args, run_id, warmup, stop, results)


def measure_started(
    deployment: DbosDeployment | EmbeddedDeployment,
    kinds: list[PhaseKind],
    args: argparse.Namespace,
    run_id: str,
    warmup: int,
    stop: threading.Event,
    results: dict[str, Any],
) -> None:
    """Start `deployment`, measure `kinds` on it into `results`, and stop it whatever happens."""
    try:
        deployment.start()
        results["phases"].update(measure(deployment, kinds, args, run_id, warmup, stop))
    finally:
        with interrupts_ignored():
            deployment.stop()


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

"""The web tier's CPU for one request of each kind: a status read, a POST, and /health/live beside them.

Sequential requests on one keep-alive connection, so one gunicorn worker serves them one at a time on one
thread; the web processes' CPU before and after each batch, over the batch's size. The CPU is read from each
thread's /proc/<pid>/task/<tid>/schedstat, in nanoseconds: the clock ticks of /proc/<pid>/stat (10 ms) would
be too coarse for a batch of requests of a millisecond each. The kinds are measured in turn, round after
round, so that the machine's drift touches each alike; a kind's figure is its median over the rounds. Its
ratio to /health/live holds from machine to machine where the milliseconds do not.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .cpu import process_table, tree_ticks
from .stats import percentile

if TYPE_CHECKING:
    from .api import Api
    from .deployments import Deployment

HEALTH, STATUS_READ, POST = "GET /health/live", "GET /api/orders/{id}", "POST /api/orders"


def web_cpu_s(deployment: Deployment) -> float | None:
    """CPU seconds the web processes' live threads have run; None when the bench did not start them."""
    roots = [child.pid for child in deployment.children if child.kind == "web"]
    if not roots:
        return None
    table = process_table()
    total_ns = 0
    for root in roots:
        for pid in tree_ticks(root, table):
            with contextlib.suppress(OSError):
                for tid in os.listdir(f"/proc/{pid}/task"):
                    with contextlib.suppress(OSError, ValueError, IndexError):
                        with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                            total_ns += int(f.read().split()[0])
    return total_ns / 1e9


def measure_request_cpu(
    deployment: Deployment,
    api: Api,
    *,
    order_id: str,
    customer_id: str,
    sku: str,
    requests: int,
    rounds: int,
    stop: threading.Event,
) -> dict[str, Any] | None:
    """{kind: ms of web CPU per request}, and each kind's ratio to /health/live; None when the web processes
    cannot be seen (a --url deployment) or nothing was asked for."""
    if requests <= 0 or rounds <= 0 or web_cpu_s(deployment) is None:
        return None
    order = {"customer_id": customer_id, "items": [{"sku": sku, "quantity": 1}]}
    kinds: dict[str, Callable[[], tuple[int, bytes]]] = {
        HEALTH: lambda: api.request("GET", "/health/live"),
        STATUS_READ: lambda: api.request("GET", f"/api/orders/{order_id}"),
        POST: lambda: api.request("POST", "/api/orders", order),
    }
    expected = {HEALTH: 200, STATUS_READ: 200, POST: 201}
    per_round: dict[str, list[float]] = {kind: [] for kind in kinds}
    per_batch = max(requests // rounds, 1)
    for _ in range(rounds):
        for kind, send in kinds.items():
            send()  # opens the connection, if the last one expired, outside the measured batch
            before = web_cpu_s(deployment)
            for _ in range(per_batch):
                status, content = send()
                if status != expected[kind]:
                    raise RuntimeError(f"{kind} answered {status}: {content[:300]!r}")
            after = web_cpu_s(deployment)
            if stop.is_set():
                raise KeyboardInterrupt
            assert before is not None and after is not None
            per_round[kind].append((after - before) * 1000 / per_batch)
    return request_cpu_figures(per_round, requests_each=per_batch * rounds)


def request_cpu_figures(per_round: dict[str, list[float]], *, requests_each: int) -> dict[str, Any]:
    """The median over the rounds of each kind's ms per request, and of its ratio to /health/live's in the same
    round: a round's batches follow each other within a second, so a change of the machine's speed touches
    both sides of a ratio alike. Pure."""
    median = {kind: percentile(values, 0.5) for kind, values in per_round.items()}
    health = per_round.get(HEALTH, [])
    ratios = {
        kind: percentile([v / h for v, h in zip(values, health, strict=False) if h > 0], 0.5)
        for kind, values in per_round.items()
        if kind != HEALTH
    }
    ratios = {kind: (round(value, 2) if value is not None else None) for kind, value in ratios.items()}
    return {
        "ms_per_request": {kind: (round(v, 3) if v is not None else None) for kind, v in median.items()},
        "ratio_to_health": ratios,
        "requests_each": requests_each,
    }

"""CPU accounting from /proc, and the arithmetic that turns two samples into CPU per saga.

CPU seconds per saga come from /proc/<pid>/stat (utime+stime, plus cutime+cstime of reaped children) of every
process in each tree we started, sampled before and after the phase: gunicorn's master and workers (web),
the Celery worker, Celery beat. Also shown: the PostgreSQL backends connected to the bench database, the
RabbitMQ node (shared with anything else on this machine) and this client. Web includes the poller's requests
when they go through HTTP (their count is reported). Anything else running on the machine makes every figure noisy.

A sample is {kind: {pid: ticks}}: a kind is a group of processes ("web", "worker", "postgres backends", ...).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# The kinds of a sample that are not processes of the system under test. The whole machine's busy time is
# stored as ticks under a pid of 0; the RabbitMQ node also serves anything else on this machine.
WHOLE_MACHINE = "whole machine"
SHARED_RABBITMQ = "rabbitmq node (shared)"


def proc_times(pid: int, *, with_reaped_children: bool = True) -> tuple[int, int]:
    """(ppid, utime+stime, plus cutime+cstime of its reaped children unless told not to, in clock ticks)."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        rest = f.read().rsplit(b")", 1)[1].split()
    # rest[0] is field 3 (state): field n of proc(5) is rest[n - 3].
    return int(rest[1]), sum(int(x) for x in rest[11 : 15 if with_reaped_children else 13])


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


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def cpu_used_s(before: dict[str, dict[int, int]], after: dict[str, dict[int, int]]) -> dict[str, float]:
    """{kind: CPU seconds} between two samples, in the order of `after`; a kind new in `after` counts whole."""
    return {kind: ticks_delta_s(before.get(kind, {}), after[kind]) for kind in after}


def cpu_figures(cpu_s: dict[str, float], *, sagas: int, seconds: float) -> dict[str, Any]:
    """CPU seconds by kind, per saga (`sagas` of them finished), and how busy the machine was for `seconds`.

    `cpu_s` holds WHOLE_MACHINE beside the kinds. `other_busy_cores` is the machine's busy time that was
    neither the system under test, this client, nor the shared RabbitMQ node: the other users of this machine,
    whose work makes every figure noisy.
    """
    by_kind = {kind: used for kind, used in cpu_s.items() if kind != WHOLE_MACHINE}
    machine = cpu_s[WHOLE_MACHINE]
    measured = max(seconds, 1e-9)
    ours = sum(used for kind, used in by_kind.items() if kind != SHARED_RABBITMQ)
    return {
        "cpu_s": {kind: round(used, 3) for kind, used in by_kind.items()},
        "cpu_s_per_saga": {kind: round(used / max(sagas, 1), 5) for kind, used in by_kind.items()},
        "cpu_ms_per_saga_total": round(sum(by_kind.values()) * 1000 / max(sagas, 1), 2),
        "machine_busy_cores": round(machine / measured, 2),
        "other_busy_cores": round(max(machine - ours - by_kind.get(SHARED_RABBITMQ, 0), 0) / measured, 2),
    }

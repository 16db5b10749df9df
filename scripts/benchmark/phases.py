"""The measured phases. Each says, from the command line's options, how many orders it places, how it places
them, and the settings its figures are recorded with (a target is only judged "as stated" on its settings).

- throughput: `--orders` orders by `--concurrency` closed-loop clients. Each client places an order and waits
  for it to reach a final status before placing the next, so `--concurrency` sagas are in flight at most;
- steady: an open-loop `--steady-rate` orders a second for `--steady-seconds`;
- embedded: `--embedded-orders` orders by `--embedded-concurrency` closed-loop clients.

To add a phase: a subclass of PhaseKind here (its load in load.py if it needs a new one), its options in
cli.parse_args, and an instance in PRODUCTION_PHASES or EMBEDDED_PHASES, which run in their order; a target
in targets.py may then name it. Nothing else needs to know it.
"""

from __future__ import annotations

import argparse
import threading
from typing import TYPE_CHECKING, Any

from .load import run_closed_loop, run_open_loop

if TYPE_CHECKING:
    from .api import Api
    from .polling import Poller
    from .records import Phase


class PhaseKind:
    """A kind of measured phase; `name` is the key of its figures in the results."""

    name = ""

    def orders(self, args: argparse.Namespace) -> int:
        """How many orders the phase places: 0 skips it."""
        raise NotImplementedError

    def label(self, args: argparse.Namespace) -> str:
        raise NotImplementedError

    def settings(self, args: argparse.Namespace) -> dict[str, Any]:
        """The options that shape the phase, recorded beside its figures."""
        raise NotImplementedError

    def load(self, api: Api, poller: Poller, phase: Phase, args: argparse.Namespace, stop: threading.Event) -> None:
        """Places the phase's orders, each one tracked by `poller`; returns when they are all posted."""
        raise NotImplementedError


class Throughput(PhaseKind):
    name = "throughput"

    def orders(self, args: argparse.Namespace) -> int:
        return args.orders

    def label(self, args: argparse.Namespace) -> str:
        return f"throughput: {args.orders} orders, {args.concurrency} closed-loop clients"

    def settings(self, args: argparse.Namespace) -> dict[str, Any]:
        return {"orders": args.orders, "concurrency": args.concurrency}

    def load(self, api: Api, poller: Poller, phase: Phase, args: argparse.Namespace, stop: threading.Event) -> None:
        run_closed_loop(api, poller, phase, args.orders, args.concurrency, args.phase_timeout, stop)


class Steady(PhaseKind):
    name = "steady"

    def orders(self, args: argparse.Namespace) -> int:
        return int(args.steady_rate * args.steady_seconds)

    def label(self, args: argparse.Namespace) -> str:
        return f"steady: {args.steady_rate:g} orders/s for {args.steady_seconds:g}s"

    def settings(self, args: argparse.Namespace) -> dict[str, Any]:
        return {"orders": self.orders(args), "rate_per_s": args.steady_rate, "seconds": args.steady_seconds}

    def load(self, api: Api, poller: Poller, phase: Phase, args: argparse.Namespace, stop: threading.Event) -> None:
        run_open_loop(api, poller, phase, args.steady_rate, args.steady_seconds, stop)


class Embedded(PhaseKind):
    name = "embedded"

    def orders(self, args: argparse.Namespace) -> int:
        return args.embedded_orders

    def label(self, args: argparse.Namespace) -> str:
        return (
            f"embedded: {args.embedded_orders} orders, {args.embedded_concurrency} closed-loop client(s), "
            "SQLite, in-process transport"
        )

    def settings(self, args: argparse.Namespace) -> dict[str, Any]:
        return {"orders": args.embedded_orders, "concurrency": args.embedded_concurrency}

    def load(self, api: Api, poller: Poller, phase: Phase, args: argparse.Namespace, stop: threading.Event) -> None:
        run_closed_loop(api, poller, phase, args.embedded_orders, args.embedded_concurrency, args.phase_timeout, stop)


# Against the production topology (self-started or --url), then against the embedded default.
PRODUCTION_PHASES: tuple[PhaseKind, ...] = (Throughput(), Steady())
EMBEDDED_PHASES: tuple[PhaseKind, ...] = (Embedded(),)


def wanted(kinds: tuple[PhaseKind, ...], args: argparse.Namespace) -> list[PhaseKind]:
    """The phases the options ask for, in their order."""
    return [kind for kind in kinds if kind.orders(args) > 0]

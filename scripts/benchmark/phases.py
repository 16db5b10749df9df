"""The measured phases. Each says, from the command line's options, how many orders it places, how it places
them, and the settings its figures are recorded with (a target is only judged "as stated" on its settings).

- throughput: `--orders` orders by `--concurrency` closed-loop clients. Each client places an order and waits
  for it to reach a final status before placing the next, so `--concurrency` sagas are in flight at most;
- steady: an open-loop `--steady-rate` orders a second for `--steady-seconds`;
- burst: `--burst-orders` orders posted as fast as `--burst-clients` clients can post them; then each client
  reads its orders' outcome over the API (GET /api/orders/{id}, every `--api-poll-interval`);
- api_polling: `--api-poll-orders` orders by `--api-poll-clients` closed-loop clients that, like a checkout
  page, ask GET /api/orders/{id} every `--api-poll-interval` until their order is final;
- burst_waits, api_waits: the burst and the API-polling loop, with each outcome awaited in one
  GET /api/orders/{id}/wait on the ASGI server instead of polled;
- flash_sale: `--flash-orders` orders of one product with only `--flash-stock` units, from `--flash-customers`
  customers, posted as a burst by `--flash-clients` clients, outcomes read over the API. It ends with its
  invariants read from the database (flash_sale.py): exactly the stock sold, none oversold, every other order
  failed and refunded, none timed out;
- embedded: `--embedded-orders` orders by `--embedded-concurrency` closed-loop clients.

The phases that read outcomes over the API put that load on the web tier, as users' clients do; the others
see outcomes through the bench's own poller (polling.py), which costs the system under test nothing.

To add a phase: a subclass of PhaseKind here (its load in load.py if it needs a new one), its options in
cli.parse_args, and an instance in PRODUCTION_PHASES or EMBEDDED_PHASES, which run in their order; a target
in targets.py may then name it. Nothing else needs to know it.
"""

from __future__ import annotations

import argparse
import threading
from typing import TYPE_CHECKING, Any

from .flash_sale import flash_sale_invariants
from .load import run_api_polling, run_burst, run_closed_loop, run_open_loop

if TYPE_CHECKING:
    from .api import Api
    from .deployments import Deployment
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

    def stock(self, args: argparse.Namespace) -> int:
        """Units of the phase's product: enough for every order, unless the phase is about running out."""
        return self.orders(args) + 100

    def customers(self, args: argparse.Namespace) -> int:
        """Accounts the phase's orders are spread over."""
        return args.customers

    def load(self, api: Api, poller: Poller, phase: Phase, args: argparse.Namespace, stop: threading.Event) -> None:
        """Places the phase's orders, each one tracked by `poller` or by the load itself; returns when they are
        all posted (and, for a load that reads outcomes itself, all read or timed out)."""
        raise NotImplementedError

    def invariants(self, deployment: Deployment, phase: Phase) -> dict[str, Any] | None:
        """What must hold in the database once the phase is over, and whether it did; None: nothing to check."""
        return None


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


class Burst(PhaseKind):
    name = "burst"

    def orders(self, args: argparse.Namespace) -> int:
        return args.burst_orders

    def label(self, args: argparse.Namespace) -> str:
        return (
            f"burst: {args.burst_orders} orders posted by {args.burst_clients} clients at once, "
            f"outcomes read over the API every {args.api_poll_interval * 1000:g} ms"
        )

    def settings(self, args: argparse.Namespace) -> dict[str, Any]:
        return {"orders": args.burst_orders, "clients": args.burst_clients, "poll_interval_s": args.api_poll_interval}

    def load(self, api: Api, poller: Poller, phase: Phase, args: argparse.Namespace, stop: threading.Event) -> None:
        run_burst(api, phase, args.burst_orders, args.burst_clients, args.api_poll_interval, args.phase_timeout, stop)


class ApiPolling(PhaseKind):
    name = "api_polling"

    def orders(self, args: argparse.Namespace) -> int:
        return args.api_poll_orders

    def label(self, args: argparse.Namespace) -> str:
        return (
            f"api_polling: {args.api_poll_orders} orders, {args.api_poll_clients} closed-loop clients polling "
            f"GET /api/orders/{{id}} every {args.api_poll_interval * 1000:g} ms"
        )

    def settings(self, args: argparse.Namespace) -> dict[str, Any]:
        return {
            "orders": args.api_poll_orders,
            "concurrency": args.api_poll_clients,
            "poll_interval_s": args.api_poll_interval,
        }

    def load(self, api: Api, poller: Poller, phase: Phase, args: argparse.Namespace, stop: threading.Event) -> None:
        run_api_polling(
            api, phase, args.api_poll_orders, args.api_poll_clients, args.api_poll_interval, args.phase_timeout, stop
        )


class BurstWaits(Burst):
    name = "burst_waits"

    def label(self, args: argparse.Namespace) -> str:
        return (
            f"burst_waits: {args.burst_orders} orders posted by {args.burst_clients} clients at once, "
            "each outcome awaited in GET /api/orders/{id}/wait"
        )

    def settings(self, args: argparse.Namespace) -> dict[str, Any]:
        return {"orders": args.burst_orders, "clients": args.burst_clients, "outcome": "wait"}

    def load(self, api: Api, poller: Poller, phase: Phase, args: argparse.Namespace, stop: threading.Event) -> None:
        waits = api.waits()
        run_burst(
            api, phase, args.burst_orders, args.burst_clients, args.api_poll_interval, args.phase_timeout, stop, waits
        )


class ApiWaits(ApiPolling):
    name = "api_waits"

    def label(self, args: argparse.Namespace) -> str:
        return (
            f"api_waits: {args.api_poll_orders} orders, {args.api_poll_clients} closed-loop clients, each waiting "
            "for its order in GET /api/orders/{id}/wait"
        )

    def settings(self, args: argparse.Namespace) -> dict[str, Any]:
        return {"orders": args.api_poll_orders, "concurrency": args.api_poll_clients, "outcome": "wait"}

    def load(self, api: Api, poller: Poller, phase: Phase, args: argparse.Namespace, stop: threading.Event) -> None:
        run_api_polling(
            api,
            phase,
            args.api_poll_orders,
            args.api_poll_clients,
            args.api_poll_interval,
            args.phase_timeout,
            stop,
            api.waits(),
        )


class FlashSale(PhaseKind):
    name = "flash_sale"

    def orders(self, args: argparse.Namespace) -> int:
        return args.flash_orders

    def stock(self, args: argparse.Namespace) -> int:
        return args.flash_stock

    def customers(self, args: argparse.Namespace) -> int:
        return args.flash_customers

    def label(self, args: argparse.Namespace) -> str:
        return (
            f"flash_sale: {args.flash_orders} orders for {args.flash_stock} units of one product, from "
            f"{args.flash_customers} customers, posted by {args.flash_clients} clients at once"
        )

    def settings(self, args: argparse.Namespace) -> dict[str, Any]:
        return {
            "orders": args.flash_orders,
            "stock": args.flash_stock,
            "customers": args.flash_customers,
            "clients": args.flash_clients,
        }

    def load(self, api: Api, poller: Poller, phase: Phase, args: argparse.Namespace, stop: threading.Event) -> None:
        run_burst(api, phase, args.flash_orders, args.flash_clients, args.api_poll_interval, args.phase_timeout, stop)

    def invariants(self, deployment: Deployment, phase: Phase) -> dict[str, Any] | None:
        return flash_sale_invariants(deployment, phase)


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
PRODUCTION_PHASES: tuple[PhaseKind, ...] = (
    Throughput(),
    Steady(),
    Burst(),
    ApiPolling(),
    BurstWaits(),
    ApiWaits(),
    FlashSale(),
)
EMBEDDED_PHASES: tuple[PhaseKind, ...] = (Embedded(),)
PHASE_NAMES = tuple(kind.name for kind in (*PRODUCTION_PHASES, *EMBEDDED_PHASES))


def wanted(kinds: tuple[PhaseKind, ...], args: argparse.Namespace) -> list[PhaseKind]:
    """The phases the options ask for (`--phases`, and a size above 0), in their order."""
    chosen = set(args.phases) if getattr(args, "phases", None) else set(PHASE_NAMES)
    return [kind for kind in kinds if kind.name in chosen and kind.orders(args) > 0]

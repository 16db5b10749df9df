"""Broker connections with a bounded silence: whatever the network does, no wait on the broker lasts for ever.

- AMQP heartbeats (MESSAGING_BROKER_HEARTBEAT_S). The owner of a connection calls `heartbeat_check()` at least
  every `tick_s()` between its waits: that sends our heartbeat when due, and raises once nothing has come from
  the broker for two heartbeats, so a connection that went silent (a NAT or load balancer that dropped it, a
  partition) is noticed instead of waited on.
- Every other wait on the connection (the handshake, a declare, a confirm, a consumer's cancel) ends after
  MESSAGING_BROKER_TIMEOUT_S of silence: the socket itself has that timeout.
- A broken connection is dropped, its socket released, without the close handshake: waiting for a dead peer's
  close-ok is how a thread blocks for good. A sound one is closed politely, the handshake bounded too.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from contextlib import contextmanager

import amqp
import kombu.exceptions
import psycopg
from django.conf import settings
from django.db import InterfaceError, OperationalError
from kombu import Connection

logger = logging.getLogger(__name__)

# A broker that answers at all answers a close in milliseconds; a stopping worker does not wait longer on it.
CLOSE_TIMEOUT_S = 1.0
# Heartbeats sent in each heartbeat interval when nothing else is: the broker counts a connection dead after
# about two intervals without a byte from it, and a loop may be late by a tick.
HEARTBEAT_RATE = 4
# The longest wait between two attempts to reconnect.
RECONNECT_MAX_S = 5.0


def tick_s() -> float:
    """The longest a loop may wait on anything before it calls `heartbeat_check(rate=HEARTBEAT_RATE)` again."""
    return min(1.0, settings.MESSAGING_BROKER_HEARTBEAT_S / HEARTBEAT_RATE)


@contextmanager
def connected(*, confirm: bool = False, timeout: float | None = None) -> Iterator[Connection]:
    """An open connection to BROKER_URL for the block, made in one attempt (the caller decides when to try
    again). `confirm`: each publish waits for the broker's confirm. `timeout`: the bound on every wait other
    than a drain's own, MESSAGING_BROKER_TIMEOUT_S by default.

    Leaving the block closes the connection, bounded; an error of the connection itself drops it instead.
    """
    timeout = timeout or settings.MESSAGING_BROKER_TIMEOUT_S
    broker = Connection(
        settings.BROKER_URL,
        heartbeat=settings.MESSAGING_BROKER_HEARTBEAT_S,
        connect_timeout=timeout,
        transport_options={"confirm_publish": True} if confirm else {},
    )
    try:
        broker.ensure_connection(max_retries=0)
        broker.connection.sock.settimeout(timeout)
        yield broker
    except BaseException as error:
        if isinstance(error, broker.connection_errors):
            drop(broker)
        else:
            close(broker)
        raise
    close(broker)


def close(broker: Connection) -> None:
    """Close with the handshake, each of its waits bounded by CLOSE_TIMEOUT_S; drop it if that fails."""
    try:
        if broker.connected:
            broker.connection.sock.settimeout(CLOSE_TIMEOUT_S)
        broker.release()
    except Exception as error:  # noqa: BLE001 - whatever went wrong, the socket is released below
        logger.info("broker connection closed without its handshake: %s", error)
        drop(broker)


def drop(broker: Connection) -> None:
    """Release the connection's socket at once, without a word to the broker (which requeues what was
    unacknowledged on it)."""
    try:
        broker.collect()
    except Exception:  # noqa: BLE001 - a connection being thrown away has nothing left to report
        logger.debug("error while dropping a broker connection", exc_info=True)


def doubling(first: float, cap: float, attempt: int) -> float:
    """`first`, 2 × `first`, 4 × `first`… for attempt 1, 2, 3…, never more than `cap`."""
    return min(cap, first * 2 ** min(attempt - 1, 64))


class Reconnect:
    """The waits between a loop's attempts to reconnect: about 1 s, doubling up to RECONNECT_MAX_S, with a random
    part so that the threads of a worker, and the workers, do not all come back at the same instant."""

    def __init__(self) -> None:
        self.attempts = 0

    def delay(self) -> float:
        self.attempts += 1
        return doubling(1.0, RECONNECT_MAX_S, self.attempts) * random.uniform(0.5, 1.0)

    def connected(self) -> None:
        self.attempts = 0


# What a lost connection raises: said in one line, where anything else gets its traceback.
_CONNECTION_LOST = (
    OSError,
    amqp.exceptions.ConnectionError,
    kombu.exceptions.OperationalError,
    OperationalError,
    InterfaceError,
    psycopg.OperationalError,
)


def log_lost(loop: str, error: BaseException, delay: float) -> None:
    """Say that `loop` lost a connection (or failed in another way) and tries again in `delay` seconds."""
    if isinstance(error, _CONNECTION_LOST):
        logger.warning(
            "%s lost its connection (%s: %s); reconnecting in %.1fs", loop, type(error).__name__, error, delay
        )
    else:
        logger.error("%s failed; reconnecting in %.1fs", loop, delay, exc_info=error)

"""What a Celery worker process runs besides tasks: one consumer thread per queue, and the relay.

Each thread owns its broker connection and its database connection, reconnects after any failure, and
stops cleanly when the worker shuts down. A delivery is acked only after its outcome is durable: the
handler's transaction committed, or the retry or dead letter was confirmed by the broker.

Under load a consumer thread finds several deliveries waiting and handles them in one transaction (up to
MESSAGING_CONSUMER_BATCH): a commit and two round trips fewer for each but the first. If any of them would not
simply be acked (a retry, a dead letter) or the commit fails, the batch is rolled back and each message is
handled alone, as it would have been without batching.

With MESSAGING_LOCAL_HANDOFF, what the handlers write for consumers of this worker is handed to them on the same
thread once the deliveries are acked (messaging/handoff.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, close_old_connections, connection, transaction
from kombu import Connection, Consumer, Producer
from kombu.message import Message

from messaging import bus, handoff, metrics, topology, tracing, wire
from messaging.broker import HEARTBEAT_RATE, Reconnect, connected, log_lost, tick_s
from messaging.consumers import Verdict, drop_broken_connection, handle_delivery
from messaging.correlation import clean_id, printable
from messaging.deadletters import (
    ORIGINAL,
    FailedDelivery,
    dead_letter_record,
    letter_message_id,
    originals_of,
    storable_body,
)
from messaging.envelope import ATTEMPT_HEADER, attempt_number
from messaging.errors import is_transient
from messaging.heartbeat import DEAD_LETTERS, Heartbeat
from messaging.relay import Relay, Tap

logger = logging.getLogger(__name__)

REASON_HEADER = "x-sagaflow-reason"
DETAIL_HEADER = "x-sagaflow-detail"
QUEUE_HEADER = "x-sagaflow-queue"
TRACEBACK_HEADER = "x-sagaflow-traceback"
# How long a stopping worker waits for its threads, all together. One that is still in a wait by then is left
# behind, as when the process is killed: what it had not acked is delivered again.
STOP_TIMEOUT_S = 3.0


class _BrokerThread(threading.Thread):
    """A thread that consumes one queue, reconnecting until stopped."""

    def __init__(self, queue_name: str, stop: threading.Event, loop: str | None = None):
        super().__init__(name=f"sagaflow-{queue_name}", daemon=True)
        self.queue_name = queue_name
        self.stop = stop
        self.producer: Producer | None = None
        self.heartbeat = Heartbeat(loop or queue_name)

    def queues(self) -> list:
        raise NotImplementedError

    def prefetch(self) -> int:
        return settings.MESSAGING_PREFETCH

    def on_message(self, message: Message) -> None:
        raise NotImplementedError

    def after_deliveries(self, broker: Connection) -> None:
        """Called before each wait for deliveries: settles what `on_message` was handed since the last call."""

    def reset(self) -> None:
        """Called on each new broker connection: deliveries of the last one will come again."""

    def run(self) -> None:
        reconnect = Reconnect()
        while not self.stop.is_set():
            self.reset()
            try:
                with connected(confirm=True) as broker:
                    self._consume(broker)
                    reconnect.connected()
                    self._drain(broker)
            except Exception as error:  # noqa: BLE001 - a lost broker or database: reconnect
                delay = reconnect.delay()
                log_lost(f"consumer of {self.queue_name}", error, delay)
                connection.close()
                self.stop.wait(delay)

    def _consume(self, broker: Connection) -> None:
        topology.declare_all(broker.default_channel)
        self.producer = Producer(broker.channel())
        channel = broker.channel()
        channel.basic_qos(0, self.prefetch(), False)
        # Not cancelled on the way out: closing or dropping the connection ends the consumer on the broker's
        # side, and a cancel would wait on a connection that may be dead.
        queues = self.queues()
        Consumer(
            channel,
            queues=queues,
            auto_declare=False,
            on_message=lambda message: self._safely(self.on_message, message),
        ).consume()
        for queue in queues:
            logger.info("consuming %s", queue.name)

    def _drain(self, broker: Connection) -> None:
        next_connection_check = 0.0
        while not self.stop.is_set():
            if time.monotonic() >= next_connection_check:
                # Drops a database connection past its age or broken; once a second, not a query per message.
                close_old_connections()
                next_connection_check = time.monotonic() + 1.0
            # Whatever was received so far, also while the consumer started or a publish waited for its confirm.
            self.after_deliveries(broker)
            try:
                broker.drain_events(timeout=tick_s())
            except TimeoutError:
                pass
            # Raises once the broker has been silent for two heartbeats. Only then does the loop beat: a beat
            # says that it goes round on a connection that lives.
            broker.heartbeat_check(rate=HEARTBEAT_RATE)
            self.heartbeat.beat()

    def _safely(self, settle: Callable[[Message], None], message: Message) -> None:
        try:
            settle(message)
        except Exception:
            # Unacked, the message returns to the queue when the connection is re-made.
            logger.exception("could not settle a message from %s", self.queue_name)
            raise


class _SettleAlone(Exception):
    """A message of a batch will not simply be acked: roll the batch back and handle each message alone."""


class ConsumerThread(_BrokerThread):
    """Feeds one consumer's queues (its own, and its compensations' if it has any) through the shared delivery
    path, then acks, retries or dead-letters. What it received of the compensations goes first."""

    def __init__(self, consumer: str, stop: threading.Event):
        super().__init__(consumer, stop)
        self.consumer = consumer
        self.compensations = frozenset(bus.compensations(consumer))
        self.received: list[Message] = []
        self.tap: Tap | None = None

    def queues(self) -> list:
        return topology.consumer_queues(self.consumer)

    def _consume(self, broker: Connection) -> None:
        self.tap = Tap(broker.connection)
        super()._consume(broker)

    def prefetch(self) -> int:
        # An outward consumer takes one delivery at a time: each may wait a whole timeout on another server,
        # and between two of them the loop answers the broker's heartbeats and beats its own.
        return 1 if self.consumer in bus.outward_consumers() else settings.MESSAGING_PREFETCH

    def reset(self) -> None:
        self.received = []

    def on_message(self, message: Message) -> None:
        self.received.append(message)

    def after_deliveries(self, broker: Connection) -> None:
        # An outward consumer's handler talks to another server outside any transaction: never batched.
        size = 1 if self.consumer in bus.outward_consumers() else settings.MESSAGING_CONSUMER_BATCH
        # Until none is left: more arrive while a retry or a dead letter waits for its confirm.
        while self.received:
            # Deliveries already in the socket are taken without waiting; under light load there are none.
            while len(self.received) < size:
                try:
                    broker.drain_events(timeout=0)
                except (TimeoutError, BlockingIOError):
                    break
            if self.compensations:
                # An undo before new work: each queue has a prefetch of its own, so a compensation waits for one
                # batch at most, never behind the consumer's backlog.
                self.received.sort(key=self._is_new_work)
            batch, self.received = self.received[:size], self.received[size:]
            metrics.BATCH_SIZE.labels(self.consumer).observe(len(batch))
            if len(batch) > 1 and self._settled_together(batch):
                continue
            for message in batch:
                self._safely(self.on_one, message)

    def _is_new_work(self, message: Message) -> bool:
        return _message_type(message) not in self.compensations

    def _settled_together(self, batch: list[Message]) -> bool:
        """Handle `batch` in one transaction and ack it. False, with nothing of it kept, when one of its
        messages would not simply be acked or the commit failed."""
        try:
            with handoff.collecting() as leased, self._batch_span(batch) as span, transaction.atomic():
                for message in batch:
                    if _handled(self.consumer, message, in_batch=True).action != "ack":
                        tracing.set_attributes(span, sagaflow__batch__outcome="split")
                        raise _SettleAlone
        except (_SettleAlone, DatabaseError) as error:
            metrics.BATCHES_SPLIT.labels(self.consumer).inc()
            logger.warning(
                "a batch of %s deliveries from %s was rolled back (%s); handling each alone",
                len(batch),
                self.queue_name,
                "a message failed" if isinstance(error, _SettleAlone) else f"the commit failed: {type(error).__name__}",
            )
            drop_broken_connection()
            return False
        for message in batch:
            message.ack()
        handoff.hand_off(leased, self.tap)
        return True

    def _batch_span(self, batch: list[Message]):
        """The span of a batch handled in one transaction, linked to the trace of each of its messages (each
        message's own "process" span is in its trace and linked back to this one)."""
        if not tracing.enabled:
            return tracing.span("")
        found = (tracing.extracted(message.headers if isinstance(message.headers, dict) else None) for message in batch)
        links = [tracing.Link(tracing.span_context_in(context)) for context in found if context is not None]
        attributes = tracing.messaging_attributes(
            operation="process", destination=self.queue_name, consumer=self.consumer
        )
        attributes["messaging.batch.message_count"] = len(batch)
        return tracing.span(
            f"process {self.queue_name}", kind=tracing.SpanKind.CONSUMER, links=links, attributes=attributes
        )

    def on_one(self, message: Message) -> None:
        """Handle one delivery in its own transaction, then ack, retry or dead-letter it; then hand over what
        its handler wrote for this worker's own consumers (messaging/handoff.py)."""
        with handoff.collecting() as leased:
            verdict = _handled(self.consumer, message)
        if verdict.action == "retry":
            self._send_to_retry(message, verdict)
        elif verdict.action == "dead_letter":
            self._send_to_dead_letters(message, verdict)
        message.ack()
        if verdict.action == "ack":
            handoff.hand_off(leased, self.tap)

    def _send_to_retry(self, message: Message, verdict: Verdict) -> None:
        assert verdict.envelope is not None and self.producer is not None
        attempt = verdict.envelope.attempt
        headers = {**(message.headers or {}), ATTEMPT_HEADER: attempt + 1}
        self.producer.publish(
            message.body,
            exchange="",
            # Back to the queue of its kind when the delay is over: a compensation keeps its place before new work.
            routing_key=topology.retry_queue_name(
                topology.queue_of(self.consumer, verdict.envelope.routing_key), attempt
            ),
            headers=headers,
            retry=False,
            **_copied_properties(message),
        )

    def _send_to_dead_letters(self, message: Message, verdict: Verdict) -> None:
        # Through the broker rather than straight to the database, so a dead letter is kept even while the
        # database is down; the dead-letter thread stores it. Under the id it is stored with, the original id
        # (if it changed) in ORIGINAL. Headers the broker would not take again are stored here and now.
        assert verdict.failure is not None and self.producer is not None
        failure = verdict.failure
        headers = {
            **(message.headers if isinstance(message.headers, dict) else {}),
            REASON_HEADER: failure.reason,
            DETAIL_HEADER: failure.detail[:1000],
            QUEUE_HEADER: self.consumer,
            TRACEBACK_HEADER: _summary(failure.error),
            ATTEMPT_HEADER: failure.attempts,
        }
        originals = originals_of(failure)
        if originals:
            headers[ORIGINAL] = originals
        else:
            headers.pop(ORIGINAL, None)  # ours, like the other x-sagaflow- headers, never the message's own
        frame_max = getattr(getattr(self.producer.channel, "connection", None), "frame_max", 0) or 131072
        if not wire.fits_one_frame(headers, frame_max):
            dead_letter_record(failure)
            return
        self.producer.publish(
            _body_bytes(message),
            exchange=topology.DEAD_LETTER_EXCHANGE,
            routing_key=clean_id(failure.routing_key),
            headers=headers,
            retry=False,
            **{**_copied_properties(message), "message_id": letter_message_id(failure)},
        )


class DeadLetterThread(_BrokerThread):
    """Stores whatever reaches the dead-letter queue as DeadLetter rows: ours, and the broker's own."""

    def queues(self) -> list:
        return [topology.dead_letter_queue()]

    def on_message(self, message: Message) -> None:
        try:
            dead_letter_record(_failure_from(message))
        except Exception as error:  # noqa: BLE001
            if not is_transient(error):
                # The last resort, for what even a minimal letter cannot hold: dropping it silently would lose
                # it, so say so loudly.
                logger.critical(
                    "dead letter cannot be stored and is dropped: %s", printable(message.body[:2000]), exc_info=error
                )
                message.ack()
                return
            logger.exception("could not store a dead letter; it stays queued")
            connection.close()
            self.stop.wait(1.0)
            message.requeue()
            return
        message.ack()


def _handled(consumer: str, message: Message, *, in_batch: bool = False) -> Verdict:
    return handle_delivery(
        consumer,
        message.body,
        dict(message.properties),
        dict(message.headers or {}),
        message.delivery_info.get("routing_key", ""),
        in_batch=in_batch,
    )


def _message_type(message: Message) -> str:
    """The type a delivery says it has, as the envelope reads it: its `type` property, else its routing key (a
    message back from a delay queue carries the queue's name as its routing key)."""
    declared = message.properties.get("type") if isinstance(message.properties, dict) else None
    return declared if isinstance(declared, str) and declared else message.delivery_info.get("routing_key", "")


def _failure_from(message: Message) -> FailedDelivery:
    """The failed delivery a message of the dead-letter queue stands for: ours (with our headers) or the
    broker's (with its x-death), whatever its properties and headers hold. The store cuts what does not fit."""
    properties = message.properties if isinstance(message.properties, dict) else {}
    headers = dict(message.headers) if isinstance(message.headers, dict) else {}
    reason, queue = headers.pop(REASON_HEADER, None), headers.pop(QUEUE_HEADER, None)
    detail, traceback_text = headers.pop(DETAIL_HEADER, ""), headers.pop(TRACEBACK_HEADER, "")
    deaths = headers.get("x-death")
    first_death = deaths[0] if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict) else {}
    if reason is None:
        # Dead-lettered by the broker: over the delivery limit, or rejected.
        broker_reason = first_death.get("reason", headers.get("x-first-death-reason", "rejected"))
        reason = "delivery_limit" if broker_reason == "delivery_limit" else f"broker_{printable(broker_reason)}"
    queue = queue or first_death.get("queue") or headers.get("x-first-death-queue", "")
    if isinstance(queue, str):
        # The consumer's name, also when the broker dead-lettered it from the consumer's compensation queue.
        queue = topology.consumer_of(queue)
    return FailedDelivery(
        message_id=properties.get("message_id"),
        routing_key=properties.get("type") or message.delivery_info.get("routing_key", ""),
        queue=queue,
        body=storable_body(message.body),
        headers={**headers, "correlation_id": properties.get("correlation_id") or ""},
        reason=printable(reason),
        detail=detail if isinstance(detail, str) else printable(detail),
        attempts=attempt_number(headers.get(ATTEMPT_HEADER) or headers.get("x-delivery-count")),
        traceback_text=traceback_text if isinstance(traceback_text, str) else printable(traceback_text),
    )


def _body_bytes(message: Message) -> bytes:
    """The body as bytes to send again: py-amqp hands over text when the message names a content_encoding it
    knows (and "" for an empty body), and kombu would encode text with that property, whatever it holds."""
    if not isinstance(message.body, str):
        return message.body
    try:
        return message.body.encode(message.content_encoding or "utf-8")
    except Exception:  # noqa: BLE001 - an encoding that decodes but does not encode, or none at all
        return message.body.encode("utf-8", "surrogatepass")


def _copied_properties(message: Message) -> dict[str, Any]:
    keep = ("message_id", "correlation_id", "type", "timestamp")
    properties = {k: message.properties[k] for k in keep if k in message.properties}
    return {
        **properties,
        "content_type": message.content_type or "application/json",
        "content_encoding": message.content_encoding or "utf-8",
        "delivery_mode": 2,
    }


def _summary(error: BaseException | None) -> str:
    if error is None:
        return ""
    import traceback

    try:
        return "".join(traceback.format_exception(error, limit=6))[-1500:]
    except Exception:  # noqa: BLE001 - a summary is a help, never a reason not to dead-letter
        return type(error).__name__


class MessagingRuntime:
    """Starts and stops the consumer threads and the relay of one worker process."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        self.metrics_server = None

    def start(self) -> None:
        unknown = set(settings.MESSAGING_CONSUMERS) - set(bus.consumers())
        if unknown:
            raise ImproperlyConfigured(f"MESSAGING_CONSUMERS names unknown consumers: {sorted(unknown)}")
        self.threads = [
            ConsumerThread(name, self.stop)
            for name in settings.MESSAGING_CONSUMERS
            for _ in range(settings.MESSAGING_CONSUMER_THREADS)
        ]
        self.threads.append(DeadLetterThread(topology.DEAD_LETTER_QUEUE, self.stop, loop=DEAD_LETTERS))
        self.threads.append(threading.Thread(target=Relay(self.stop).run, name="sagaflow-relay", daemon=True))
        for thread in self.threads:
            thread.start()
        self.metrics_server = metrics.serve_worker_metrics()

    def shutdown(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Stop every thread, waiting `timeout` seconds in all, whatever state their connections are in."""
        self.stop.set()
        if self.metrics_server is not None:
            self.metrics_server.shutdown()
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        left = [thread.name for thread in self.threads if thread.is_alive()]
        if left:
            logger.warning("%s did not stop within %gs; the worker exits without them", ", ".join(left), timeout)

"""`celery -A config worker` that dies at one chosen instant, as a machine dies there: no cleanup, no ack.

python -m tests.e2e.dying_worker ack payment.process -A config worker ...
    dies when its consumer is about to ack the first payment.process: the handler's transaction committed,
    the broker still holds the message unacked.
python -m tests.e2e.dying_worker mark payment.process -A config worker ...
    dies when its relay is about to mark published a batch holding a payment.process: the broker confirmed
    the message, the outbox row is still unpublished.
python -m tests.e2e.dying_worker handoff payment.processed -A config worker ...
    (with MESSAGING_LOCAL_HANDOFF) dies when a consumer thread is about to hand over a payment.processed: the
    transaction that wrote it committed and its delivery was acked, the row is leased and unpublished.
python -m tests.e2e.dying_worker handed payment.processed -A config worker ...
    (the same) dies inside the hand-off of a payment.processed, once its handlers ran and before the commit.
python -m tests.e2e.dying_worker handoff payment.process -A config worker ...
    (the same) dies when its relay is about to apply the API's payment.process in its claim's transaction:
    the row is unpublished and was never leased. `handed` dies once its handlers ran, before the commit.
"""

from __future__ import annotations

import os
import sys

DIED = 86  # the exit status, so that the test tells this death from a crash


def die_at_ack(message_type: str) -> None:
    from kombu.message import Message

    ack = Message.ack

    def ack_or_die(self, multiple=False):
        if self.properties.get("type") == message_type:
            os._exit(DIED)
        return ack(self, multiple)

    Message.ack = ack_or_die


def die_at_mark(message_type: str) -> None:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()  # the relay's module imports models
    from messaging.relay import ConfirmingPublisher

    publish = ConfirmingPublisher.publish

    def publish_then_die(self, rows):
        confirmed, refused = publish(self, rows)
        if any(row.routing_key == message_type for row in confirmed):
            os._exit(DIED)
        return confirmed, refused

    ConfirmingPublisher.publish = publish_then_die


def die_at_handoff(message_type: str) -> None:
    from messaging import handoff

    def dying_before(hand_over):
        def die_or_hand_over(rows, *args):
            if any(row.routing_key == message_type for row in rows):
                os._exit(DIED)
            return hand_over(rows, *args)

        return die_or_hand_over

    # A consumer thread's hand-off, and the relay's of what it claimed.
    handoff._handed_over = dying_before(handoff._handed_over)
    handoff.apply_claimed = dying_before(handoff.apply_claimed)


def die_at_handed(message_type: str) -> None:
    from messaging import handoff, queries

    def dying_inside(hand_over):
        def hand_over_and_die_before_the_commit(rows, *args):
            if not any(row.routing_key == message_type for row in rows):
                return hand_over(rows, *args)
            mark = queries.outbox_mark_handed_off

            def die(ids):
                os._exit(DIED)

            queries.outbox_mark_handed_off = die
            try:
                return hand_over(rows, *args)
            finally:
                queries.outbox_mark_handed_off = mark

        return hand_over_and_die_before_the_commit

    handoff._handed_over = dying_inside(handoff._handed_over)
    handoff.apply_claimed = dying_inside(handoff.apply_claimed)


def _with_django(install):
    def installed(message_type: str) -> None:
        import django

        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
        django.setup()  # the modules patched import models
        install(message_type)

    return installed


if __name__ == "__main__":
    instant, message_type, *celery_args = sys.argv[1:]
    instants = {
        "ack": die_at_ack,
        "mark": die_at_mark,
        "handoff": _with_django(die_at_handoff),
        "handed": _with_django(die_at_handed),
    }
    instants[instant](message_type)
    sys.argv = ["celery", *celery_args]
    from celery.__main__ import main

    sys.exit(main())

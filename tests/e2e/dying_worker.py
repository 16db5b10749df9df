"""`celery -A config worker` that dies at one chosen instant, as a machine dies there: no cleanup, no ack.

python -m tests.e2e.dying_worker ack payment.process -A config worker ...
    dies when its consumer is about to ack the first payment.process: the handler's transaction committed,
    the broker still holds the message unacked.
python -m tests.e2e.dying_worker mark payment.process -A config worker ...
    dies when its relay is about to mark published a batch holding a payment.process: the broker confirmed
    the message, the outbox row is still unpublished.
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


if __name__ == "__main__":
    instant, message_type, *celery_args = sys.argv[1:]
    {"ack": die_at_ack, "mark": die_at_mark}[instant](message_type)
    sys.argv = ["celery", *celery_args]
    from celery.__main__ import main

    sys.exit(main())

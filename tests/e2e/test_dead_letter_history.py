"""A replay that fails again, through a real worker: the job runs as the worker's Celery task, the message is
dead-lettered again, and its new letter is linked to the earlier one with the attempts of both."""

from __future__ import annotations

from decimal import Decimal

import psycopg
import pytest

from messaging.models import DeadLetter, OutboxMessage, ReplayJob
from tests.e2e.conftest import balance, place_order, wait_final
from tests.e2e.test_dead_letters import impatient_worker, replay  # noqa: F401 - a fixture, and the command
from tests.e2e.test_saga_flows import create_account, create_product
from tests.plugin import worker_database_url
from tests.processes import background_replay, wait_for

pytestmark = [pytest.mark.e2e]


def test_a_message_that_fails_again_after_a_replay_continues_the_history_of_its_letter(api, impatient_worker):  # noqa: F811
    sku = create_product(api, stock_level=5, price="10.00")
    customer = create_account(api, balance_amount="50.00")

    with psycopg.connect(worker_database_url()) as blocker:
        # given a charge that keeps timing out on a lock, dead-lettered after its 3 attempts
        blocker.execute("SELECT 1 FROM payments_account WHERE customer_id = %s FOR UPDATE", [customer])
        order = place_order(api, customer, [{"sku": sku, "quantity": 1}])
        first = wait_for(
            lambda: DeadLetter.objects.filter(routing_key="payment.process").first(),
            timeout=30,
            message="payment.process to be dead-lettered",
        )
        assert first.attempts == 3

        # when its group is replayed in the background while the lock is still held
        background_replay("--fingerprint", first.fingerprint, "--all")
        job = wait_for(
            lambda: ReplayJob.objects.filter(state="done").first(), timeout=30, message="the worker to run the job"
        )
        again = wait_for(
            lambda: DeadLetter.objects.exclude(pk=first.pk).first(),
            timeout=30,
            message="the replayed message to be dead-lettered again",
        )
        blocker.rollback()

    # then the job ran on the worker, and the second letter continues the first's history
    assert (job.done, job.total) == (1, 1)
    assert "run_replay_job" in impatient_worker.log()
    assert (again.message_id, again.previous_id) == (first.message_id, first.pk)
    assert again.attempts == 6 and again.fingerprint == first.fingerprint
    assert OutboxMessage.objects.filter(message_id=first.message_id, target_queue="payments").count() == 1

    # and once the lock is gone, replaying the new letter completes the order, charged once
    assert "1 replayed" in replay("--id", str(again.pk))
    assert wait_final(api, order["id"])["status"] == "COMPLETED"
    assert balance(api, customer) == Decimal("40.00")

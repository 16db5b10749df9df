"""`manage.py replay_dead_letters` over groups: its filters, --dry-run, --limit, --discard, --background, and its
progress, a bar in a terminal and plain lines in a log."""

from __future__ import annotations

import os
import pty
import subprocess
import sys

import pytest

from messaging.models import DeadLetter, OutboxMessage, ReplayJob
from tests.integration.test_dead_letter_replay import replay_command
from tests.integration.test_replay_jobs import many_letters, sends_per_message
from tests.processes import ROOT, process_env

pytestmark = pytest.mark.django_db(transaction=True)


def command(*args: str) -> subprocess.CompletedProcess:
    return replay_command(*args, timeout=300)  # a run of thousands of letters at its rate


@pytest.fixture
def two_groups() -> tuple[list[DeadLetter], list[DeadLetter]]:
    return many_letters(30), many_letters(20, reason="invalid_payload")


def test_filters_select_one_group_and_a_dry_run_changes_nothing(two_groups):
    lock, invalid = two_groups

    result = command("--dry-run", "--fingerprint", invalid[0].fingerprint, "--all")

    assert result.returncode == 0, result.stderr
    assert result.stdout.count("would #") == 20
    assert all(f"#{row.pk} " in result.stdout for row in invalid)
    assert not OutboxMessage.objects.exists() and not ReplayJob.objects.exists()
    assert command("--dry-run", "--reason", "retries_exhausted", "--limit", "7").stdout.count("would #") == 7
    assert command("--dry-run", "--queue", "inventory").stdout.strip() == "no dead letters match"


def test_a_limited_replay_of_a_group_replays_that_many_with_progress_lines_in_a_log(two_groups):
    lock, invalid = two_groups

    result = command("--reason", "retries_exhausted", "--limit", "25", "--batch-size", "10", "--rate", "10000")

    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1] == "25 replayed, 0 refused, 0 failed"
    assert [line for line in lines if line.startswith("progress:")][-1].startswith("progress: 25/25")
    assert sum(line.startswith("replayed #") for line in lines) == 25
    sends = sends_per_message()
    assert len(sends) == 25 and set(sends.values()) == {1}
    assert {str(message_id) for message_id in sends} <= {row.message_id for row in lock}
    job = ReplayJob.objects.get()
    assert (job.state, job.done, job.started_by, job.reason) == ("done", 25, "ops", "retries_exhausted")

    rest = command("--fingerprint", lock[0].fingerprint, "--all")  # the rest of the group, and only it
    assert rest.stdout.splitlines()[-1] == "5 replayed, 0 refused, 0 failed"
    assert OutboxMessage.objects.count() == 30


def test_a_group_is_discarded_in_one_command(two_groups):
    lock, invalid = two_groups

    result = command("--discard", "--fingerprint", invalid[0].fingerprint, "--all")

    assert result.stdout.splitlines()[-1] == "20 discarded, 0 refused, 0 failed", result.stdout + result.stderr
    assert DeadLetter.objects.filter(discarded_at__isnull=False).count() == 20
    assert not OutboxMessage.objects.exists()


def test_in_the_background_the_command_starts_a_job_and_returns(two_groups):
    result = command("--background", "--all", "--reason", "invalid_payload")

    assert result.returncode == 0, result.stderr
    job = ReplayJob.objects.get()
    assert f"started replay job {job.pk} over 20 letters" in result.stdout
    assert not OutboxMessage.objects.exists()  # the worker replays, not the command


def test_in_a_terminal_the_command_draws_a_progress_bar(two_groups):
    output, returncode = in_a_terminal("--all", "--batch-size", "10", "--rate", "10000")

    assert returncode == 0, output
    assert "\r[" in output and "] 50/50 100%" in output
    assert "replayed #" not in output  # the bar stands for the letters that went well
    assert output.strip().splitlines()[-1].endswith("50 replayed, 0 refused, 0 failed")


def in_a_terminal(*args: str) -> tuple[str, int]:
    """Run the command with a pseudo-terminal as its stdout, as an operator at a shell would."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "manage.py", "replay_dead_letters", "--by", "ops", *args],
        cwd=ROOT,
        env=process_env(LOG_LEVEL="error", COLUMNS="120"),
        stdout=follower,
        stderr=subprocess.STDOUT,
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the other end closed: the process has exited
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    return b"".join(chunks).decode(errors="replace"), process.wait(timeout=60)


def test_a_paused_job_is_resumed_by_the_command(two_groups):
    job = ReplayJob.objects.create(
        action="replay",
        reason="retries_exhausted",
        batch_size=10,
        rate_per_s=1e4,
        state="paused",
        started_by="x",
        up_to=DeadLetter.objects.order_by("-pk").first().pk,
    )
    job.total = 30
    job.save()

    result = command("--resume", str(job.pk))

    assert result.stdout.splitlines()[-1] == "30 replayed, 0 refused, 0 failed", result.stdout + result.stderr
    assert ReplayJob.objects.get(pk=job.pk).state == "done"
    assert "is done" in command("--resume", str(job.pk)).stderr
    assert OutboxMessage.objects.count() == 30

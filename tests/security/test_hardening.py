"""A deployment that cannot start insecurely, an admin for staff only, and an audit log of operator actions."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission, User
from django.core.management import call_command
from django.test import Client

from config.access.models import AuditEntry
from config.access.services import api_token_create
from messaging.deadletters import FailedDelivery, dead_letter_discard, dead_letter_record
from messaging.models import DeadLetter

ROOT = Path(__file__).resolve().parent.parent.parent
DEPLOYMENT = {
    "DATABASE_URL": "postgres://user@db.invalid:5432/sagaflow",
    "BROKER_URL": "amqp://u@mq.invalid//",
    "ALLOWED_HOSTS": "shop.example.com",
}


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    """manage.py in a fresh process with exactly these settings on top of a clean environment."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in {"SECRET_KEY", "DATABASE_URL", "BROKER_URL", "DEBUG", "SECURE_TLS", "TEST_DATABASE_NAME"}
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def strong_key() -> str:
    return secrets.token_urlsafe(50)


# SECRET_KEY.


@pytest.mark.parametrize(
    "key",
    [None, "sagaflow-insecure-development-key", "short-but-not-empty", "a" * 60, "django-insecure-" + "x1y2z3" * 10],
    ids=["unset", "the-development-key", "short", "one-character", "django-insecure"],
)
def test_a_deployment_refuses_to_start_with_a_key_anyone_could_know_and_says_why(key):
    result = manage("check", **DEPLOYMENT, **({"SECRET_KEY": key} if key else {}))

    assert result.returncode != 0
    assert "ImproperlyConfigured: SECRET_KEY will not do for a deployment" in result.stderr


@pytest.mark.parametrize(
    "env",
    [
        {},  # the embedded mode: SQLite, nothing set
        {**DEPLOYMENT, "DEBUG": "true"},
        {**DEPLOYMENT, "SECRET_KEY": "placeholder"},
    ],
    ids=["embedded", "debug", "strong-key"],
)
def test_the_embedded_mode_debug_and_a_strong_key_start(env):
    if env.get("SECRET_KEY") == "placeholder":
        env = {**env, "SECRET_KEY": strong_key()}

    result = manage("check", **env)

    assert result.returncode == 0, result.stderr[-2000:]


# check --deploy.


def deploy_warnings(**env: str) -> set[str]:
    result = manage("check", "--deploy", **DEPLOYMENT, SECRET_KEY=strong_key(), **env)
    assert "ERRORS" not in result.stderr, result.stderr
    return set(re.findall(r"\((security\.W\d+)\)", result.stdout + result.stderr))


def test_check_deploy_behind_tls_leaves_only_the_hsts_subdomain_and_preload_warnings():
    # Both depend on the domain (are all its subdomains on HTTPS? should it be preloaded?): the README says so.
    assert deploy_warnings(SECURE_TLS="true") <= {"security.W005", "security.W021"}


def test_check_deploy_without_tls_warns_only_of_what_tls_would_turn_on():
    # The session cookie's is W010, not W012: Django's check names its own SessionMiddleware only, and the one
    # installed is config.kernel.middleware's (the same, passing the API's requests by).
    assert deploy_warnings() <= {"security.W004", "security.W008", "security.W010", "security.W016"}


def test_secure_tls_makes_cookies_https_only_sends_hsts_and_redirects_all_but_health_and_metrics():
    script = (
        "from django.conf import settings as s; print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, "
        "s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS, s.SECURE_PROXY_SSL_HEADER, s.SECURE_REDIRECT_EXEMPT)"
    )

    result = manage("shell", "-c", script, **DEPLOYMENT, SECRET_KEY=strong_key(), SECURE_TLS="true")

    assert result.stdout.strip().splitlines()[-1] == (
        "True True True 31536000 ('HTTP_X_FORWARDED_PROTO', 'https') ['^health(/|$)', '^metrics$']"
    )


# The admin.


@pytest.mark.django_db
def test_the_admin_is_for_staff_only(client):
    def user(staff: bool) -> User:
        return User.objects.create_user(f"u-{uuid.uuid4().hex[:8]}", password="pw-123456789", is_staff=staff)

    anonymous = client.get("/admin/")
    client.force_login(user(staff=False))
    not_staff = client.get("/admin/")
    not_staff_tokens = client.get("/admin/config/apitoken/")
    client.force_login(user(staff=True))
    staff = client.get("/admin/")

    assert anonymous.status_code == not_staff.status_code == not_staff_tokens.status_code == 302
    assert "/admin/login/" in anonymous["Location"] and "/admin/login/" in not_staff_tokens["Location"]
    assert staff.status_code == 200


@pytest.mark.django_db
def test_the_admin_shows_tokens_without_their_hash_and_revokes_them_with_an_audit_entry(admin_client, capsys):
    call_command("create_api_token", "--role", "operator")
    token = capsys.readouterr().out.strip().splitlines()[-1]
    from config.access.models import ApiToken

    record = ApiToken.objects.get(prefix=token[:10])

    page = admin_client.get(f"/admin/config/apitoken/{record.pk}/change/")
    admin_client.post("/admin/config/apitoken/", {"action": "revoke", "_selected_action": [record.pk]})

    assert page.status_code == 200 and record.key_hash.encode() not in page.content
    record.refresh_from_db()
    assert record.revoked_at is not None
    assert AuditEntry.objects.filter(action="api_token.revoke", actor="admin:admin").count() == 1


def staff_with(*codenames: str) -> Client:
    """A logged-in staff user (not a superuser) that has exactly these permissions."""
    user = User.objects.create_user(f"staff-{uuid.uuid4().hex[:8]}", password="pw-123456789", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_staff_who_may_only_view_tokens_are_not_offered_the_revoke_action_and_cannot_revoke():
    record = api_token_create(role="operator", by="tests").record
    viewer = staff_with("view_apitoken")

    page = viewer.get("/admin/config/apitoken/")
    viewer.post("/admin/config/apitoken/", {"action": "revoke", "_selected_action": [record.pk]})

    assert page.status_code == 200 and 'value="revoke"' not in page.content.decode()
    record.refresh_from_db()
    assert record.revoked_at is None
    assert not AuditEntry.objects.filter(action="api_token.revoke").exists()


@pytest.mark.django_db
def test_staff_with_the_change_permission_on_tokens_revoke_them_with_an_audit_entry():
    record = api_token_create(role="operator", by="tests").record
    operator = staff_with("view_apitoken", "change_apitoken")

    page = operator.get("/admin/config/apitoken/")
    operator.post("/admin/config/apitoken/", {"action": "revoke", "_selected_action": [record.pk]})

    assert 'value="revoke"' in page.content.decode()
    record.refresh_from_db()
    assert record.revoked_at is not None
    [audit] = AuditEntry.objects.filter(action="api_token.revoke", target=f"api_token:{record.pk}")
    assert audit.actor.startswith("admin:staff-")
    # and the token still cannot be edited by hand: the change permission only opens the action
    change = operator.post(f"/admin/config/apitoken/{record.pk}/change/", {"label": "edited", "role": "customer"})
    assert change.status_code == 403


# The audit log.


def dead_letter() -> DeadLetter:
    return dead_letter_record(
        FailedDelivery(
            message_id=str(uuid.uuid4()),
            routing_key="payment.process",
            queue="payments",
            body=f'{{"order_id": "{uuid.uuid4()}", "customer_id": "c", "amount": "1.00", "currency": "EUR"}}',
            headers={},
            reason="retries_exhausted",
            detail="test",
            attempts=5,
        )
    )


@pytest.mark.django_db(transaction=True)  # replay and discard open durable transactions
def test_replaying_a_dead_letter_with_the_command_is_audited_with_who_when_and_what():
    letter = dead_letter()

    call_command("replay_dead_letters", "--id", str(letter.pk), "--by", "ops-oncall")

    entry = AuditEntry.objects.get(action="dead_letter.replay")
    assert (entry.actor, entry.target) == ("ops-oncall", f"dead_letter:{letter.pk}")
    assert entry.details["message_id"] == letter.message_id and entry.at is not None


@pytest.mark.django_db(transaction=True)
def test_replay_and_discard_from_the_admin_are_audited_under_the_admin_user(admin_client):
    replayed, discarded = dead_letter(), dead_letter()

    admin_client.post("/admin/messaging/deadletter/", {"action": "replay", "_selected_action": [replayed.pk]})
    admin_client.post("/admin/messaging/deadletter/", {"action": "discard", "_selected_action": [discarded.pk]})

    entries = {(e.action, e.target): e.actor for e in AuditEntry.objects.all()}
    assert entries[("dead_letter.replay", f"dead_letter:{replayed.pk}")] == "admin"
    assert entries[("dead_letter.discard", f"dead_letter:{discarded.pk}")] == "admin"


@pytest.mark.django_db(transaction=True)
def test_discarding_twice_is_audited_once():
    letter = dead_letter()

    dead_letter_discard(letter=letter, by="ops")
    dead_letter_discard(letter=letter, by="ops")

    assert AuditEntry.objects.filter(action="dead_letter.discard").count() == 1


@pytest.mark.parametrize("rate", ["often", "0/s", "5/fortnight", "5"])
def test_a_rate_that_is_not_a_rate_stops_the_start_and_says_which_setting(rate):
    result = manage("check", API_CUSTOMER_ORDER_RATE=rate)

    assert result.returncode != 0
    assert "API_CUSTOMER_ORDER_RATE must be a rate like 5/s" in result.stderr


def test_a_rate_per_minute_and_a_rate_turned_off_start():
    result = manage("check", API_CUSTOMER_ORDER_RATE="100/min", API_OPERATOR_ORDER_RATE="off")

    assert result.returncode == 0, result.stderr[-2000:]

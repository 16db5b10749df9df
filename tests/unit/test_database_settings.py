"""The database settings a DATABASE_URL gives: server-side binding on PostgreSQL, bounded waits (connect,
statement, idle in transaction, TCP keepalives, the client's own bound on an answer), and the URL's own options
kept, winning over ours."""

from __future__ import annotations

import json

from tests.security.test_hardening import manage, strong_key

URL = "postgres://u@db.invalid:5432/shop"


def database(url: str, **env: str) -> dict:
    code = (
        "from django.conf import settings; import json; database = settings.DATABASES['default']; "
        "print(json.dumps({'ENGINE': database['ENGINE'], 'OPTIONS': database['OPTIONS'], "
        "'ANSWER': settings.DATABASE_ANSWER_TIMEOUT_S}))"
    )
    result = manage("shell", "-c", code, DATABASE_URL=url, SECRET_KEY=strong_key(), **env)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_postgresql_binds_parameters_on_the_server_bounds_every_wait_and_keeps_the_urls_own_options():
    settings = database(f"{URL}?application_name=worker-7&options=-c%20lock_timeout%3D100")

    assert settings["ENGINE"] == "config.kernel.postgresql"
    assert settings["OPTIONS"] == {
        "server_side_binding": True,
        "application_name": "worker-7",
        "connect_timeout": 5,
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 5,
        "keepalives_count": 3,
        "tcp_user_timeout": 25_000,
        # ours first: the URL's own come after, and win for a setting named twice
        "options": "-c statement_timeout=30000 -c idle_in_transaction_session_timeout=60000 -c lock_timeout=100",
    }
    assert settings["ANSWER"] == 35.0


def test_the_urls_own_options_win_over_the_settings():
    options = database(f"{URL}?connect_timeout=20&keepalives_idle=60", DATABASE_CONNECT_TIMEOUT_S="3")["OPTIONS"]

    assert (options["connect_timeout"], options["keepalives_idle"]) == (20, 60)


def test_the_bounds_come_from_the_settings_and_0_turns_the_server_timeouts_off():
    settings = database(
        URL,
        DATABASE_CONNECT_TIMEOUT_S="2",
        DATABASE_STATEMENT_TIMEOUT_S="1.5",
        DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_S="0",
        DATABASE_KEEPALIVES_IDLE_S="1",
        DATABASE_KEEPALIVES_INTERVAL_S="2",
        DATABASE_KEEPALIVES_COUNT="4",
    )
    options = settings["OPTIONS"]
    assert (
        options["connect_timeout"],
        options["keepalives_idle"],
        options["keepalives_interval"],
        options["keepalives_count"],
        options["tcp_user_timeout"],
    ) == (2, 1, 2, 4, 9_000)
    assert options["options"] == "-c statement_timeout=1500"
    assert settings["ANSWER"] == 6.5

    unbounded = database(URL, DATABASE_STATEMENT_TIMEOUT_S="0", DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_S="0")
    assert "options" not in unbounded["OPTIONS"]
    assert unbounded["ANSWER"] is None


def test_a_bad_bound_stops_the_process_naming_the_variable():
    result = manage("check", DATABASE_URL=URL, SECRET_KEY=strong_key(), DATABASE_KEEPALIVES_COUNT="none")

    assert result.returncode != 0
    assert "ImproperlyConfigured: DATABASE_KEEPALIVES_COUNT must be a int, got 'none'" in result.stderr

"""The database settings a DATABASE_URL gives: server-side binding on PostgreSQL, the URL's own options kept."""

from __future__ import annotations

import json

from tests.security.test_hardening import manage, strong_key


def database_options(url: str) -> dict:
    code = "from django.conf import settings; import json; print(json.dumps(settings.DATABASES['default']['OPTIONS']))"
    result = manage("shell", "-c", code, DATABASE_URL=url, SECRET_KEY=strong_key())
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_postgresql_binds_parameters_on_the_server_and_keeps_the_urls_own_options():
    options = database_options("postgres://u@db.invalid:5432/shop?application_name=worker-7"
                               "&options=-c%20lock_timeout%3D100")

    assert options == {"server_side_binding": True, "application_name": "worker-7",
                       "options": "-c lock_timeout=100"}

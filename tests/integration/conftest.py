"""Integration fixtures: services and handlers against this run's PostgreSQL database."""

from __future__ import annotations

import pytest
from django.db import connection


@pytest.fixture
def inprocess(settings):
    """The in-process transport, driven by the test through `drain()` rather than by its thread."""
    settings.MESSAGING_TRANSPORT = "inprocess"
    settings.MESSAGING_INPROCESS_AUTOSTART = False


@pytest.fixture
def latest_schema_after():
    """Migrates the database to the latest schema (when called, and in any case after the test), so that the
    tests after this one find the tables as they are."""
    from django.db.migrations.executor import MigrationExecutor

    def migrate_to_latest() -> None:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())

    yield migrate_to_latest
    migrate_to_latest()

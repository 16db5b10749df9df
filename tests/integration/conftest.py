"""Integration fixtures: services and handlers against this run's PostgreSQL database."""

from __future__ import annotations

import pytest


@pytest.fixture
def inprocess(settings):
    """The in-process transport, driven by the test through `drain()` rather than by its thread."""
    settings.MESSAGING_TRANSPORT = "inprocess"
    settings.MESSAGING_INPROCESS_AUTOSTART = False

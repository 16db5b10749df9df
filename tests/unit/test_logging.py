"""The log line formats of settings.LOGGING: JSON with the context fields that are known, or readable text."""

from __future__ import annotations

import io
import json
import logging
import logging.config
import runpy
from datetime import datetime
from pathlib import Path

from django.conf import settings

from messaging import correlation
from messaging.correlation import LogContextFilter

ROOT = Path(__file__).resolve().parent.parent.parent


def formatted(formatter_name: str, message: str = "hello %s", *args: object) -> str:
    """One record written through the project's handler chain: the context filter, then the named formatter."""
    configurator = logging.config.DictConfigurator(settings.LOGGING)
    formatter = configurator.configure_formatter(dict(settings.LOGGING["formatters"][formatter_name]))
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(formatter)
    handler.addFilter(LogContextFilter())
    logger = logging.Logger("sagaflow.test")
    logger.addHandler(handler)
    logger.warning(message, *args)
    return buffer.getvalue().strip()


def test_a_json_line_carries_time_level_logger_message_and_the_known_context():
    with correlation.bound(
        correlation_id="corr-1", causation_id="cause-1", message_id="msg-1", order_id="ord-1", saga_state="COMPLETED"
    ):
        line = json.loads(formatted("json", "hello %s", "world"))

    assert line["message"] == "hello world"
    assert (line["level"], line["logger"]) == ("WARNING", "sagaflow.test")
    assert datetime.fromisoformat(line["timestamp"]).utcoffset().total_seconds() == 0
    assert {key: line[key] for key in ("correlation_id", "causation_id", "message_id", "order_id", "saga_state")} == {
        "correlation_id": "corr-1",
        "causation_id": "cause-1",
        "message_id": "msg-1",
        "order_id": "ord-1",
        "saga_state": "COMPLETED",
    }


def test_a_json_line_leaves_out_the_context_that_is_not_known():
    with correlation.bound(correlation_id="corr-2", causation_id=None, message_id=None, order_id=None, saga_state=None):
        line = json.loads(formatted("json"))

    assert line["correlation_id"] == "corr-2"
    assert not {"causation_id", "message_id", "order_id", "saga_state"} & set(line)


def test_a_text_line_shows_the_correlation_id_or_a_dash():
    with correlation.bound(correlation_id="corr-3"):
        assert "WARNING sagaflow.test [corr-3] hello" in formatted("text")
    with correlation.bound(correlation_id=None):
        assert "[-] hello" in formatted("text")


def test_gunicorn_writes_its_own_lines_through_the_same_handler():
    config = runpy.run_path(str(ROOT / "gunicorn.conf.py"))["logconfig_dict"]

    for name in ("gunicorn.error", "gunicorn.access"):
        assert config["loggers"][name]["handlers"] == ["console"]
    assert config["handlers"] == settings.LOGGING["handlers"]
    assert config["formatters"] == settings.LOGGING["formatters"]

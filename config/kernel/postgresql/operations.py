"""Migration operations for what only PostgreSQL has (triggers, notifications): on another database (SQLite,
the embedded default) they do nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def on_postgresql(sql: str) -> Callable[[Any, Any], None]:
    """A RunPython function that executes `sql` on PostgreSQL only."""

    def run(apps: Any, schema_editor: Any) -> None:
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql)

    return run

"""The API's JSON parser. Its own module: DRF imports it while reading its settings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rest_framework import exceptions, parsers


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, except that a body nested too deeply for Python's decoder is a 400, not a 500.

    A request body of 200 KiB of `[` makes `json.loads` raise RecursionError, which DRF does not catch.
    """

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Mapping[str, Any] | None = None) -> Any:
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise exceptions.ParseError("JSON parse error - the body is nested too deeply.") from None

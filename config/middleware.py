"""Refuses oversized bodies before any view reads them."""

from __future__ import annotations

from typing import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from config.api import json_error


class RequestSizeLimitMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return json_error(400, "invalid_content_length", "The Content-Length header is not a number.")
        if length > settings.MAX_REQUEST_BODY_BYTES:
            return json_error(413, "request_too_large",
                              f"The request body is larger than {settings.MAX_REQUEST_BODY_BYTES // 1024} KiB.",
                              {"limit_bytes": settings.MAX_REQUEST_BODY_BYTES})
        return self.get_response(request)

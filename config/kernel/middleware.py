"""Refuses, before any view runs, requests that no view could serve: oversized bodies, and NULs in the URL. Serves
the static files. And the browser's middleware (a session, its user, its messages), which the API's requests pass
by.

Each runs in the server's mode: called on the request's thread under WSGI (gunicorn), awaited under ASGI
(uvicorn), so that the chain stays asynchronous there and a wait for an order (orders/api.py) holds no thread.
One synchronous middleware in the chain would hold a thread for each waiting request.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib.auth import middleware as auth_middleware
from django.contrib.messages import middleware as messages_middleware
from django.contrib.sessions import middleware as sessions_middleware
from django.core.exceptions import BadRequest
from django.http import Http404, HttpRequest, HttpResponse
from whitenoise.middleware import WhiteNoiseMiddleware

from config.kernel.api import NUL, NUL_REFUSED, is_api_path, json_error
from config.kernel.modes import EitherMode


class AnswersFirst(EitherMode):
    """A middleware that may answer a request before the view does (`answer`), in either mode."""

    def __call__(self, request: HttpRequest) -> Any:
        if self.async_mode:
            return self._awaited(request)
        answer = self.answer(request)
        return answer if answer is not None else self.get_response(request)

    async def _awaited(self, request: HttpRequest) -> HttpResponse:
        answer = self.answer(request)
        return answer if answer is not None else await self.get_response(request)

    def answer(self, request: HttpRequest) -> HttpResponse | None:
        raise NotImplementedError


class RequestSizeLimitMiddleware(AnswersFirst):
    def answer(self, request: HttpRequest) -> HttpResponse | None:
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return json_error(400, "invalid_content_length", "The Content-Length header is not a number.")
        if length > settings.MAX_REQUEST_BODY_BYTES:
            return json_error(
                413,
                "request_too_large",
                f"The request body is larger than {settings.MAX_REQUEST_BODY_BYTES // 1024} KiB.",
                {"limit_bytes": settings.MAX_REQUEST_BODY_BYTES},
            )
        return None


class NulInUrlMiddleware(AnswersFirst):
    """A NUL character (`%00`) in the path answers 404, and one in the query string 400, for every view, the
    admin's included: JSON with the usual error body under /api/, Django's own page elsewhere.

    PostgreSQL's text cannot hold a NUL, so the driver refuses any lookup by a value holding one, and that
    would be a 500 wherever a path or query value reaches a query. No stored identifier holds one (a string in
    a body is refused with it), so nothing is at such a path. Every other control character is a valid
    character of an identifier, and passes.
    """

    def answer(self, request: HttpRequest) -> HttpResponse | None:
        if NUL in request.path_info:
            return self.refuse(request, 404, "not_found", f"No resource at {request.path!r}: a path holds no NUL.")
        query = request.META.get("QUERY_STRING", "")
        if "%00" in query or NUL in query:  # the raw string, so that a request without a NUL parses nothing
            holding = sorted(
                {name for name, values in request.GET.lists() if NUL in name or any(NUL in value for value in values)}
            )
            if holding:
                return self.refuse(
                    request,
                    400,
                    "invalid_request",
                    "The request is invalid; see details.",
                    {name: [NUL_REFUSED] for name in holding},
                )
        return None

    @staticmethod
    def refuse(request: HttpRequest, status: int, code: str, message: str, details: dict | None = None) -> HttpResponse:
        if is_api_path(request.path_info):
            return json_error(status, code, message, details)
        # Raised, so that Django answers with its handler404 or handler400 page, as for any other such error.
        raise Http404(message) if status == 404 else BadRequest(message)


class StaticFilesMiddleware(AnswersFirst, WhiteNoiseMiddleware):
    """WhiteNoise's: the static files from memory, before anything else runs. Its own class is synchronous only."""

    def __init__(self, get_response: Callable[[HttpRequest], Any]):
        WhiteNoiseMiddleware.__init__(self, get_response)
        AnswersFirst.__init__(self, get_response)

    def answer(self, request: HttpRequest) -> HttpResponse | None:
        found = self.find_file(request.path_info) if self.autorefresh else self.files.get(request.path_info)
        return None if found is None else self.serve(found, request)


class _NotForTheApi:
    """Passes an API request straight on: the API authenticates each request by its bearer token
    (config.access.auth), and keeps no session and sends no messages, so the session, its user and its messages
    have nothing to do there (a sixth of a status read's CPU, a third of /health/live's). Every other path, the
    admin's above all, gets the middleware as Django has it."""

    get_response: Callable[[HttpRequest], Any]

    def __call__(self, request: HttpRequest) -> Any:
        if is_api_path(request.path_info):
            return self.get_response(request)  # awaited by the caller under ASGI
        return super().__call__(request)  # type: ignore[misc]


# Subclasses of Django's own, so that the admin's checks that they are installed still find them.
class SessionMiddleware(_NotForTheApi, sessions_middleware.SessionMiddleware):
    pass


class AuthenticationMiddleware(_NotForTheApi, auth_middleware.AuthenticationMiddleware):
    pass


class MessageMiddleware(_NotForTheApi, messages_middleware.MessageMiddleware):
    pass

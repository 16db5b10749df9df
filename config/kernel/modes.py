"""The base of a middleware that runs in the server's mode, called under WSGI and awaited under ASGI (its own
module: the log filters import the correlation middleware before Django's apps are ready)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest


class EitherMode:
    """A middleware of either mode: the server's (Django hands it a coroutine function under ASGI). A subclass
    answers in `__call__`, or returns the coroutine of its asynchronous path when `async_mode`."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]):
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        raise NotImplementedError

"""The ASGI server's application: `uvicorn config.asgi:application --lifespan off`.

It serves every route, but it is there for GET /api/orders/{id}/wait: a request that waits for its order's end
is a coroutine here and holds no thread (orders/waiting.py). gunicorn (config/wsgi.py) serves the rest at less
CPU a request. The embedded mode's in-process transport is never started here: it belongs to the web process.
"""

import os
import re

import django
from django.core.handlers.asgi import ASGIHandler

from config import tracing

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

tracing.setup("web-async")

WAIT_PATH = re.compile(r"/api/orders/[^/]+/wait")


class Handler(ASGIHandler):
    """Django's, but a wait's few synchronous steps (the request signals' receivers, and the middleware of
    Django's own that has no asynchronous path) run on the one thread that asgiref keeps for them per process.
    Django would make a thread for each request and keep it until the request ends: one per waiting client."""

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and WAIT_PATH.fullmatch(scope["path"]):
            await self.handle(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


django.setup(set_prefix=False)
application = Handler()

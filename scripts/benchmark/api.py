"""The bench's HTTP client of the product's API."""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.parse
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .deployments import Deployment


class Api:
    """The HTTP API, with one keep-alive connection per thread.

    Plain `http.client`, not httpx: the load generator shares the 2 cores with what it measures, and httpx
    cost about 4 ms of CPU per request here, several times more than http.client.
    """

    IDLE_EXPIRY_S = 1.0  # below gunicorn's keep-alive (2 s): a POST on a connection it is closing would fail

    def __init__(self, deployment: Deployment, base_url: str | None = None):
        self.deployment = deployment
        url = base_url or deployment.base_url
        target = urllib.parse.urlsplit(url)
        if not target.hostname:
            raise RuntimeError(f"{url!r} is not a URL such as http://host:8000")
        self.host, self.port, self.secure = target.hostname, target.port, target.scheme == "https"
        self.headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if deployment.token:
            self.headers["Authorization"] = f"Bearer {deployment.token}"
        self.local = threading.local()

    def waits(self) -> Api:
        """The API of the server that answers GET /api/orders/{id}/wait (the product's ASGI server)."""
        if self.deployment.wait_url is None:
            raise RuntimeError("no server for waits is known: give --wait-url with --url")
        return Api(self.deployment, self.deployment.wait_url)

    def _connection(self) -> http.client.HTTPConnection:
        last_used = getattr(self.local, "last_used", 0.0)
        if getattr(self.local, "connection", None) is not None and time.monotonic() - last_used > self.IDLE_EXPIRY_S:
            self.local.connection.close()
            self.local.connection = None
        if getattr(self.local, "connection", None) is None:
            kind = http.client.HTTPSConnection if self.secure else http.client.HTTPConnection
            self.local.connection = kind(self.host, self.port, timeout=30)
        return self.local.connection

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, bytes]:
        """(status, body bytes). Raises OSError or http.client.HTTPException; the connection is then dropped."""
        connection = self._connection()
        try:
            connection.request(method, path, body=None if body is None else json.dumps(body), headers=self.headers)
            response = connection.getresponse()
            content = response.read()
        except (OSError, http.client.HTTPException):
            connection.close()
            self.local.connection = None
            raise
        self.local.last_used = time.monotonic()
        return response.status, content

    def post(self, path: str, body: dict[str, Any], expect: int = 201) -> dict[str, Any]:
        status, content = self.request("POST", path, body)
        if status != expect:
            raise RuntimeError(f"POST {path} answered {status}: {content[:500]!r}")
        return json.loads(content)

    def pages(self, path: str, params: dict[str, str]) -> Iterator[dict[str, Any]]:
        url: str | None = f"{path}?{urllib.parse.urlencode({**params, 'page_size': '200'})}"
        while url:
            status, content = self.request("GET", url)
            if status != 200:
                raise RuntimeError(f"GET {url} answered {status}: {content[:500]!r}")
            page = json.loads(content)
            yield from page["results"]
            url = page["next"] and urllib.parse.urlsplit(page["next"])._replace(scheme="", netloc="").geturl()

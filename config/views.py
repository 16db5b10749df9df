"""Views of the project itself: health, the API's schema and docs, and JSON answers for unmatched API paths
and server errors."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from health_check.views import HealthCheckView

from config.api import json_error


class HealthView(HealthCheckView):
    """JSON always: 200 when every check passes, 503 naming the failing checks otherwise."""

    checks = ["health_check.checks.Database", "messaging.health.Broker"]

    async def get(self, request, *args, **kwargs):
        import asyncio

        with self.get_executor() as executor:
            results = await asyncio.gather(*(check.get_result(executor) for check in self.get_checks()))
        checks = {type(r.check).__name__.lower(): ("ok" if r.error is None else str(r.error)) for r in results}
        failing = sorted(name for name, outcome in checks.items() if outcome != "ok")
        body = {"status": "unhealthy" if failing else "ok", "checks": checks, "failing": failing}
        response = JsonResponse(body, status=503 if failing else 200)
        response["Cache-Control"] = "no-store"
        return response


def api_not_found(request: HttpRequest, *args, **kwargs) -> JsonResponse:
    return json_error(404, "not_found", f"No API resource at {request.path}.")


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: the API answers JSON even when it fails; the admin keeps Django's page."""
    if request.path == "/api" or request.path.startswith("/api/"):
        return json_error(500, "server_error", "The server failed to handle this request; it has been logged.")
    return defaults.server_error(request)


class JsonMethodNotAllowedMixin:
    """A wrong method is a JSON 405 here too, not the page's own renderer (YAML for the schema, HTML for docs)."""

    def http_method_not_allowed(self, request, *args, **kwargs) -> JsonResponse:
        return json_error(405, "method_not_allowed", f'Method "{request.method}" not allowed.')


class SchemaView(JsonMethodNotAllowedMixin, SpectacularAPIView):
    pass


class DocsView(JsonMethodNotAllowedMixin, SpectacularSwaggerView):
    pass

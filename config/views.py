"""Views of the project itself: health, and JSON answers for unmatched API paths."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
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

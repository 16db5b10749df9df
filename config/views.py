"""Views of the project itself: health, metrics, the API's schema and docs, and JSON answers for unmatched API
paths and server errors."""

from __future__ import annotations

import logging

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from health_check.views import HealthCheckView

from config.access.auth import requires_operator_token
from config.kernel.api import is_api_path, json_error, logged_already

logger = logging.getLogger(__name__)


class HealthView(HealthCheckView):
    """Is the system healthy right now? JSON always: 200 when every check passes, 503 naming the failing ones.

    Beyond "the database and the broker answer", it asks whether orders flow: the relay keeps up with the
    outbox, dead letters are not piling up, every consumer has a live worker, and no saga is stuck past its
    deadline. Public (no authentication), like the liveness and readiness endpoints.
    """

    @property
    def checks(self) -> list[str]:
        # messaging's checks, and those the apps above it registered from their AppConfig.ready().
        from messaging.health import CHECKS

        return ["health_check.checks.Database", *CHECKS]

    async def get(self, request, *args, **kwargs):
        import asyncio

        with self.get_executor() as executor:
            results = await asyncio.gather(*(check.get_result(executor) for check in self.get_checks()))
        checks = {check_name(r.check): ("ok" if r.error is None else str(r.error)) for r in results}
        failing = sorted(name for name, outcome in checks.items() if outcome != "ok")
        body = {"status": "unhealthy" if failing else "ok", "checks": checks, "failing": failing}
        response = JsonResponse(body, status=503 if failing else 200)
        response["Cache-Control"] = "no-store"
        if failing:
            # One line per probe that names what fails and why, rather than a traceback for each failing check
            # and an ERROR for each 503: a probe every few seconds through an outage would bury everything else.
            logger.warning(
                "unhealthy: %s", "; ".join(f"{name}: {checks[name]}" for name in failing), extra={"failing": failing}
            )
            logged_already(response)  # django.request does not log the 503 again
        return response


class ReadinessView(HealthView):
    """Readiness: this web process can do work, because the database and the broker answer. An orchestrator
    sends it traffic only while this answers 200. A slow worker or a stuck saga does not make it unready."""

    checks = ["health_check.checks.Database", "messaging.health.Broker"]


def liveness(request: HttpRequest) -> JsonResponse:
    """Liveness: the process is up and answers; it asks nothing of the database or the broker, so that an
    orchestrator does not restart a healthy web process because a dependency is down."""
    response = JsonResponse({"status": "ok"})
    response["Cache-Control"] = "no-store"
    return response


@requires_operator_token("METRICS_TOKEN_REQUIRED")
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus: the figures the database holds, read now, and this process's own (messaging.metrics)."""
    from messaging.metrics import web_exposition

    body, content_type = web_exposition(request.headers.get("Accept"))
    response = HttpResponse(body, content_type=content_type)
    response["Cache-Control"] = "no-store"
    return response


def check_name(check: object) -> str:
    """A check's name in the answer: its `name`, or its class name in lower case (django-health-check's own)."""
    return getattr(check, "name", None) or type(check).__name__.lower()


@csrf_exempt  # a POST to an unknown API path is a JSON 404, not the CSRF failure page (found by schemathesis)
def api_not_found(request: HttpRequest, *args, **kwargs) -> JsonResponse:
    return json_error(404, "not_found", f"No API resource at {request.path}.")


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: the API answers JSON even when it fails; the admin keeps Django's page."""
    if is_api_path(request.path):
        return json_error(500, "server_error", "The server failed to handle this request; it has been logged.")
    return defaults.server_error(request)


class JsonMethodNotAllowedMixin:
    """A wrong method is a JSON 405 here too, not the page's own renderer (YAML for the schema, HTML for docs)."""

    def http_method_not_allowed(self, request, *args, **kwargs) -> JsonResponse:
        return json_error(405, "method_not_allowed", f'Method "{request.method}" not allowed.')


# djangorestframework-stubs type APIView.http_method_not_allowed as answering a Response; DRF takes any
# HttpResponse from a handler, and this one is a JsonResponse.
class SchemaView(JsonMethodNotAllowedMixin, SpectacularAPIView):  # type: ignore[misc]
    pass


class DocsView(JsonMethodNotAllowedMixin, SpectacularSwaggerView):  # type: ignore[misc]
    pass

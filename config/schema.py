"""The OpenAPI document tells the truth about errors and authentication.

Every operation declares the error answers it can give (the one error body, {"code", "message", "details"}),
and the bearer scheme, so that Swagger UI's "Authorize" button works and a client generated from the
schema, or a fuzzer reading it, knows every status it may meet.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular import openapi
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import Direction
from rest_framework import serializers
from rest_framework.permissions import SAFE_METHODS

ERROR_DESCRIPTIONS = {
    400: "The request is invalid; `details` names each field that failed.",
    401: "No token, or a token that is malformed, unknown or revoked.",
    403: "The token's role may not do this.",
    404: "Nothing is here, or nothing this token may see.",
    409: "The request conflicts with the current state.",
    413: "The request body is larger than 256 KiB.",
    421: "Not served here: waits are served by the ASGI server (config/asgi.py), not by the WSGI one.",
    422: "The request is well-formed but cannot be carried out.",
    429: "Too many orders from this token; retry after `Retry-After` seconds.",
}
HEADERS = {
    401: {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "The scheme to use: Bearer."}},
    429: {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait before retrying."}},
}
BODY_METHODS = {"POST", "PUT", "PATCH"}


class ErrorOutputSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="A stable, machine-readable code, e.g. `order_not_found`.")
    message = serializers.CharField(help_text="What went wrong, in words.")
    details = serializers.JSONField(help_text="More about it: the fields that failed, the ids involved.")


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "config.access.auth.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API token from `manage.py create_api_token --role operator|customer "
            "[--customer-id ID]`, sent as `Authorization: Bearer <token>`.",
        }


class AutoSchema(openapi.AutoSchema):
    """drf-spectacular's AutoSchema, plus the error answers of each operation.

    A view adds the domain errors of its methods with `error_statuses = {"POST": (409, 422)}`; the rest
    follow from the view: 401 when it needs a token, 403 when a role may be refused, 400 and 413 when it reads
    a body, 400 when it pages a list (its query parameters), 404 when its path has a parameter or it pages a
    list.
    """

    def _get_response_bodies(self, direction: Direction = "response") -> dict[str, Any]:
        responses = super()._get_response_bodies(direction)
        error = self.resolve_serializer(ErrorOutputSerializer, "response").ref
        for status in sorted(self.error_statuses()):
            response = {"content": {"application/json": {"schema": error}}, "description": ERROR_DESCRIPTIONS[status]}
            if status in HEADERS:
                response["headers"] = HEADERS[status]
            responses.setdefault(str(status), response)
        return responses

    def _map_serializer_field(self, field: Any, direction: str, bypass_extensions: bool = False) -> dict[str, Any]:
        """A list of nested objects keeps its length limits (an order's 1 to 100 lines), which drf-spectacular
        drops for a ListSerializer."""
        schema = super()._map_serializer_field(field, direction, bypass_extensions)
        if isinstance(field, serializers.ListSerializer) and schema.get("type") == "array":
            # djangorestframework-stubs declare ListSerializer's max_length and min_length arguments only, not
            # the attributes that keep them.
            max_length: int | None = field.max_length  # type: ignore[attr-defined]
            min_length: int | None = field.min_length  # type: ignore[attr-defined]
            if max_length is not None:
                schema["maxItems"] = max_length
            if min_length is not None or not field.allow_empty:
                schema["minItems"] = max(min_length or 0, 0 if field.allow_empty else 1)
        return schema

    def error_statuses(self) -> set[int]:
        from config.access.auth import IsApiClient, IsOperator, IsOperatorToWrite

        statuses = set(getattr(self.view, "error_statuses", {}).get(self.method, ()))
        permissions = self.view.get_permissions()
        if any(isinstance(p, (IsApiClient, IsOperator, IsOperatorToWrite)) for p in permissions):
            statuses.add(401)
        if any(
            isinstance(p, IsOperator) or (isinstance(p, IsOperatorToWrite) and self.method not in SAFE_METHODS)
            for p in permissions
        ):
            statuses.add(403)
        if self.method in BODY_METHODS:
            statuses |= {400, 413}
        paged = self._is_list_view() and self._get_paginator()
        if paged:
            statuses.add(400)  # its query parameters: one holding a NUL is refused before any view (middleware)
        if "{" in self.path or paged:
            statuses.add(404)
        return statuses

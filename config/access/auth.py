"""Who is calling the API: bearer tokens (DRF authentication), roles (permissions), and per-token throttles.

A request carries `Authorization: Bearer <token>`. The token's record gives a role: an operator may do
everything; a customer is confined to its own customer_id, and everything of another customer is answered
as if it did not exist (404), so that ids cannot be probed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any, ClassVar

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from config.access.models import ApiToken
from config.access.services import api_token_authenticate, rate_limit_take
from config.kernel.rates import parse_rate

MAX_TOKEN_LENGTH = 200


@dataclass(frozen=True)
class ApiClient:
    """`request.user` of an authenticated API request."""

    token_id: int
    role: str
    customer_id: str | None
    throttle_key: str
    is_authenticated: ClassVar[bool] = True

    @property
    def is_operator(self) -> bool:
        return self.role == ApiToken.Role.OPERATOR

    @property
    def actor(self) -> str:
        """How the audit log names this client."""
        who = "operator" if self.is_operator else f"customer {self.customer_id}"
        return f"api-token:{self.token_id} ({who})"

    def __str__(self) -> str:
        return self.actor


class BearerTokenAuthentication(BaseAuthentication):
    """`Authorization: Bearer <token>`. No header: not authenticated (401 once a permission asks). A bearer
    header with a token that is malformed, unknown or revoked: 401 at once."""

    keyword = b"bearer"

    def authenticate(self, request: Request | HttpRequest) -> tuple[ApiClient, ApiToken] | None:
        # A plain HttpRequest too (requires_operator_token): DRF reads the header from request.META, which both
        # have, though its stubs take a Request only.
        parts = get_authorization_header(request).split()  # type: ignore[arg-type]
        if not parts or parts[0].lower() != self.keyword:
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed("The Authorization header must be `Bearer <token>`.")
        try:
            token = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("The token is not valid or has been revoked.") from None
        record = api_token_authenticate(token=token) if len(token) <= MAX_TOKEN_LENGTH else None
        if record is None:
            raise exceptions.AuthenticationFailed("The token is not valid or has been revoked.")
        client = ApiClient(
            token_id=record.pk, role=record.role, customer_id=record.customer_id, throttle_key=record.key_hash[:32]
        )
        return client, record

    def authenticate_header(self, request: Request | HttpRequest) -> str:
        return 'Bearer realm="sagaflow"'


def client_of(request: Request) -> ApiClient:
    client = request.user
    if not isinstance(client, ApiClient):  # a view without IsApiClient would be a bug, not a client error
        raise exceptions.NotAuthenticated()
    return client


def customer_scope(request: Request) -> str | None:
    """The customer_id this request is confined to: a customer token's own, or None for an operator."""
    client = client_of(request)
    return None if client.is_operator else client.customer_id


def may_see(request: Request, customer_id: str) -> bool:
    """Whether the caller may see the data of `customer_id`. When it may not, answer 404, not 403."""
    scope = customer_scope(request)
    return scope is None or scope == customer_id


class IsApiClient(BasePermission):
    """Any valid token. Without one, DRF answers 401 (the authenticator has a WWW-Authenticate header)."""

    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.user, ApiClient)


class IsOperator(BasePermission):
    message = "This needs an operator token."

    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.user, ApiClient) and request.user.is_operator


class IsOperatorToWrite(BasePermission):
    """Any token may read; only an operator may write (the catalogue)."""

    message = "Only an operator token may change this."

    def has_permission(self, request: Request, view: Any) -> bool:
        if not isinstance(request.user, ApiClient):
            return False
        return request.method in SAFE_METHODS or request.user.is_operator


class OrderCreateThrottle(BaseThrottle):
    """Order creation per token: API_CUSTOMER_ORDER_RATE or API_OPERATOR_ORDER_RATE (None: unlimited).

    The rates are read at each request, so that a settings change (or a test) takes effect at once. The
    count lives in the database (`rate_limit_take`, one atomic statement), so every web process and host
    shares it and a burst from one token never passes more than the rate.
    """

    def __init__(self) -> None:
        self.wait_s: float | None = None

    def allow_request(self, request: Request, view: Any) -> bool:
        client = request.user
        if not isinstance(client, ApiClient):
            return True
        rate = settings.API_OPERATOR_ORDER_RATE if client.is_operator else settings.API_CUSTOMER_ORDER_RATE
        if rate is None or rate == "off":
            return True
        count, period_s = parse_rate(rate)
        self.wait_s = rate_limit_take(key=f"order_create:{client.throttle_key}", count=count, period_s=period_s)
        return self.wait_s == 0.0

    def wait(self) -> float | None:
        return self.wait_s


def requires_operator_token(setting: str) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """For a plain Django view outside the API (/metrics): when settings.<setting> is true, it needs an operator
    bearer token, answered as the API answers (401 with WWW-Authenticate, 403 for a customer token)."""

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            from config.kernel.api import (
                json_error,  # not at the top: DRF imports this module while config.kernel.api imports DRF
            )

            if getattr(settings, setting):
                authenticator = BearerTokenAuthentication()
                code, problem = "not_authenticated", "Authentication credentials were not provided."
                try:
                    authenticated = authenticator.authenticate(request)
                except exceptions.AuthenticationFailed as error:
                    authenticated, code, problem = None, "authentication_failed", str(error.detail)
                if authenticated is None:
                    response = json_error(401, code, problem)
                    response["WWW-Authenticate"] = authenticator.authenticate_header(request)
                    return response
                if not authenticated[0].is_operator:
                    return json_error(403, "permission_denied", "This needs an operator token.")
            return view(request, *args, **kwargs)

        return guarded

    return decorate

"""Orders over HTTP: place, read, wait for the end of, list and cancel."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import datetime, tzinfo
from decimal import Decimal
from typing import Any, cast

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.access.auth import OrderCreateThrottle, client_of, customer_scope, may_see
from config.kernel.api import (
    IDENTIFIER,
    NUL,
    NUL_REFUSED,
    Pagination,
    StrictCharField,
    StrictIntegerField,
    json_answer,
    json_error,
    json_text,
    paginated,
    represented,
    validated,
)
from config.kernel.errors import DomainError, NotFoundError
from orders.models import Order
from orders.selectors import OrderView, order_list, order_view
from orders.services import order_create
from orders.waiting import end_watch, in_pool
from saga.selectors import saga_state_and_history
from saga.services import saga_cancel

MAX_QUANTITY = 1_000_000
WAIT_DEFAULT_S = 30
WAIT_MAX_S = 60
# The column declares a max_length; its type says int | None, since a CharField may have none.
IDEMPOTENCY_KEY_MAX_LENGTH = cast(int, Order._meta.get_field("idempotency_key").max_length)


class OrderNotFoundError(NotFoundError):
    code = "order_not_found"


class CustomerMismatchError(DomainError):
    code = "customer_mismatch"
    http_status = 403


class OrderLineInputSerializer(serializers.Serializer):
    sku = StrictCharField(**IDENTIFIER)
    quantity = StrictIntegerField(min_value=1, max_value=MAX_QUANTITY)


class OrderCreateInputSerializer(serializers.Serializer):
    # Required for an operator token; a customer token may leave it out (it is the token's own).
    customer_id = StrictCharField(required=False, **IDENTIFIER)
    # DRF passes max_length on to the ListSerializer that many=True builds; djangorestframework-stubs leave it out.
    items = OrderLineInputSerializer(many=True, allow_empty=False, max_length=settings.MAX_ORDER_LINES)  # type: ignore[call-arg]

    def __init__(self, *args: Any, customer_required: bool = False, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.fields["customer_id"].required = customer_required

    def validate_items(self, items: list[dict]) -> list[dict]:
        skus = [line["sku"] for line in items]
        repeated = sorted({sku for sku in skus if skus.count(sku) > 1})
        if repeated:
            raise serializers.ValidationError(f"each sku may appear once; repeated: {', '.join(repeated)}")
        return items


def plain_identifier(value: Any) -> bool:
    """A string every IDENTIFIER field accepts as it is: 1 to 64 characters, ASCII, no NUL."""
    return type(value) is str and 0 < len(value) <= 64 and value.isascii() and NUL not in value


def order_input(data: Any, *, customer_required: bool) -> dict[str, Any]:
    """What OrderCreateInputSerializer validates `data` to. A body that is plainly valid (the one clients
    send) is taken as it is, at a tenth of the serializer's CPU; any other goes through the serializer, which
    answers the errors. tests/api/test_order_reads.py holds the two to the same result."""
    if type(data) is dict:
        customer_id, items = data.get("customer_id"), data.get("items")
        plain_customer = plain_identifier(customer_id) or (customer_id is None and "customer_id" not in data)
        if (
            plain_customer
            and not (customer_required and customer_id is None)
            and type(items) is list
            and 0 < len(items) <= settings.MAX_ORDER_LINES
            and all(
                type(line) is dict
                and plain_identifier(line.get("sku"))
                and type(line.get("quantity")) is int
                and 1 <= line["quantity"] <= MAX_QUANTITY
                for line in items
            )
            and len({line["sku"] for line in items}) == len(items)
        ):
            taken: dict[str, Any] = {} if customer_id is None else {"customer_id": customer_id}
            taken["items"] = [{"sku": line["sku"], "quantity": line["quantity"]} for line in items]
            return taken
    return validated(OrderCreateInputSerializer, data, customer_required=customer_required)


class OrderLineOutputSerializer(serializers.Serializer):
    sku = serializers.CharField()
    quantity = serializers.IntegerField()
    unit_price = serializers.DecimalField(max_digits=12, decimal_places=2)


class SagaStepOutputSerializer(serializers.Serializer):
    from_state = serializers.CharField(allow_null=True)
    to_state = serializers.CharField()
    message_type = serializers.CharField()
    message_id = serializers.CharField(allow_null=True)
    at = serializers.DateTimeField()


class SagaOutputSerializer(serializers.Serializer):
    state = serializers.CharField()
    history = SagaStepOutputSerializer(many=True)


class OrderOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=Order.Status.choices)
    customer_id = serializers.CharField()
    items = OrderLineOutputSerializer(many=True, source="lines.all")
    total = serializers.DecimalField(max_digits=14, decimal_places=2)
    currency = serializers.CharField()
    failure_reason = serializers.CharField(allow_null=True)
    failure_detail = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    def to_representation(self, order: Order) -> dict:
        data = super().to_representation(order)
        data["failure_reason"] = order.failure_reason or None
        data["failure_detail"] = order.failure_detail or None
        return data


class OrderDetailOutputSerializer(OrderOutputSerializer):
    saga = serializers.SerializerMethodField()

    @extend_schema_field(SagaOutputSerializer(allow_null=True))
    def get_saga(self, order: Order) -> dict | None:
        found = saga_state_and_history(order_id=str(order.id))
        return None if found is None else saga_body(*found)


CENT = Decimal("0.01")


def money(value: Decimal) -> str:
    """As the output serializers' DecimalField (two places, as a string) represents an amount."""
    return f"{value.quantize(CENT):f}"


def moment(value: datetime, zone: tzinfo | None = None) -> str:
    """As DRF's DateTimeField represents a time: ISO 8601 in the current time zone (`zone`, when the caller has
    looked it up already), UTC written as Z."""
    text = timezone.localtime(value, zone).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def order_body(view: OrderView) -> dict[str, Any]:
    """What OrderDetailOutputSerializer gives for the order (the schema's description of the answer), built
    from plain values: a serializer walks its fields at about ten times this cost, and the status read is the
    API's most frequent request. tests/api/test_order_reads.py holds the two to the same answer."""
    zone = timezone.get_current_timezone()  # once, not for each time the answer shows
    history = [
        {
            "from_state": from_state or None,
            "to_state": to_state,
            "message_type": message_type,
            "message_id": message_id or None,
            "at": moment(at, zone),
        }
        for from_state, to_state, message_type, message_id, at in view.history
    ]
    return {
        "id": view.id,
        "status": str(view.status),
        "customer_id": view.customer_id,
        "items": [
            {"sku": sku, "quantity": int(quantity), "unit_price": money(unit_price)}
            for sku, quantity, unit_price in view.lines
        ],
        "total": money(view.total),
        "currency": view.currency,
        "failure_reason": view.failure_reason or None,
        "failure_detail": view.failure_detail or None,
        "created_at": moment(view.created_at, zone),
        "updated_at": moment(view.updated_at, zone),
        "saga": {"state": history[-1]["to_state"], "history": history} if history else None,
    }


def placed_view(order: Order) -> OrderView:
    """The order that `order_create` has just written, from what it wrote: nothing is read again."""
    _, steps = order.placed_saga
    return OrderView(
        id=str(order.id),
        status=order.status,
        customer_id=order.customer_id,
        total=order.total,
        currency=order.currency,
        failure_reason=order.failure_reason,
        failure_detail=order.failure_detail,
        created_at=order.created_at,
        updated_at=order.updated_at,
        lines=[(line.sku, line.quantity, line.unit_price) for line in order.placed_lines],
        history=[(s.from_state, s.to_state, s.message_type, s.message_id, s.at) for s in steps],
    )


def placed_answer(order: Order) -> str:
    """The JSON of the answer to the POST that placed `order`, as it is sent and as a replay sends it again."""
    return json_text(order_body(placed_view(order)))


def current_body(order_id: str) -> dict[str, Any]:
    found = order_view(order_id=order_id)
    if found is None:
        raise OrderNotFoundError(f"no order {order_id}", {"order_id": order_id})
    return order_body(found)


def first_answer(order: Order) -> HttpResponse:
    """The answer to a request with an Idempotency-Key: the first answer given under that key, byte for byte.
    An order placed by an older version may have kept only its content, or nothing: then that, or the order
    as it is now."""
    if order.first_answer_text is not None:
        return json_answer(order.first_answer_text, status.HTTP_201_CREATED)
    body = order.first_answer or current_body(str(order.id))
    return Response(body, status=status.HTTP_201_CREATED)


def saga_body(state: str, steps: list) -> dict:
    history = [
        {
            "from_state": step.from_state or None,
            "to_state": step.to_state,
            "message_type": step.message_type,
            "message_id": step.message_id or None,
            "at": step.at,
        }
        for step in steps
    ]
    return represented(SagaOutputSerializer, {"state": state, "history": history})


class OrderListFilterSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=Order.Status.choices, required=False)
    customer_id = serializers.CharField(required=False, **IDENTIFIER)


def idempotency_key(request: Request) -> str | None:
    """The optional Idempotency-Key header; one that the column cannot hold (too long, or with a NUL) is a 400,
    not a database error."""
    key = request.headers.get("Idempotency-Key") or None
    if key is not None and len(key) > IDEMPOTENCY_KEY_MAX_LENGTH:
        raise serializers.ValidationError(
            {"Idempotency-Key": [f"Ensure this header has no more than {IDEMPOTENCY_KEY_MAX_LENGTH} characters."]}
        )
    if key is not None and NUL in key:
        raise serializers.ValidationError({"Idempotency-Key": [NUL_REFUSED]})
    return key


def order_visible(request: Request, order_id) -> OrderView:
    """The order, if this token may see it; another customer's order is answered as a missing one."""
    order = order_view(order_id=str(order_id))
    if order is None or not may_see(request, order.customer_id):
        raise OrderNotFoundError(f"no order {order_id}", {"order_id": str(order_id)})
    return order


def ordering_customer(request: Request, data: dict) -> str:
    """Whom the order is for: the body's customer_id for an operator (required by the serializer then); the
    token's own for a customer, whose body may name it or leave it out, and may name no other."""
    scope = customer_scope(request)
    given = data.get("customer_id")
    if scope is None:
        assert given is not None, "an operator's order names its customer (the serializer requires it)"
        return given
    if given is not None and given != scope:
        raise CustomerMismatchError(
            "a customer token may place orders for its own customer only", {"customer_id": given}
        )
    return scope


class OrderListCreateApi(APIView):
    pagination_class = Pagination
    error_statuses = {"GET": (400,), "POST": (403, 409, 422, 429)}

    def get_throttles(self):
        return [OrderCreateThrottle()] if self.request.method == "POST" else []

    @extend_schema(
        operation_id="orders_list", parameters=[OrderListFilterSerializer], responses=OrderOutputSerializer(many=True)
    )
    def get(self, request: Request) -> Response:
        filters = validated(OrderListFilterSerializer, request.query_params)
        scope = customer_scope(request)
        if scope is not None:
            if filters.get("customer_id", scope) != scope:
                return paginated(self, request, order_list(**filters).none(), OrderOutputSerializer)
            filters["customer_id"] = scope
        return paginated(self, request, order_list(**filters), OrderOutputSerializer)

    @extend_schema(
        operation_id="orders_create",
        request=OrderCreateInputSerializer,
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                str,
                OpenApiParameter.HEADER,
                required=False,
                description="Replays with the same key and body return the first order.",
            )
        ],
        responses={201: OrderDetailOutputSerializer},
    )
    def post(self, request: Request) -> HttpResponse:
        key = idempotency_key(request)
        data = order_input(request.data, customer_required=customer_scope(request) is None)
        customer_id = ordering_customer(request, data)
        order, created = order_create(
            customer_id=customer_id, items=data["items"], idempotency_key=key, answer=placed_answer
        )
        if created and key is None:
            return json_answer(placed_answer(order), status.HTTP_201_CREATED)
        return first_answer(order)


def detail_answer(request: Request, order_id) -> HttpResponse:
    # Rendered here as a Response would render it, without a Response's own machinery (the API's most frequent
    # request): the same bytes and headers.
    body = order_body(order_visible(request, order_id))
    return json_answer(json_text(body, request.accepted_media_type), status.HTTP_200_OK)


class OrderDetailApi(APIView):
    @extend_schema(operation_id="orders_get", responses=OrderDetailOutputSerializer)
    def get(self, request: Request, order_id) -> HttpResponse:
        return detail_answer(request, order_id)


class OrderWaitFilterSerializer(serializers.Serializer):
    timeout = serializers.IntegerField(
        min_value=0,
        max_value=WAIT_MAX_S,
        default=WAIT_DEFAULT_S,
        help_text="Seconds to wait at most; the order is answered as it is then, PENDING still, if it has not ended.",
    )


def wait_seconds(query: Any) -> int:
    return validated(OrderWaitFilterSerializer, query)["timeout"]


def misdirected() -> HttpResponse:
    return json_error(
        status.HTTP_421_MISDIRECTED_REQUEST,
        "wait_needs_asgi",
        "Waits are served by the ASGI server (uvicorn config.asgi:application), where a waiting request holds no "
        "thread. Ask it, or read GET /api/orders/{id} here.",
    )


def ended_answer(answer: HttpResponse) -> bool:
    """Whether `answer` is not an order still running: an error, or an order that has ended."""
    return answer.status_code != status.HTTP_200_OK or json.loads(answer.content)["status"] != Order.Status.PENDING


class OrderWaitApi(APIView):
    """GET /api/orders/{id}/wait: the order as GET /api/orders/{id} answers it, once it has ended or when
    `timeout` seconds have passed, whichever comes first: a client learns the outcome in one request.

    Served by the ASGI server (config/asgi.py), where a wait is a coroutine and holds no thread. The WSGI server
    answers 421: there a wait would hold one of its few threads. The route's view is the coroutine that
    `as_view` returns; this class's `get` is the read before and after the wait (the detail read's
    authentication, visibility and answer), and what the schema describes."""

    error_statuses = {"GET": (400, 421)}

    @extend_schema(
        operation_id="orders_wait", parameters=[OrderWaitFilterSerializer], responses=OrderDetailOutputSerializer
    )
    def get(self, request: Request, order_id) -> HttpResponse:
        wait_seconds(request.query_params)
        return detail_answer(request, order_id)

    @classmethod
    def as_view(cls, **initkwargs: Any) -> Callable[..., Any]:  # type: ignore[override]  # a coroutine function
        view = super().as_view(**initkwargs)
        read = in_pool(view)

        async def wait(request: HttpRequest, order_id: uuid.UUID) -> HttpResponse:
            if not isinstance(request, ASGIRequest):
                # Under WSGI, on the request's own thread: what the read refuses (no token, say) it refuses first.
                answer = await sync_to_async(view)(request, order_id=order_id)
                return answer if answer.status_code != status.HTTP_200_OK else misdirected()
            answer = await read(request, order_id=order_id)
            if ended_answer(answer):
                return answer
            if not await end_watch().ended(str(order_id), wait_seconds(request.GET)):
                return answer
            return await read(request, order_id=order_id)

        # What drf-spectacular reads the operation from, as it would from the view DRF's as_view returns.
        wait.cls = cls  # type: ignore[attr-defined]
        wait.initkwargs = initkwargs  # type: ignore[attr-defined]
        return wait


class OrderCancelApi(APIView):
    error_statuses = {"POST": (409,)}

    @extend_schema(operation_id="orders_cancel", request=None, responses={202: OrderDetailOutputSerializer})
    def post(self, request: Request, order_id) -> Response:
        order_visible(request, order_id)
        saga_cancel(order_id=str(order_id), by=client_of(request).actor)
        return Response(current_body(str(order_id)), status=status.HTTP_202_ACCEPTED)

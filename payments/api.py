"""Accounts and payments over HTTP."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.access.auth import IsOperator, customer_scope, may_see
from config.kernel.api import IDENTIFIER, MoneyField, Pagination, StrictCharField, paginated, represented, validated
from config.kernel.errors import NotFoundError
from payments.selectors import account_get, payment_list
from payments.services import account_create


class AccountNotFoundError(NotFoundError):
    code = "account_not_found"


class AccountCreateInputSerializer(serializers.Serializer):
    customer_id = StrictCharField(**IDENTIFIER)
    balance = MoneyField(max_digits=14, min_value=0)


class AccountOutputSerializer(serializers.Serializer):
    customer_id = serializers.CharField()
    balance = serializers.DecimalField(max_digits=14, decimal_places=2)


class PaymentOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    order_id = serializers.UUIDField()
    customer_id = serializers.CharField()
    amount = serializers.DecimalField(max_digits=14, decimal_places=2)
    status = serializers.CharField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class PaymentListFilterSerializer(serializers.Serializer):
    order_id = serializers.UUIDField(required=False)
    customer_id = serializers.CharField(required=False, **IDENTIFIER)


class AccountCreateApi(APIView):
    permission_classes = [IsOperator]
    error_statuses = {"POST": (409,)}

    @extend_schema(
        operation_id="accounts_create", request=AccountCreateInputSerializer, responses={201: AccountOutputSerializer}
    )
    def post(self, request: Request) -> Response:
        account = account_create(**validated(AccountCreateInputSerializer, request.data))
        return Response(represented(AccountOutputSerializer, account), status=status.HTTP_201_CREATED)


class AccountDetailApi(APIView):
    @extend_schema(operation_id="accounts_get", responses=AccountOutputSerializer)
    def get(self, request: Request, customer_id: str) -> Response:
        account = account_get(customer_id=customer_id) if may_see(request, customer_id) else None
        if account is None:
            raise AccountNotFoundError(f"no account for customer {customer_id!r}", {"customer_id": customer_id})
        return Response(represented(AccountOutputSerializer, account))


class PaymentListApi(APIView):
    pagination_class = Pagination
    error_statuses = {"GET": (400,)}

    @extend_schema(
        operation_id="payments_list",
        parameters=[PaymentListFilterSerializer],
        responses=PaymentOutputSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        filters = validated(PaymentListFilterSerializer, request.query_params)
        order_id = str(filters["order_id"]) if "order_id" in filters else None
        customer_id, scope = filters.get("customer_id"), customer_scope(request)
        payments = payment_list(order_id=order_id, customer_id=scope or customer_id)
        if scope is not None and customer_id not in (None, scope):
            payments = payments.none()
        return paginated(self, request, payments, PaymentOutputSerializer)

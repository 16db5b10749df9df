"""The catalogue over HTTP: products with their stock."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.access.auth import IsOperatorToWrite
from config.kernel.api import (
    IDENTIFIER,
    MoneyField,
    Pagination,
    StrictCharField,
    StrictIntegerField,
    paginated,
    represented,
    validated,
)
from inventory.selectors import product_get, product_list
from inventory.services import ProductNotFoundError, product_create, product_restock

MAX_STOCK = 1_000_000_000


class ProductCreateInputSerializer(serializers.Serializer):
    sku = StrictCharField(**IDENTIFIER)
    name = StrictCharField(min_length=1, max_length=200)
    price = MoneyField(max_digits=12, min_value=0)
    stock = StrictIntegerField(min_value=0, max_value=MAX_STOCK)


class ProductRestockInputSerializer(serializers.Serializer):
    quantity = StrictIntegerField(min_value=1, max_value=MAX_STOCK)


class ProductOutputSerializer(serializers.Serializer):
    sku = serializers.CharField()
    name = serializers.CharField()
    price = serializers.DecimalField(max_digits=12, decimal_places=2)
    on_hand = serializers.IntegerField()
    reserved = serializers.IntegerField()
    available = serializers.IntegerField()


class ProductListCreateApi(APIView):
    permission_classes = [IsOperatorToWrite]
    pagination_class = Pagination
    error_statuses = {"POST": (409,)}

    @extend_schema(operation_id="products_list", responses=ProductOutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        return paginated(self, request, product_list(), ProductOutputSerializer)

    @extend_schema(
        operation_id="products_create", request=ProductCreateInputSerializer, responses={201: ProductOutputSerializer}
    )
    def post(self, request: Request) -> Response:
        data = validated(ProductCreateInputSerializer, request.data)
        product = product_create(**data)
        return Response(represented(ProductOutputSerializer, product), status=status.HTTP_201_CREATED)


class ProductDetailApi(APIView):
    @extend_schema(operation_id="products_get", responses=ProductOutputSerializer)
    def get(self, request: Request, sku: str) -> Response:
        product = product_get(sku=sku)
        if product is None:
            raise ProductNotFoundError(f"no product with sku {sku!r}", {"sku": sku})
        return Response(represented(ProductOutputSerializer, product))


class ProductRestockApi(APIView):
    permission_classes = [IsOperatorToWrite]
    error_statuses = {"POST": (409,)}

    @extend_schema(
        operation_id="products_restock", request=ProductRestockInputSerializer, responses=ProductOutputSerializer
    )
    def post(self, request: Request, sku: str) -> Response:
        data = validated(ProductRestockInputSerializer, request.data)
        return Response(represented(ProductOutputSerializer, product_restock(sku=sku, **data)))

from django.contrib import admin
from django.templatetags.static import static
from django.urls import path, re_path, register_converter
from django.views.generic import RedirectView

from config.contracts import AsyncApiView, MessageSchemaView, MessagesPageView
from config.overview import overview_index
from config.views import DocsView, HealthView, ReadinessView, SchemaView, api_not_found, liveness, metrics
from inventory.api import ProductDetailApi, ProductListCreateApi, ProductRestockApi
from orders.api import OrderCancelApi, OrderDetailApi, OrderListCreateApi, OrderWaitApi
from payments.api import AccountCreateApi, AccountDetailApi, PaymentListApi

# A sku or customer_id is any string of 1 to 64 characters (DESIGN §5), "/" included, so that whatever could be
# created can be addressed. The restock route comes first: it claims a path ending in "/restock".
# Django's own `path` converter stops at a newline, and so a customer_id or sku holding one could be created but
# not read back (found by schemathesis): `text` takes every character.


class TextConverter:
    regex = r"[\s\S]+"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(TextConverter, "text")
SKU = "<text:sku>"
CUSTOMER = "<text:customer_id>"

api = [
    path("products", ProductListCreateApi.as_view(), name="products"),
    path(f"products/{SKU}/restock", ProductRestockApi.as_view(), name="product-restock"),
    path(f"products/{SKU}", ProductDetailApi.as_view(), name="product"),
    path("accounts", AccountCreateApi.as_view(), name="accounts"),
    path(f"accounts/{CUSTOMER}", AccountDetailApi.as_view(), name="account"),
    path("orders", OrderListCreateApi.as_view(), name="orders"),
    path("orders/<uuid:order_id>", OrderDetailApi.as_view(), name="order"),
    path("orders/<uuid:order_id>/wait", OrderWaitApi.as_view(), name="order-wait"),
    path("orders/<uuid:order_id>/cancel", OrderCancelApi.as_view(), name="order-cancel"),
    path("payments", PaymentListApi.as_view(), name="payments"),
    path("schema", SchemaView.as_view(), name="schema"),
    path("docs", DocsView.as_view(url_name="schema"), name="docs"),
    path("messages", MessagesPageView.as_view(), name="messages"),
    path("messages/schema", MessageSchemaView.as_view(), name="message-schema"),
    path("asyncapi", AsyncApiView.as_view(), name="asyncapi"),
]

urlpatterns = [
    # Django's path() takes name=None, its stubs a str only (every route of `api` has a name).
    *[path(f"api/{route.pattern}", route.callback, name=route.name) for route in api],  # type: ignore[arg-type]
    re_path(r"^api(?:/[\s\S]*)?\Z", api_not_found),
    path("health", HealthView.as_view(), name="health"),
    path("health/live", liveness, name="health-live"),
    path("health/ready", ReadinessView.as_view(), name="health-ready"),
    path("metrics", metrics, name="metrics"),
    # Browsers ask every site for one; the admin's pages name none, so without it each page logs a 404.
    path("favicon.ico", RedirectView.as_view(url=static("config/favicon.svg")), name="favicon"),
    # The admin's index, with the operations overview on top; every other admin page is the admin's own.
    path("admin/", admin.site.admin_view(overview_index), name="overview"),
    path("admin/", admin.site.urls),
]

handler500 = "config.views.server_error"

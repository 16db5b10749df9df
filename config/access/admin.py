"""API tokens and the audit log in the admin: looked at, and tokens revoked, but never edited by hand.

Tokens are issued with `manage.py create_api_token`, which shows the token once; the admin could not show it.
"""

from django.contrib import admin, messages

from config.access.models import ApiToken, AuditEntry
from config.access.services import api_token_revoke
from config.kernel.admin_mixins import ReadOnlyAdmin


@admin.register(ApiToken)
class ApiTokenAdmin(ReadOnlyAdmin):
    list_display = ["id", "prefix", "role", "customer_id", "label", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["role", ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["prefix", "customer_id", "label"]
    exclude = ["key_hash"]
    actions = ["revoke"]

    def has_revoke_permission(self, request) -> bool:
        """Revoking cuts a client off, so viewing the tokens is not enough; the admin never edits a token, but
        the change permission is what says who may act on them."""
        return request.user.has_perm("config.change_apitoken")

    @admin.action(description="Revoke the selected tokens", permissions=["revoke"])
    def revoke(self, request, queryset):
        for token in queryset.filter(revoked_at__isnull=True):
            api_token_revoke(token_id=token.pk, by=f"admin:{request.user.get_username()}")
        self.message_user(request, "revoked the selected tokens", level=messages.SUCCESS)


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    list_display = ["at", "actor", "action", "target"]
    list_filter = ["action"]
    search_fields = ["actor", "target"]
    date_hierarchy = "at"

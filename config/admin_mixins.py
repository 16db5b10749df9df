"""What every admin page of the product shares."""

from django.contrib import admin


class ReadOnlyAdminMixin:
    """A page to look at, never to edit by hand: every change of state goes through a service, at most as an
    admin action, so that no edit can break an invariant."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ReadOnlyAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    pass

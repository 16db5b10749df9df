from django.apps import AppConfig


class ConfigConfig(AppConfig):
    """The project's own app: API tokens and the audit log, which belong to no bounded context."""

    name = "config"
    verbose_name = "API access and audit"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers the OpenAPI extension that declares the bearer scheme (drf-spectacular finds it by import).
        from config import schema  # noqa: F401

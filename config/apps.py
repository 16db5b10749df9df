from django.apps import AppConfig


class WiringConfig(AppConfig):
    """The wiring on top of every app: settings, URLs, Celery, the project's own views and documents. Installed
    only for what Django finds through an app: the messages page's template and static files, and the
    `contracts` and `saga_audit` commands. It has no models."""

    name = "config"
    label = "sagaflow"
    verbose_name = "sagaflow"

    def ready(self) -> None:
        # Registers the OpenAPI extension that declares the bearer scheme (drf-spectacular finds it by import).
        from config import schema  # noqa: F401

from django.apps import AppConfig


class SagaConfig(AppConfig):
    name = "saga"
    default_auto_field = "django.db.models.BigAutoField"

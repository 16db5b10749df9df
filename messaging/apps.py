from django.apps import AppConfig


class MessagingConfig(AppConfig):
    name = "messaging"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from messaging import catalogue, wire

        # Before any broker connection: a property that is not UTF-8 must not crash a consumer (see wire.py).
        wire.install()
        # The message types the installed apps add, now that they are all loaded.
        catalogue.discover()

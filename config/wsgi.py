import os

from django.core.wsgi import get_wsgi_application

from config import tracing

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

# Before the application is built: the Django instrumentation adds its middleware (OTEL_TRACES_EXPORTER).
tracing.setup("web")

application = get_wsgi_application()


def _start_embedded_dispatcher() -> None:
    from django.conf import settings

    if settings.MESSAGING_TRANSPORT == "inprocess" and settings.MESSAGING_INPROCESS_AUTOSTART:
        from messaging import inprocess

        inprocess.start()


_start_embedded_dispatcher()

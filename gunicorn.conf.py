"""gunicorn reads this file from its working directory: its own lines (start, workers, errors) are written as
the application's are, JSON or text per LOG_FORMAT, instead of in gunicorn's own format."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from config.settings import LOGGING  # noqa: E402 - plain settings values; Django is not set up here

logconfig_dict = {
    **LOGGING,
    "loggers": {
        **LOGGING["loggers"],
        "gunicorn.error": {"level": "INFO", "handlers": ["console"], "propagate": False},
        "gunicorn.access": {"level": "INFO", "handlers": ["console"], "propagate": False},
    },
}

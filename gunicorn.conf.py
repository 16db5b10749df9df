"""gunicorn reads this file from its working directory, however the web is started (the Docker image, `make run`,
by hand). Flags on the command line win over it.

Its own lines (start, workers, errors) are written as the application's are, JSON or text per LOG_FORMAT,
instead of in gunicorn's own format. And it sets the process model that the benchmark measured, instead of
gunicorn's default of one process serving one request at a time.
"""

import os
import sys

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

# Plain settings values; Django is not set up here.
from config.settings import LOGGING, MESSAGING_TRANSPORT, env_number  # noqa: E402

logconfig_dict = {
    **LOGGING,
    "loggers": {
        **LOGGING["loggers"],
        "gunicorn.error": {"level": "INFO", "handlers": ["console"], "propagate": False},
        "gunicorn.access": {"level": "INFO", "handlers": ["console"], "propagate": False},
    },
}

if MESSAGING_TRANSPORT == "inprocess":
    # The embedded default's transport is a thread of the process that serves the API: a second process would
    # be a second transport delivering the same outbox.
    if int(env_number("WEB_CONCURRENCY", 1, minimum=1, cast=int)) > 1:
        sys.stderr.write(
            "WEB_CONCURRENCY is ignored in the embedded mode (no BROKER_URL): it serves from one process\n"
        )
    workers = 1
    threads = int(env_number("WEB_THREADS", 8, minimum=1, cast=int))
else:
    # Threads share a process's memory and serve while others wait on the database; each thread keeps its own
    # database connection, so an instance holds WEB_CONCURRENCY × WEB_THREADS of them.
    workers = int(env_number("WEB_CONCURRENCY", 2, minimum=1, cast=int))
    threads = int(env_number("WEB_THREADS", 4, minimum=1, cast=int))

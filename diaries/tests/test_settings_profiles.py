"""The production profile is a set of environment values; `check --deploy` must find nothing."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import ROOT

PRODUCTION_ENV = {
    "DIARY_ENV": "production",
    "SECRET_KEY": "k" * 20 + "Zq8!vN2#pL5@wR9$tY3%uI6^oP1&aS4*dF7(gH0)jK",
    "ALLOWED_HOSTS": "diary.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://diary.example.com",
    "DATABASE_URL": "postgres://diary:secret@db.internal:5432/diary?sslmode=require",
    "STORAGE_BACKEND": "s3",
    "AWS_STORAGE_BUCKET_NAME": "diary-audio",
    "CELERY_BROKER_URL": "sqs://",
    "SQS_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/diary-transcription",
}


def run_manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "SQLITE_PATH"}}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_profile_passes_check_deploy():
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION_ENV)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_production_profile_refuses_to_start_without_a_secret_key():
    env = {**PRODUCTION_ENV, "SECRET_KEY": ""}
    result = run_manage("check", env=env)
    assert result.returncode != 0 and "SECRET_KEY must be set" in result.stderr


def test_embedded_default_is_not_deploy_ready():
    # The one-machine default runs over plain HTTP; check --deploy says so, loudly.
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", env={"DIARY_ENV": "development"})
    assert result.returncode != 0 and "SECURE_SSL_REDIRECT" in result.stdout + result.stderr


def test_production_profile_settings_values():
    code = (
        "from django.conf import settings as s;"
        "print(s.SESSION_COOKIE_SECURE, s.SECURE_HSTS_SECONDS, s.STORAGES['default']['BACKEND'],"
        "s.AWS_S3_FILE_OVERWRITE, s.AWS_DEFAULT_ACL, s.AWS_S3_OBJECT_PARAMETERS['ServerSideEncryption'],"
        "s.CELERY_BROKER_TRANSPORT_OPTIONS['wait_time_seconds'],"
        "s.CELERY_BROKER_TRANSPORT_OPTIONS['visibility_timeout'],"
        "sorted(s.CELERY_BROKER_TRANSPORT_OPTIONS['predefined_queues']), s.DATABASES['default']['ENGINE'],"
        "s.CELERY_BROKER_TRANSPORT)"
    )
    result = run_manage("shell", "-c", code, env=PRODUCTION_ENV)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1].split() == [
        "True",
        "31536000",
        "storages.backends.s3.S3Storage",
        "False",
        "private",
        "aws:kms",
        "20",
        "7200",
        "['diary-transcription']",
        "django.db.backends.postgresql",
        "diary_project.broker_sqs:SQSTransport",
    ]

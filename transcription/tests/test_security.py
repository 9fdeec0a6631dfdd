"""Audio at rest and its lifetime: encryption, deletion with users and entries, retention, per-key limits."""

from __future__ import annotations

import base64
import os
from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from diaries.models import DiaryEntry
from transcription import services
from transcription.models import Recording, TranscriptionJob
from transcription.storage import CHUNK, DecryptionError, EncryptedFileSystemStorage

KEY = base64.urlsafe_b64encode(b"k" * 32).decode()


@pytest.fixture
def encrypted_storage(settings, tmp_path):
    settings.AUDIO_ENCRYPTION_KEY = KEY
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "transcription.storage.EncryptedFileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "media")},
        },
    }
    return default_storage


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 17])
def test_encryption_round_trip_at_chunk_boundaries(tmp_path, size):
    storage = EncryptedFileSystemStorage(location=str(tmp_path), key=KEY)
    data = os.urandom(size)
    name = storage.save("a/audio.bin", ContentFile(data))
    on_disk = (tmp_path / name).read_bytes()
    # The plaintext is not on disk. Only checkable from 16 bytes: a shorter random string turns up in any
    # ciphertext by chance (one byte: about one run in eight).
    assert size < 16 or data[:64] not in on_disk
    with storage.open(name) as handle:
        assert handle.read() == data


def test_tampering_truncation_and_wrong_key_are_detected(tmp_path):
    storage = EncryptedFileSystemStorage(location=str(tmp_path), key=KEY)
    name = storage.save("audio.bin", ContentFile(os.urandom(2 * CHUNK + 5)))
    path = tmp_path / name
    original = path.read_bytes()

    path.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    with pytest.raises(DecryptionError), storage.open(name) as handle:
        handle.read()
    path.write_bytes(original[: len(original) - 9])  # the last chunk is cut off
    with pytest.raises(DecryptionError), storage.open(name) as handle:
        handle.read()
    path.write_bytes(original)
    other = EncryptedFileSystemStorage(location=str(tmp_path), key=base64.urlsafe_b64encode(b"x" * 32).decode())
    with pytest.raises(DecryptionError), other.open(name) as handle:
        handle.read()


@pytest.mark.django_db
def test_encrypted_audio_is_transcribed_and_streamed_decrypted(encrypted_storage, api_client, speech_wav, settings):
    upload = SimpleUploadedFile("walk.wav", speech_wav.read_bytes(), content_type="audio/wav")
    job = services.recording_create(owner=api_client_user(api_client), uploaded_file=upload, enqueue=False)
    stored = settings.STORAGES["default"]["OPTIONS"]["location"] + "/" + job.recording.audio.name
    assert open(stored, "rb").read(8) == b"ADIARYE1"  # ciphertext on disk, not RIFF
    job = services.job_run_inline(job_id=job.id)
    assert job.status == "done", job.error_message
    entry = DiaryEntry.objects.get()
    assert "walk in the park" in entry.body
    response = api_client.get(f"/api/entries/{entry.pk}/audio")
    assert b"".join(response.streaming_content) == speech_wav.read_bytes()


def api_client_user(client):
    from diaries.models import ApiKey

    return ApiKey.objects.get(prefix=client.api_key.split("_")[1]).user


def test_production_profile_requires_an_encryption_key_for_local_storage():
    import subprocess
    import sys

    from conftest import ROOT

    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL"}}
    env.update(DIARY_ENV="production", SECRET_KEY="s" * 60, STORAGE_BACKEND="local", AUDIO_ENCRYPTION_KEY="")
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode != 0 and "AUDIO_ENCRYPTION_KEY is not set" in result.stderr
    env["AUDIO_ENCRYPTION_KEY"] = KEY
    code = "from django.core.files.storage import storages; print(type(storages['default']).__name__)"
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.stdout.strip().splitlines()[-1] == "EncryptedFileSystemStorage", result.stderr


@pytest.fixture
def finished(user, speech_wav, fake_engine):
    upload = SimpleUploadedFile("walk.wav", speech_wav.read_bytes(), content_type="audio/wav")
    job = services.recording_create(owner=user, uploaded_file=upload, enqueue=False)
    services.job_run_inline(job_id=job.id)
    job.refresh_from_db()
    return job


@pytest.mark.django_db
def test_deleting_a_user_removes_their_audio(finished, user, django_capture_on_commit_callbacks):
    name = finished.recording.audio.name
    assert default_storage.exists(name)
    with django_capture_on_commit_callbacks(execute=True):
        user.delete()
    assert not default_storage.exists(name)
    assert not Recording.objects.exists() and not DiaryEntry.objects.exists()


@pytest.mark.django_db
def test_retention_deletes_audio_but_keeps_the_entry(finished, settings, django_capture_on_commit_callbacks, client):
    from django.core.management import call_command

    name = finished.recording.audio.name
    assert services.recordings_purge_expired_audio() == []  # retention off by default
    settings.AUDIO_RETENTION_DAYS = 30
    assert services.recordings_purge_expired_audio() == []  # too recent
    TranscriptionJob.objects.filter(pk=finished.pk).update(finished_at=timezone.now() - timedelta(days=31))
    call_command("purge_expired_audio", stdout=open(os.devnull, "w"))
    assert not default_storage.exists(name)
    recording = Recording.objects.get()
    assert recording.audio_deleted_at is not None and recording.audio.name == ""
    entry = DiaryEntry.objects.get()
    assert "walk in the park" in entry.body
    assert services.recordings_purge_expired_audio() == []  # safe to run twice


@pytest.mark.django_db
def test_audio_of_a_purged_recording_is_404(finished, settings, api_client):
    settings.AUDIO_RETENTION_DAYS = 1
    TranscriptionJob.objects.filter(pk=finished.pk).update(finished_at=timezone.now() - timedelta(days=2))
    services.recordings_purge_expired_audio()
    entry = DiaryEntry.objects.get()
    assert api_client.get(f"/api/entries/{entry.pk}/audio").status_code == 404
    assert api_client.get(f"/api/entries/{entry.pk}").status_code == 200


@pytest.mark.django_db
def test_each_api_key_has_its_own_rate_limit(user, speech_wav, settings):
    from django.core.cache import cache
    from rest_framework.settings import api_settings
    from rest_framework.throttling import SimpleRateThrottle

    from conftest import api_client_for

    cache.clear()
    SimpleRateThrottle.THROTTLE_RATES = {**api_settings.DEFAULT_THROTTLE_RATES, "user": "3/min"}
    try:
        phone, laptop = api_client_for(user), api_client_for(user)
        assert [phone.get("/api/entries/").status_code for _ in range(4)] == [200, 200, 200, 429]
        assert laptop.get("/api/entries/").status_code == 200
    finally:
        SimpleRateThrottle.THROTTLE_RATES = api_settings.DEFAULT_THROTTLE_RATES
        cache.clear()


@pytest.fixture
def s3_storage(settings, moto_server_url, monkeypatch):
    import uuid

    import boto3

    from transcription.tests.moto_server import DUMMY_AWS_ENV

    for key, value in DUMMY_AWS_ENV.items():
        monkeypatch.setenv(key, value)
    bucket = f"diary-sec-{uuid.uuid4().hex[:8]}"
    client = boto3.client("s3", region_name="us-east-1", endpoint_url=moto_server_url)
    client.create_bucket(Bucket=bucket)
    settings.AWS_STORAGE_BUCKET_NAME = bucket
    settings.AWS_S3_ENDPOINT_URL = moto_server_url
    settings.STORAGES = {**settings.STORAGES, "default": {"BACKEND": "storages.backends.s3.S3Storage"}}
    return client, bucket


@pytest.mark.django_db
@pytest.mark.parametrize("delete", ["user", "entry"])
def test_deleting_on_s3_removes_the_object(
    s3_storage, user, speech_wav, fake_engine, delete, django_capture_on_commit_callbacks
):
    from diaries.services import entry_delete

    client, bucket = s3_storage
    upload = SimpleUploadedFile("walk.wav", speech_wav.read_bytes(), content_type="audio/wav")
    job = services.recording_create(owner=user, uploaded_file=upload, enqueue=False)
    job = services.job_run_inline(job_id=job.id)  # the fake engine reads the audio back from S3
    assert job.status == "done", job.error_message
    key = job.recording.audio.name
    head = client.head_object(Bucket=bucket, Key=key)
    assert head["ServerSideEncryption"] == "aws:kms"
    with django_capture_on_commit_callbacks(execute=True):
        user.delete() if delete == "user" else entry_delete(entry=DiaryEntry.objects.get())
    assert client.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0

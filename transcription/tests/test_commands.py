"""manage.py transcribe, create_api_key, requeue_stuck_jobs, prepare_whisper_model."""

from __future__ import annotations

import io
import subprocess
import sys
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from conftest import ROOT, SPOKEN_TEXT
from diaries.models import ApiKey, DiaryEntry
from diaries.services import api_key_authenticate
from transcription.evaluation import word_error_rate
from transcription.models import TranscriptionJob

pytestmark = pytest.mark.django_db


def test_transcribe_runs_the_chain_in_process_and_prints_markdown(speech_wav, user):
    out, err = io.StringIO(), io.StringIO()
    call_command("transcribe", str(speech_wav), "--user", "alice", stdout=out, stderr=err)
    markdown = out.getvalue()
    entry = DiaryEntry.objects.get()
    assert entry.owner == user
    assert markdown.startswith(f"# {entry.title}\n")
    body = markdown.split("## Entry", 1)[1].split("## Transcript", 1)[0]
    assert word_error_rate(SPOKEN_TEXT, body) < 0.2, body
    assert TranscriptionJob.objects.get().status == "done"
    assert "done in" in err.getvalue()


def test_transcribe_refuses_non_audio_clearly(tmp_path, user):
    text = tmp_path / "notes.mp3"
    text.write_text("not audio " * 100)
    with pytest.raises(CommandError, match="not audio"):
        call_command("transcribe", str(text))
    assert not TranscriptionJob.objects.exists()


def test_transcribe_unknown_user(speech_wav):
    with pytest.raises(CommandError, match="No user named"):
        call_command("transcribe", str(speech_wav), "--user", "nobody")


def test_create_api_key_prints_a_working_key_once(user):
    out = io.StringIO()
    call_command("create_api_key", "alice", "--name", "phone", stdout=out, stderr=io.StringIO())
    key = out.getvalue().strip()
    stored = ApiKey.objects.get()
    assert stored.name == "phone" and key not in stored.key_hash
    assert api_key_authenticate(key=key).user == user


def test_create_api_key_for_a_missing_user(db):
    with pytest.raises(CommandError, match="--create-user"):
        call_command("create_api_key", "carol")
    out = io.StringIO()
    call_command("create_api_key", "carol", "--create-user", stdout=out, stderr=io.StringIO())
    assert ApiKey.objects.get().user.username == "carol"


def test_requeue_stuck_jobs_command(user, speech_wav, fake_engine, monkeypatch):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from transcription import services

    published = []
    monkeypatch.setattr(services, "job_enqueue", lambda job_id: published.append(job_id) or True)
    upload = SimpleUploadedFile("walk.wav", speech_wav.read_bytes(), content_type="audio/wav")
    job = services.recording_create(owner=user, uploaded_file=upload, enqueue=False)
    out = io.StringIO()
    call_command("requeue_stuck_jobs", stdout=out)
    assert out.getvalue().strip() == "0 requeued, 0 failed"
    TranscriptionJob.objects.filter(id=job.id).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    out = io.StringIO()
    call_command("requeue_stuck_jobs", stdout=out)
    assert f"requeued {job.job_name}" in out.getvalue() and published == [job.id]


def test_prepare_whisper_model_command():
    result = subprocess.run(
        [sys.executable, "manage.py", "prepare_whisper_model", "base", "tiny.en"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "base:" in result.stdout and "tiny.en:" in result.stdout and result.stdout.count("(verified)") == 2

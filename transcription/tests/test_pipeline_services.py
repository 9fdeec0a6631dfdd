"""The chain's steps as services: claims, idempotency, failures, the sweep and re-runs."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from diaries.models import DiaryEntry
from transcription import services
from transcription.engines.base import EngineError, Pending
from transcription.models import JobStage, JobStatus, TranscriptionJob

pytestmark = pytest.mark.django_db


@pytest.fixture
def job(user, speech_wav, fake_engine):
    upload = SimpleUploadedFile("walk.wav", speech_wav.read_bytes(), content_type="audio/wav")
    return services.recording_create(owner=user, uploaded_file=upload, enqueue=False)


def run_all(job_id: int, worker: str = "w1") -> list[str]:
    kinds = []
    for stage in services.STAGE_ORDER:
        kinds.append(services.job_run_step(job_id=job_id, stage=stage, worker=worker).kind)
    return kinds


def test_steps_in_order_make_one_entry_with_timings(job):
    assert run_all(job.id) == ["advanced"] * 5
    job.refresh_from_db()
    assert job.status == JobStatus.DONE and job.stage == JobStage.DONE and job.progress == 100
    assert set(job.timings) >= {"upload", "transcribe", "poll", "format", "save", "total"}
    entry = DiaryEntry.objects.get(recording=job.recording)
    assert entry.owner == job.recording.owner
    assert "walk in the park" in entry.body
    assert [s["start"] for s in entry.segments] == [0.0, 6.0]
    assert entry.paragraphs == ["Today I went for a long walk in the park.", "I felt calm and happy afterwards."]
    assert entry.formatter == "rules"


def test_every_step_delivered_twice_makes_one_entry(job, fake_engine):
    for stage in services.STAGE_ORDER:
        assert services.job_run_step(job_id=job.id, stage=stage, worker="w1").advanced
        # The redelivered copy finds the step done and does nothing.
        assert services.job_run_step(job_id=job.id, stage=stage, worker="w2").kind == "skipped"
    assert DiaryEntry.objects.filter(recording=job.recording).count() == 1
    assert fake_engine.starts == [job.job_name]


def test_a_claimed_step_is_not_run_by_a_second_worker(job):
    assert services._claim(job.id, JobStage.UPLOAD, "w1")
    assert services.job_run_step(job_id=job.id, stage=JobStage.UPLOAD, worker="w2").kind == "skipped"
    # Once the first worker's lease runs out (it died), another may take over.
    TranscriptionJob.objects.filter(id=job.id).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert services.job_run_step(job_id=job.id, stage=JobStage.UPLOAD, worker="w2").advanced


def test_permanent_engine_error_fails_the_job_with_its_message(job, fake_engine):
    fake_engine.script = [EngineError("unsupported codec", permanent=True)]
    kinds = run_all(job.id)
    assert kinds[:2] == ["advanced", "failed"]
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert job.error_message == "unsupported codec"
    assert not DiaryEntry.objects.exists()


def test_transient_engine_error_releases_the_step_for_a_retry(job, fake_engine):
    fake_engine.script = [EngineError("throttled", permanent=False)]
    services.job_run_step(job_id=job.id, stage=JobStage.UPLOAD, worker="w1")
    with pytest.raises(services.TransientStepError):
        services.job_run_step(job_id=job.id, stage=JobStage.TRANSCRIBE, worker="w1")
    job.refresh_from_db()
    assert job.status == JobStatus.TRANSCRIBING and job.claimed_by == "" and job.error_message == "throttled"
    assert services.job_run_step(job_id=job.id, stage=JobStage.TRANSCRIBE, worker="w1-retry").advanced


def test_pending_poll_waits_and_gives_up_after_the_deadline(job, fake_engine, settings):
    fake_engine.script = [None, Pending(retry_after=7)]  # start ok, then one pending poll
    services.job_run_step(job_id=job.id, stage=JobStage.UPLOAD, worker="w1")
    services.job_run_step(job_id=job.id, stage=JobStage.TRANSCRIBE, worker="w1")
    outcome = services.job_run_step(job_id=job.id, stage=JobStage.POLL, worker="w1")
    assert outcome.kind == "pending" and outcome.retry_after == 7
    job.refresh_from_db()
    assert job.stage == JobStage.POLL and job.claimed_by == ""
    assert job.lease_expires_at > timezone.now() + timedelta(seconds=7)
    settings.POLL_DEADLINE_SECONDS = -1
    fake_engine.script = [Pending(retry_after=7)]
    assert services.job_run_step(job_id=job.id, stage=JobStage.POLL, worker="w1").kind == "failed"
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and "did not finish" in job.error_message


def test_silence_fails_clearly(job, fake_engine, monkeypatch):
    monkeypatch.setattr(fake_engine, "segments", ())
    assert run_all(job.id)[2] == "failed"
    job.refresh_from_db()
    assert job.error_message == "No speech was found in the recording."


def test_sweep_requeues_expired_leases_once_and_fails_after_the_limit(
    job, settings, django_capture_on_commit_callbacks
):
    published = []
    from transcription import tasks

    class FakeChain:
        def __init__(self, stage, job_id):
            self.args = (stage, job_id)

        def apply_async(self):
            published.append(self.args)

    import unittest.mock

    with unittest.mock.patch.object(tasks, "chain_from_stage", FakeChain):
        assert services.jobs_requeue_stuck() == {"requeued": [], "failed": []}  # lease still valid
        later = timezone.now() + timedelta(seconds=settings.JOB_QUEUED_GRACE_SECONDS + 1)
        assert services.jobs_requeue_stuck(now=later)["requeued"] == [job.job_name]
        # A second sweep at the same moment finds the new lease and does nothing.
        assert services.jobs_requeue_stuck(now=later)["requeued"] == []
        assert published == [(JobStage.UPLOAD, job.id)]
        settings.JOB_MAX_REQUEUES = 1
        much_later = later + timedelta(seconds=settings.JOB_QUEUED_GRACE_SECONDS + 1)
        assert services.jobs_requeue_stuck(now=much_later)["failed"] == [job.job_name]
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and "Gave up after 1 recoveries" in job.error_message


def test_rerun_of_a_failed_job_starts_a_fresh_engine_job(job, fake_engine, django_capture_on_commit_callbacks):
    fake_engine.script = [EngineError("boom", permanent=True)]
    run_all(job.id)
    job.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert services.job_retry(job=job)
    assert len(callbacks) == 1  # the chain is published after commit
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED and job.error_message == ""
    assert run_all(job.id) == ["advanced"] * 5
    assert fake_engine.starts == [job.job_name, f"{job.job_name}_r2"]
    assert not services.job_retry(job=job)  # done jobs are left alone


def test_deleting_an_entry_removes_its_audio(job, django_capture_on_commit_callbacks):
    from diaries.services import entry_delete

    run_all(job.id)
    name = job.recording.audio.name
    assert default_storage.exists(name)
    with django_capture_on_commit_callbacks(execute=True):
        entry_delete(entry=DiaryEntry.objects.get())
    assert not default_storage.exists(name)
    assert not TranscriptionJob.objects.exists()


def test_filenames_are_sanitised_for_display_and_never_used_as_keys(user, speech_wav, fake_engine):
    upload = SimpleUploadedFile("../../etc/passwd\x00.wav", speech_wav.read_bytes(), content_type="audio/wav")
    job = services.recording_create(owner=user, uploaded_file=upload, enqueue=False)
    assert job.recording.original_filename == "passwd.wav"
    assert job.recording.audio.name.startswith(f"recordings/{user.pk}/")
    assert ".." not in job.recording.audio.name

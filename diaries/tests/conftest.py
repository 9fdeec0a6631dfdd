import pytest

from transcription.tests.conftest import fake_engine  # noqa: F401  (shared fixture)


@pytest.fixture
def finished_entry(user, speech_wav, fake_engine):  # noqa: F811
    """A real upload run through every step with the fake engine: an entry owned by `user`."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from transcription import services

    upload = SimpleUploadedFile("walk.wav", speech_wav.read_bytes(), content_type="audio/wav")
    job = services.recording_create(owner=user, uploaded_file=upload, enqueue=False)
    for stage in services.STAGE_ORDER:
        assert services.job_run_step(job_id=job.id, stage=stage, worker="test").advanced
    return job.recording.entry

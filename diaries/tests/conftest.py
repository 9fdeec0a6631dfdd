import pytest

from transcription.tests.conftest import fake_engine  # noqa: F401  (shared fixture)


def _run_pipeline(owner, wav_path, title: str | None = None):
    """A real upload run through every step with the (already active) fake engine; returns the entry."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from diaries.models import DiaryEntry
    from transcription import services

    upload = SimpleUploadedFile("walk.wav", wav_path.read_bytes(), content_type="audio/wav")
    job = services.recording_create(owner=owner, uploaded_file=upload, enqueue=False)
    for stage in services.STAGE_ORDER:
        assert services.job_run_step(job_id=job.id, stage=stage, worker="test").advanced
    entry = job.recording.entry
    if title:
        DiaryEntry.objects.filter(pk=entry.pk).update(title=title)
        entry.refresh_from_db()
    return entry


@pytest.fixture
def finished_entry(user, speech_wav, fake_engine):  # noqa: F811
    """A real upload run through every step with the fake engine: an entry owned by `user`."""
    return _run_pipeline(user, speech_wav)


@pytest.fixture
def make_finished_entry(speech_wav, fake_engine):  # noqa: F811
    """`make_finished_entry(owner, title=None)`: more entries like `finished_entry`, for anyone."""
    return lambda owner, title=None: _run_pipeline(owner, speech_wav, title)


@pytest.fixture
def make_therapist(django_user_model):
    """`make_therapist(username, *clients)`: a staff user in the Therapists group, assigned to `clients`."""
    from diaries.services import therapist_assign, therapists_group_ensure

    def make(username: str, *clients):
        therapist = django_user_model.objects.create_user(username, password=f"pw-{username}-123", is_staff=True)
        therapist.groups.add(therapists_group_ensure())
        for client in clients:
            therapist_assign(therapist=therapist, client=client)
        return therapist

    return make


@pytest.fixture
def clinic(user, other_user, make_therapist, make_finished_entry):
    """Two therapists and their clients: A reviews alice (`user`), B reviews bob (`other_user`).

    Each client has one finished entry with audio; bob's is titled so that searches can look for it.
    """
    from types import SimpleNamespace

    alice_entry = make_finished_entry(user, "Alice walks in the park")
    bob_entry = make_finished_entry(other_user, "Bob's secret worries")
    return SimpleNamespace(
        therapist_a=make_therapist("therapist_a", user),
        therapist_b=make_therapist("therapist_b", other_user),
        alice=user,
        bob=other_user,
        alice_entry=alice_entry,
        bob_entry=bob_entry,
    )


@pytest.fixture
def login(client):
    """`login(user)`: the test client signed in as `user` (force_login: django-axes needs a request for login())."""

    def sign_in(user):
        client.force_login(user)
        return client

    return sign_in

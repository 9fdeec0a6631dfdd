"""Staff review in the admin: lists, the entry page with audio and transcript, re-running failed jobs."""

from __future__ import annotations

import pytest
from django.urls import reverse

from diaries.models import DiaryEntry
from transcription.models import JobStatus, TranscriptionJob

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client_(client, django_user_model):
    admin = django_user_model.objects.create_superuser("root", "root@example.com", "pw-root-123")
    client.force_login(admin)
    return client


@pytest.fixture
def staff_client(client, django_user_model):
    from django.contrib.auth.models import Permission

    staff = django_user_model.objects.create_user("staffer", password="pw", is_staff=True)
    staff.user_permissions.set(Permission.objects.filter(content_type__app_label__in=["diaries", "transcription"]))
    client.force_login(staff)
    return client


def test_entry_list_and_search(admin_client_, finished_entry):
    page = admin_client_.get(reverse("admin:diaries_diaryentry_changelist"))
    assert page.status_code == 200 and finished_entry.title.encode() in page.content
    found = admin_client_.get(reverse("admin:diaries_diaryentry_changelist") + "?q=park")
    assert b"1 diary entry" in found.content or b"1 result" in found.content
    missing = admin_client_.get(reverse("admin:diaries_diaryentry_changelist") + "?q=zebra")
    assert finished_entry.title.encode() not in missing.content


def test_entry_page_has_audio_player_and_clickable_transcript(admin_client_, finished_entry):
    page = admin_client_.get(reverse("admin:diaries_diaryentry_change", args=[finished_entry.pk]))
    html = page.content.decode()
    audio_url = reverse("admin:diaries_diaryentry_audio", args=[finished_entry.pk])
    assert f'src="{audio_url}"' in html
    assert 'data-start="6.0"' in html and "I felt calm and happy afterwards." in html
    assert "job <code>transcription_" in html and 'id="formatter-name">rules<' in html
    # The admin's audio URL works for the admin's session and answers byte ranges (so the player can seek).
    audio = admin_client_.get(audio_url)
    assert audio.status_code == 200 and audio["Accept-Ranges"] == "bytes"
    # The REST API shows everyone, superusers included, only their own entries.
    assert admin_client_.get(f"/api/entries/{finished_entry.pk}/audio").status_code == 404


def test_staff_edit_the_entry_but_not_the_transcript(admin_client_, finished_entry):
    url = reverse("admin:diaries_diaryentry_change", args=[finished_entry.pk])
    data = {"recorded_at_0": "2026-11-20", "recorded_at_1": "08:00:00", "title": "Edited title",
            "summary": "s", "body": "b", "mood_label": "neutral", "mood_score": "0", "tags": '["x"]',
            "review_status": "new", "reviewer_notes": "", "raw_transcript": "tampered"}
    response = admin_client_.post(url, data)
    assert response.status_code == 302, response.content[:2000]
    finished_entry.refresh_from_db()
    assert finished_entry.title == "Edited title" and finished_entry.tags == ["x"]
    assert finished_entry.raw_transcript != "tampered"


def test_staff_who_are_not_superusers_see_no_one_elses_entries(staff_client, finished_entry):
    page = staff_client.get(reverse("admin:diaries_diaryentry_changelist"))
    assert page.status_code == 200 and finished_entry.title.encode() not in page.content
    change = staff_client.get(reverse("admin:diaries_diaryentry_change", args=[finished_entry.pk]))
    assert change.status_code == 302  # the admin redirects a missing object to the index
    assert staff_client.get(f"/api/entries/{finished_entry.pk}/audio").status_code == 404


def test_rerun_failed_jobs_action(admin_client_, finished_entry, django_capture_on_commit_callbacks):
    job = finished_entry.recording.job
    TranscriptionJob.objects.filter(id=job.id).update(status=JobStatus.FAILED, stage="format", error_message="x")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = admin_client_.post(
            reverse("admin:transcription_transcriptionjob_changelist"),
            {"action": "rerun_failed", "_selected_action": [job.pk]},
            follow=True,
        )
    assert b"Re-queued 1 job(s)" in response.content
    job.refresh_from_db()
    assert job.status == JobStatus.FORMATTING and job.stage == "format" and job.error_message == ""
    assert len(callbacks) == 1


def test_jobs_list_shows_status_and_error(admin_client_, finished_entry):
    TranscriptionJob.objects.update(status=JobStatus.FAILED, error_message="The audio could not be decoded")
    page = admin_client_.get(reverse("admin:transcription_transcriptionjob_changelist"))
    assert b"The audio could not be decoded" in page.content and b"failed" in page.content


def test_deleting_in_admin_removes_audio(admin_client_, finished_entry, django_capture_on_commit_callbacks):
    from django.core.files.storage import default_storage

    name = finished_entry.recording.audio.name
    with django_capture_on_commit_callbacks(execute=True):
        admin_client_.post(reverse("admin:diaries_diaryentry_delete", args=[finished_entry.pk]), {"post": "yes"})
    assert not DiaryEntry.objects.exists() and not default_storage.exists(name)

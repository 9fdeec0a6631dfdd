"""Per-client isolation: therapist A reaches only A's client (alice), never B's client (bob), on every surface.

Each test signs in as therapist A and asks for bob's rows by list, search, filter, direct URL, autocomplete,
action, export and audio URL; the same request for alice's rows works, so a pass means isolation, not a
broken page.
"""

from __future__ import annotations

import pytest
from django.urls import reverse

from diaries.models import AccessEvent, DiaryEntry, ReviewStatus, TherapistAssignment
from diaries.selectors import Scope, entries_visible_to, jobs_visible_to, recordings_visible_to

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:diaries_diaryentry_changelist"


def entry_url(name: str, entry, *extra) -> str:
    return reverse(f"admin:diaries_diaryentry_{name}", args=[entry.pk, *extra])


@pytest.fixture
def as_a(clinic, login):
    return login(clinic.therapist_a)


# --- Selectors: the one place the rule lives -----------------------------------------------------


def test_review_scope_is_the_assigned_clients_only(clinic):
    a = clinic.therapist_a
    assert list(entries_visible_to(user=a, scope=Scope.REVIEW)) == [clinic.alice_entry]
    assert {r.owner_id for r in recordings_visible_to(user=a, scope=Scope.REVIEW)} == {clinic.alice.pk}
    assert {j.recording.owner_id for j in jobs_visible_to(user=a, scope=Scope.REVIEW)} == {clinic.alice.pk}


def test_own_scope_is_own_rows_whoever_asks(clinic, django_user_model):
    root = django_user_model.objects.create_superuser("root", "r@example.com", "pw")
    assert not entries_visible_to(user=root).exists()  # superusers too: the API is personal
    assert entries_visible_to(user=root, scope=Scope.REVIEW).count() == 2
    assert list(entries_visible_to(user=clinic.alice)) == [clinic.alice_entry]
    assert not entries_visible_to(user=clinic.therapist_a).exists()


def test_a_therapist_does_not_review_their_own_diary(clinic, make_finished_entry):
    make_finished_entry(clinic.therapist_a, "A's own diary")
    titles = [e.title for e in entries_visible_to(user=clinic.therapist_a, scope=Scope.REVIEW)]
    assert titles == ["Alice walks in the park"]
    # ...but reads it, like any client, in their own scope.
    assert [e.title for e in entries_visible_to(user=clinic.therapist_a)] == ["A's own diary"]


def test_inactive_or_non_staff_users_review_nothing(clinic):
    clinic.therapist_a.is_staff = False
    assert not entries_visible_to(user=clinic.therapist_a, scope=Scope.REVIEW).exists()
    clinic.therapist_a.is_staff, clinic.therapist_a.is_active = True, False
    assert not entries_visible_to(user=clinic.therapist_a, scope=Scope.REVIEW).exists()


def test_unassigning_removes_access_at_once(clinic):
    TherapistAssignment.objects.filter(therapist=clinic.therapist_a).delete()
    assert not entries_visible_to(user=clinic.therapist_a, scope=Scope.REVIEW).exists()


# --- Admin lists, search and filters --------------------------------------------------------------


def test_list_shows_only_my_clients_entries(as_a, clinic):
    page = as_a.get(reverse(CHANGELIST)).content.decode()
    assert "Alice walks in the park" in page and "Bob&#x27;s secret worries" not in page
    assert "secret" not in page


def test_search_does_not_find_other_clients(as_a, clinic):
    for term in ("secret", "bob", "Bob's"):
        page = as_a.get(reverse(CHANGELIST), {"q": term}).content.decode()
        assert "secret worries" not in page, term
        assert "0 diary entries" in page or "0 results" in page, term
    assert "Alice walks" in as_a.get(reverse(CHANGELIST), {"q": "alice"}).content.decode()


def test_client_filter_offers_and_accepts_only_my_clients(as_a, clinic):
    page = as_a.get(reverse(CHANGELIST)).content.decode()
    assert f"?client={clinic.alice.pk}" in page and f"?client={clinic.bob.pk}" not in page
    forced = as_a.get(reverse(CHANGELIST), {"client": clinic.bob.pk}).content.decode()
    assert "secret worries" not in forced and "Alice walks" not in forced


def test_recordings_and_jobs_lists_are_isolated(as_a, clinic):
    recordings = as_a.get(reverse("admin:transcription_recording_changelist")).content.decode()
    assert ">alice<" in recordings and ">bob<" not in recordings
    jobs = as_a.get(reverse("admin:transcription_transcriptionjob_changelist")).content.decode()
    assert clinic.alice_entry.recording.job.job_name in jobs
    assert clinic.bob_entry.recording.job.job_name not in jobs
    searched = as_a.get(reverse("admin:transcription_transcriptionjob_changelist"), {"q": "bob"}).content.decode()
    assert clinic.bob_entry.recording.job.job_name not in searched


# --- Direct URLs --------------------------------------------------------------------------------------


@pytest.mark.parametrize("view", ["change", "history", "delete"])
def test_direct_urls_to_other_clients_entries_go_nowhere(as_a, clinic, view):
    if view == "delete":  # therapists may not delete; one who may still reaches only their clients
        from django.contrib.auth.models import Permission

        clinic.therapist_a.user_permissions.add(Permission.objects.get(codename="delete_diaryentry"))
    mine = as_a.get(entry_url(view, clinic.alice_entry))
    assert mine.status_code == 200
    theirs = as_a.get(entry_url(view, clinic.bob_entry))
    assert theirs.status_code == 302 and theirs["Location"] == reverse("admin:index")  # Django's "doesn't exist"
    assert b"secret" not in as_a.get(theirs["Location"]).content


def test_direct_urls_to_other_clients_recordings_and_jobs_go_nowhere(as_a, clinic):
    for model, obj_a, obj_b in [
        ("transcription_recording", clinic.alice_entry.recording, clinic.bob_entry.recording),
        ("transcription_transcriptionjob", clinic.alice_entry.recording.job, clinic.bob_entry.recording.job),
    ]:
        assert as_a.get(reverse(f"admin:{model}_change", args=[obj_a.pk])).status_code == 200
        assert as_a.get(reverse(f"admin:{model}_change", args=[obj_b.pk])).status_code == 302


def test_posting_a_change_to_another_clients_entry_changes_nothing(as_a, clinic):
    response = as_a.post(
        entry_url("change", clinic.bob_entry),
        {"title": "hijacked", "body": "x", "mood_label": "neutral", "mood_score": "0", "review_status": "new"},
    )
    assert response.status_code == 302
    clinic.bob_entry.refresh_from_db()
    assert clinic.bob_entry.title == "Bob's secret worries"


def test_deleting_another_clients_entry_is_impossible(as_a, clinic):
    from django.contrib.auth.models import Permission

    assert as_a.post(entry_url("delete", clinic.alice_entry), {"post": "yes"}).status_code == 403
    clinic.therapist_a.user_permissions.add(Permission.objects.get(codename="delete_diaryentry"))
    as_a.post(entry_url("delete", clinic.bob_entry), {"post": "yes"})
    assert DiaryEntry.objects.filter(pk=clinic.bob_entry.pk).exists()


# --- Autocomplete ---------------------------------------------------------------------------------------


def autocomplete(client, app_label: str, model_name: str, field_name: str, term: str = ""):
    return client.get(
        reverse("admin:autocomplete"),
        {"app_label": app_label, "model_name": model_name, "field_name": field_name, "term": term},
    )


def test_autocomplete_of_entries_is_isolated(as_a, clinic):
    # Any foreign key to DiaryEntry reaches DiaryEntryAdmin's autocomplete; it searches get_queryset only.
    found = autocomplete(as_a, "diaries", "accessevent", "entry", "").json()["results"]
    assert [r["id"] for r in found] == [str(clinic.alice_entry.pk)]
    assert autocomplete(as_a, "diaries", "accessevent", "entry", "secret").json()["results"] == []
    assert autocomplete(as_a, "diaries", "accessevent", "entry", "bob").json()["results"] == []


def test_autocomplete_of_recordings_is_isolated(as_a, clinic):
    found = autocomplete(as_a, "transcription", "transcriptionjob", "recording", "").json()["results"]
    assert [r["id"] for r in found] == [str(clinic.alice_entry.recording.pk)]
    assert autocomplete(as_a, "transcription", "transcriptionjob", "recording", "bob").json()["results"] == []


def test_autocomplete_of_users_is_closed_to_therapists(as_a, clinic):
    # Users (clients included) are listed only to those with auth's view permission: superusers here.
    assert autocomplete(as_a, "diaries", "diaryentry", "owner", "bob").status_code == 403
    assert autocomplete(as_a, "diaries", "therapistassignment", "client", "bob").status_code == 403


# --- Actions -----------------------------------------------------------------------------------------------


def test_review_action_ignores_other_clients_entries(as_a, clinic):
    response = as_a.post(
        reverse(CHANGELIST),
        {"action": "mark_reviewed", "_selected_action": [clinic.alice_entry.pk, clinic.bob_entry.pk]},
        follow=True,
    )
    assert b"1 entry marked reviewed" in response.content
    clinic.alice_entry.refresh_from_db()
    clinic.bob_entry.refresh_from_db()
    assert clinic.alice_entry.review_status == ReviewStatus.REVIEWED
    assert clinic.bob_entry.review_status == ReviewStatus.NEW


def test_export_action_exports_only_my_clients_entries(as_a, clinic):
    response = as_a.post(
        reverse(CHANGELIST),
        {"action": "export_markdown", "_selected_action": [clinic.bob_entry.pk, clinic.alice_entry.pk]},
    )
    text = response.content.decode()
    assert response.status_code == 200 and "Alice walks in the park" in text and "secret" not in text
    assert not AccessEvent.objects.filter(entry=clinic.bob_entry).exists()


def test_rerun_action_ignores_other_clients_jobs(as_a, clinic):
    from transcription.models import JobStatus, TranscriptionJob

    TranscriptionJob.objects.update(status=JobStatus.FAILED)
    as_a.post(
        reverse("admin:transcription_transcriptionjob_changelist"),
        {"action": "rerun_failed", "_selected_action": [clinic.bob_entry.recording.job.pk]},
    )
    assert TranscriptionJob.objects.get(pk=clinic.bob_entry.recording.job.pk).status == JobStatus.FAILED


# --- Exports, client pages and audio ------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["md", "pdf"])
def test_entry_export_of_other_clients_is_404(as_a, clinic, fmt):
    assert as_a.get(entry_url("export", clinic.alice_entry, fmt)).status_code == 200
    assert as_a.get(entry_url("export", clinic.bob_entry, fmt)).status_code == 404


@pytest.mark.parametrize("fmt", ["md", "pdf"])
def test_client_page_and_range_export_of_other_clients_are_404(as_a, clinic, fmt):
    client_url = reverse("admin:diaries_diaryentry_client", args=[clinic.bob.pk])
    export_url = reverse("admin:diaries_diaryentry_client_export", args=[clinic.bob.pk])
    assert as_a.get(client_url).status_code == 404
    assert as_a.get(export_url, {"format": fmt}).status_code == 404
    mine = reverse("admin:diaries_diaryentry_client_export", args=[clinic.alice.pk])
    assert as_a.get(mine, {"format": fmt}).status_code == 200


def test_clients_page_lists_only_my_clients(as_a, clinic):
    page = as_a.get(reverse("admin:diaries_diaryentry_clients")).content.decode()
    assert ">alice<" in page and ">bob<" not in page
    assert ">bob<" not in as_a.get(reverse("admin:diaries_diaryentry_clients"), {"q": "bob"}).content.decode()


def test_audio_of_other_clients_is_404_in_the_admin_and_the_api(as_a, clinic):
    assert as_a.get(entry_url("audio", clinic.alice_entry)).status_code == 200
    assert as_a.get(entry_url("audio", clinic.bob_entry)).status_code == 404
    # The API is own-only: not even the therapist's own client's audio is served there.
    assert as_a.get(f"/api/entries/{clinic.bob_entry.pk}/audio").status_code == 404
    assert as_a.get(f"/api/entries/{clinic.alice_entry.pk}/audio").status_code == 404


def test_access_log_shows_only_my_clients(clinic, login):
    as_b = login(clinic.therapist_b)
    as_b.get(entry_url("change", clinic.bob_entry))  # B opens bob's entry: logged
    as_a = login(clinic.therapist_a)
    as_a.get(entry_url("change", clinic.alice_entry))
    page = as_a.get(reverse("admin:diaries_accessevent_changelist")).content.decode()
    assert "Alice walks in the park" in page and "secret worries" not in page and "therapist_b" not in page
    event_b = AccessEvent.objects.get(user=clinic.therapist_b)
    assert as_a.get(reverse("admin:diaries_accessevent_change", args=[event_b.pk])).status_code == 302


def test_therapists_cannot_manage_assignments(as_a, clinic):
    assert as_a.get(reverse("admin:diaries_therapistassignment_changelist")).status_code == 403
    assert as_a.get(reverse("admin:diaries_therapistassignment_add")).status_code == 403


def test_superusers_see_every_client(clinic, login, django_user_model):
    root = login(django_user_model.objects.create_superuser("root", "r@example.com", "pw"))
    page = root.get(reverse(CHANGELIST)).content.decode()
    assert "Alice walks in the park" in page and "secret worries" in page
    assert root.get(entry_url("audio", clinic.bob_entry)).status_code == 200
    clients = root.get(reverse("admin:diaries_diaryentry_clients")).content.decode()
    assert ">alice<" in clients and ">bob<" in clients


def test_clients_cannot_enter_the_admin(clinic, login):
    as_alice = login(clinic.alice)
    assert as_alice.get(reverse(CHANGELIST)).status_code == 302  # to the admin login page
    assert as_alice.get(entry_url("audio", clinic.alice_entry)).status_code == 302
    assert as_alice.get(entry_url("export", clinic.alice_entry, "md")).status_code == 302


# --- The REST API ------------------------------------------------------------------------------------------


def test_api_shows_a_client_only_their_entries(clinic):
    from conftest import api_client_for

    alice = api_client_for(clinic.alice)
    assert [e["title"] for e in alice.get("/api/entries/").json()["results"]] == ["Alice walks in the park"]
    assert alice.get(f"/api/entries/{clinic.bob_entry.pk}").status_code == 404
    assert alice.get(f"/api/entries/{clinic.bob_entry.pk}/markdown").status_code == 404
    assert alice.get(f"/api/entries/{clinic.bob_entry.pk}/audio").status_code == 404
    assert alice.get(f"/api/jobs/{clinic.bob_entry.recording.job.job_name}").status_code == 404


def test_api_shows_a_therapist_who_keeps_a_diary_only_their_own(clinic, make_finished_entry):
    from conftest import api_client_for

    make_finished_entry(clinic.therapist_a, "A's own diary")
    therapist = api_client_for(clinic.therapist_a)
    assert [e["title"] for e in therapist.get("/api/entries/").json()["results"]] == ["A's own diary"]
    assert therapist.get(f"/api/entries/{clinic.alice_entry.pk}").status_code == 404
    assert therapist.get(f"/api/jobs/{clinic.alice_entry.recording.job.job_name}").status_code == 404
    assert therapist.delete(f"/api/entries/{clinic.alice_entry.pk}").status_code == 404
    assert DiaryEntry.objects.filter(pk=clinic.alice_entry.pk).exists()

"""The review workflow: states, notes, bulk actions, the to-review queue, the entry page, the access log."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.urls import reverse

from diaries import services
from diaries.models import AccessEvent, DiaryEntry, ReviewStatus, TherapistAssignment

pytestmark = pytest.mark.django_db


def form_data(entry: DiaryEntry, **changes) -> dict:
    data = {
        "title": entry.title,
        "summary": entry.summary,
        "body": entry.body,
        "mood_label": entry.mood_label,
        "mood_score": str(entry.mood_score),
        "tags": ", ".join(entry.tags),
        "review_status": entry.review_status,
        "reviewer_notes": entry.reviewer_notes,
    }
    data.update(changes)
    return data


@pytest.fixture
def therapist(user, make_therapist):
    return make_therapist("therapist_a", user)


@pytest.fixture
def as_therapist(therapist, login):
    return login(therapist)


def test_new_entries_start_new(finished_entry):
    assert finished_entry.review_status == ReviewStatus.NEW and finished_entry.reviewed_by is None


def test_mark_reviewed_button_saves_notes_and_stamps_the_reviewer(as_therapist, therapist, finished_entry):
    url = reverse("admin:diaries_diaryentry_change", args=[finished_entry.pk])
    data = form_data(finished_entry, reviewer_notes="Talk about the walk.")
    response = as_therapist.post(url, {**data, "_mark_reviewed": "1"})
    assert response.status_code == 302, response.content[:3000]
    finished_entry.refresh_from_db()
    assert finished_entry.review_status == ReviewStatus.REVIEWED
    assert finished_entry.reviewer_notes == "Talk about the walk."
    assert finished_entry.reviewed_by == therapist and finished_entry.reviewed_at is not None
    event = AccessEvent.objects.get(action=AccessEvent.Action.CHANGE)
    assert event.user == therapist and event.entry == finished_entry and "review: reviewed" in event.detail


def test_flag_button_and_back_to_new(as_therapist, therapist, finished_entry):
    url = reverse("admin:diaries_diaryentry_change", args=[finished_entry.pk])
    as_therapist.post(url, {**form_data(finished_entry), "_flag": "1"})
    finished_entry.refresh_from_db()
    assert finished_entry.review_status == ReviewStatus.FLAGGED and finished_entry.reviewed_by == therapist
    as_therapist.post(url, form_data(finished_entry, review_status="new"))
    finished_entry.refresh_from_db()
    assert finished_entry.review_status == ReviewStatus.NEW and finished_entry.reviewed_by is None


def test_plain_save_edits_the_entry_and_keeps_the_transcript(as_therapist, finished_entry):
    url = reverse("admin:diaries_diaryentry_change", args=[finished_entry.pk])
    original_transcript = finished_entry.raw_transcript
    response = as_therapist.post(
        url,
        form_data(
            finished_entry,
            title="A calm walk",
            tags="park, family , park",
            mood_label="mixed",
            mood_score="0.1",
            raw_transcript="tampered",
            formatter="tampered",
        ),
    )
    assert response.status_code == 302
    finished_entry.refresh_from_db()
    assert finished_entry.title == "A calm walk" and finished_entry.tags == ["park", "family"]
    assert finished_entry.mood_label == "mixed" and finished_entry.mood_score == pytest.approx(0.1)
    assert finished_entry.raw_transcript == original_transcript and finished_entry.formatter == "rules"
    assert finished_entry.review_status == ReviewStatus.NEW  # editing is not reviewing
    event = AccessEvent.objects.get(action=AccessEvent.Action.CHANGE)
    assert "title" in event.detail and "tags" in event.detail


def test_mood_score_is_bounded(as_therapist, finished_entry):
    url = reverse("admin:diaries_diaryentry_change", args=[finished_entry.pk])
    response = as_therapist.post(url, form_data(finished_entry, mood_score="3"))
    assert response.status_code == 200 and b"runs from -1" in response.content


def test_entry_page_shows_player_transcript_formatter_and_review_controls(as_therapist, finished_entry):
    html = as_therapist.get(reverse("admin:diaries_diaryentry_change", args=[finished_entry.pk])).content.decode()
    assert 'id="entry-audio"' in html and 'class="segment" data-start="0.0"' in html
    assert 'id="formatter-name">rules<' in html
    assert 'name="_mark_reviewed"' in html and 'name="_flag"' in html
    # Editable entry fields; the transcript and provenance are read-only.
    for field in ("title", "summary", "body", "mood_label", "mood_score", "tags", "reviewer_notes"):
        assert f'name="{field}"' in html, field
    assert 'name="raw_transcript"' not in html and 'name="formatter"' not in html
    assert "Export PDF" in html and "Export Markdown" in html
    assert AccessEvent.objects.filter(action=AccessEvent.Action.VIEW, entry=finished_entry).count() == 1


def test_bulk_actions(as_therapist, therapist, user, make_finished_entry):
    entries = [make_finished_entry(user, f"entry {n}") for n in range(3)]
    changelist = reverse("admin:diaries_diaryentry_changelist")
    response = as_therapist.post(
        changelist, {"action": "mark_reviewed", "_selected_action": [e.pk for e in entries[:2]]}, follow=True
    )
    assert b"2 entries marked reviewed" in response.content
    as_therapist.post(changelist, {"action": "flag_for_follow_up", "_selected_action": [entries[2].pk]})
    states = dict(DiaryEntry.objects.values_list("title", "review_status"))
    assert states == {"entry 0": "reviewed", "entry 1": "reviewed", "entry 2": "flagged"}
    assert set(DiaryEntry.objects.values_list("reviewed_by", flat=True)) == {therapist.pk}
    assert AccessEvent.objects.filter(action=AccessEvent.Action.CHANGE, detail__contains="bulk").count() == 3


def test_view_only_reviewers_get_no_review_actions(therapist, login, finished_entry):
    from django.contrib.auth.models import Group

    therapist.groups.set([])
    therapist.user_permissions.add(
        *Group.objects.get(name="Therapists").permissions.filter(codename__startswith="view")
    )
    client = login(therapist)
    page = client.get(reverse("admin:diaries_diaryentry_changelist")).content.decode()
    assert "mark_reviewed" not in page and "export_markdown" in page
    client.post(
        reverse("admin:diaries_diaryentry_changelist"),
        {"action": "mark_reviewed", "_selected_action": [finished_entry.pk]},
    )
    finished_entry.refresh_from_db()
    assert finished_entry.review_status == ReviewStatus.NEW


def test_to_review_queue_is_mine_new_and_newest_first(as_therapist, therapist, user, other_user, make_finished_entry):
    from diaries.selectors import entries_to_review

    older = make_finished_entry(user, "older")
    newer = make_finished_entry(user, "newer")
    reviewed = make_finished_entry(user, "already reviewed")
    make_finished_entry(other_user, "someone else's")
    base = datetime(2026, 3, 1, 9, 0).astimezone()
    DiaryEntry.objects.filter(pk=older.pk).update(recorded_at=base)
    DiaryEntry.objects.filter(pk=newer.pk).update(recorded_at=base + timedelta(days=2))
    DiaryEntry.objects.filter(pk=reviewed.pk).update(recorded_at=base + timedelta(days=3), review_status="reviewed")

    assert list(entries_to_review(user=therapist).values_list("title", flat=True)) == ["newer", "older"]
    index = as_therapist.get(reverse("admin:index")).content.decode()
    assert reverse("admin:diaries_diaryentry_to_review") in index
    html = as_therapist.get(reverse("admin:diaries_diaryentry_to_review"), follow=True).content.decode()
    assert "Entries to review, newest first" in html
    assert html.index(">newer<") < html.index(">older<")
    assert "already reviewed" not in html and "someone else" not in html


def test_superusers_manage_assignments(client, django_user_model, user):
    root = django_user_model.objects.create_superuser("root", "r@example.com", "pw")
    staff = django_user_model.objects.create_user("newtherapist", password="pw", is_staff=True)
    client.force_login(root)
    add = reverse("admin:diaries_therapistassignment_add")
    assert client.post(add, {"therapist": staff.pk, "client": user.pk}).status_code == 302
    assert TherapistAssignment.objects.filter(therapist=staff, client=user).exists()
    assert staff.groups.filter(name=services.THERAPISTS_GROUP).exists()
    assert staff.has_perm("diaries.change_diaryentry") and not staff.has_perm("diaries.delete_diaryentry")
    # Nobody is their own therapist, therapists are staff, and an assignment is made once.
    assert client.post(add, {"therapist": staff.pk, "client": staff.pk}).status_code == 200
    assert client.post(add, {"therapist": user.pk, "client": staff.pk}).status_code == 200
    assert client.post(add, {"therapist": staff.pk, "client": user.pk}).status_code == 200
    assert TherapistAssignment.objects.count() == 1


def test_therapist_assign_service_validates(django_user_model, user):
    from django.core.exceptions import ValidationError

    staff = django_user_model.objects.create_user("t", is_staff=True)
    with pytest.raises(ValidationError):
        services.therapist_assign(therapist=user, client=staff)  # not staff
    with pytest.raises(ValidationError):
        services.therapist_assign(therapist=staff, client=staff)
    first = services.therapist_assign(therapist=staff, client=user)
    assert services.therapist_assign(therapist=staff, client=user) == first


def test_access_log_is_read_only_and_survives_deletion(client, django_user_model, finished_entry):
    root = django_user_model.objects.create_superuser("root", "r@example.com", "pw")
    client.force_login(root)
    client.get(reverse("admin:diaries_diaryentry_change", args=[finished_entry.pk]))
    client.get(reverse("admin:diaries_diaryentry_export", args=[finished_entry.pk, "md"]))
    client.get(reverse("admin:diaries_diaryentry_audio", args=[finished_entry.pk]))
    client.post(reverse("admin:diaries_diaryentry_delete", args=[finished_entry.pk]), {"post": "yes"})
    actions = list(AccessEvent.objects.order_by("id").values_list("action", "entry_ref", "entry_id", "username"))
    assert [a[0] for a in actions] == ["view", "export", "play", "delete"]
    assert all(a[1] == finished_entry.pk and a[2] is None and a[3] == "root" for a in actions)
    changelist = client.get(reverse("admin:diaries_accessevent_changelist")).content.decode()
    assert "(deleted)" in changelist and "root" in changelist
    event = AccessEvent.objects.first()
    change = client.get(reverse("admin:diaries_accessevent_change", args=[event.pk])).content.decode()
    assert 'name="detail"' not in change and "Save" not in change.split('id="content-main"')[1][:4000]
    assert client.get(reverse("admin:diaries_accessevent_add")).status_code == 403
    assert client.post(reverse("admin:diaries_accessevent_delete", args=[event.pk]), {"post": "yes"}).status_code == 403
    assert AccessEvent.objects.count() == 4


def test_api_audio_plays_are_logged(api_client, finished_entry, user):
    assert api_client.get(f"/api/entries/{finished_entry.pk}/audio").status_code == 200
    event = AccessEvent.objects.get()
    assert (event.action, event.user, event.client, event.detail) == ("play", user, user, "api")

"""Exports (one entry, a client's date range, a selection) as Markdown and PDF; the per-client charts; audio ranges."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta

import pytest
from django.urls import reverse

from diaries import rendering, selectors
from diaries.models import AccessEvent, DiaryEntry

pytestmark = pytest.mark.django_db


@pytest.fixture
def therapist(user, make_therapist):
    return make_therapist("therapist_a", user)


@pytest.fixture
def as_therapist(therapist, login):
    return login(therapist)


def make_entry(owner, title, when, score=0.0, label="neutral", **extra):
    return DiaryEntry.objects.create(
        owner=owner,
        title=title,
        body=f"{title} body.\n\nSecond paragraph.",
        summary=f"{title} summary",
        recorded_at=datetime.fromisoformat(when),
        mood_score=score,
        mood_label=label,
        **extra,
    )


@pytest.fixture
def month(user):
    """Five entries of alice's over three weeks of January 2026 (Mondays: 5, 12, 19), one week empty."""
    return [
        make_entry(user, "Mon 5", "2026-01-05T09:00:00+00:00", 0.6, "positive", tags=["work"]),
        make_entry(user, "Wed 7", "2026-01-07T09:00:00+00:00", -0.4, "negative"),
        make_entry(user, "Sun 11", "2026-01-11T21:00:00+00:00", 0.1),
        make_entry(user, "Tue 20", "2026-01-20T09:00:00+00:00", 0.8, "positive"),
        make_entry(user, "Feb 2", "2026-02-02T09:00:00+00:00", 0.0),
    ]


def pdf_pages(content: bytes) -> int:
    return len(re.findall(rb"/Type\s*/Page[^s]", content))


# --- One entry ------------------------------------------------------------------------------------


def test_entry_markdown_export(as_therapist, finished_entry):
    response = as_therapist.get(reverse("admin:diaries_diaryentry_export", args=[finished_entry.pk, "md"]))
    assert response.status_code == 200 and response["Content-Type"].startswith("text/markdown")
    assert response["Content-Disposition"] == f'attachment; filename="entry-{finished_entry.pk}.md"'
    text = response.content.decode()
    assert text.startswith(f"# {finished_entry.title}\n") and "Diary of alice" in text
    assert "### Transcript" in text and "I felt calm and happy afterwards." in text
    event = AccessEvent.objects.get()
    assert (event.action, event.detail, event.entry) == ("export", "md export", finished_entry)


def test_entry_pdf_export(as_therapist, finished_entry):
    response = as_therapist.get(reverse("admin:diaries_diaryentry_export", args=[finished_entry.pk, "pdf"]))
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    assert response.content.startswith(b"%PDF-") and pdf_pages(response.content) == 1
    assert b"(Long Walk)" in response.content  # the document's title in its metadata
    assert AccessEvent.objects.get().detail == "pdf export"


def test_unknown_export_format_is_404(as_therapist, finished_entry):
    assert (
        as_therapist.get(reverse("admin:diaries_diaryentry_export", args=[finished_entry.pk, "docx"])).status_code
        == 404
    )
    assert not AccessEvent.objects.exists()


# --- A client's date range -----------------------------------------------------------------------


def test_range_export_markdown_is_chronological_and_bounded(as_therapist, user, month):
    url = reverse("admin:diaries_diaryentry_client_export", args=[user.pk])
    response = as_therapist.get(url, {"format": "md", "from": "2026-01-06", "to": "2026-01-31"})
    text = response.content.decode()
    assert response["Content-Disposition"] == 'attachment; filename="diary-alice-2026-01-06-2026-01-31.md"'
    assert text.startswith("# Diary of alice\n") and "3 entries, 2026-01-06 to 2026-01-31" in text
    titles = re.findall(r"^## (.+)$", text, flags=re.M)
    assert titles == ["Wed 7", "Sun 11", "Tue 20"]
    assert text.count("\n---\n") == 2
    logged = AccessEvent.objects.filter(action="export").values_list("entry__title", flat=True)
    assert sorted(logged) == ["Sun 11", "Tue 20", "Wed 7"]


def test_range_export_pdf_and_an_empty_range(as_therapist, user, month):
    url = reverse("admin:diaries_diaryentry_client_export", args=[user.pk])
    pdf = as_therapist.get(url, {"format": "pdf"})
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF-") and pdf_pages(pdf.content) >= 1
    assert AccessEvent.objects.filter(action="export").count() == 5
    empty = as_therapist.get(url, {"format": "md", "from": "2030-01-01"}).content.decode()
    assert "No entries in this period." in empty


def test_long_exports_paginate(user):
    entries = [
        DiaryEntry(
            owner=user,
            title=f"Day {n}",
            body="\n\n".join(["Ünïcødé words, quite a few of them, to fill the page. " * 12] * 4),
            summary="s",
            recorded_at=datetime(2026, 3, n, 8).astimezone(),
            segments=[{"start": 0.0, "end": 2.0, "text": "hello"}],
        )
        for n in range(1, 11)
    ]
    content = rendering.entries_to_pdf(entries, title="Diary of alice", subtitle="10 entries")
    assert content.startswith(b"%PDF-") and pdf_pages(content) >= 5


# --- Charts ------------------------------------------------------------------------------------------------


def test_weekly_counts_fill_empty_weeks(therapist, user, month):
    weeks = selectors.client_weekly_counts(user=therapist, client_id=user.pk)
    assert weeks == [
        (date(2026, 1, 5), 3),
        (date(2026, 1, 12), 0),
        (date(2026, 1, 19), 1),
        (date(2026, 1, 26), 0),
        (date(2026, 2, 2), 1),
    ]


def test_mood_series_is_chronological(therapist, user, month):
    points = selectors.client_mood_series(user=therapist, client_id=user.pk, date_to=date(2026, 1, 31))
    assert [(p.title, p.score) for p in points] == [("Mon 5", 0.6), ("Wed 7", -0.4), ("Sun 11", 0.1), ("Tue 20", 0.8)]


def test_client_page_draws_the_charts(as_therapist, user, month):
    html = as_therapist.get(reverse("admin:diaries_diaryentry_client", args=[user.pk])).content.decode()
    mood_svg = html[html.index('<svg xmlns="http://www.w3.org/2000/svg" class="mood-chart"') :]
    mood_svg = mood_svg[: mood_svg.index("</svg>")]
    assert mood_svg.count("<circle") == 5 and "<polyline" in mood_svg
    assert 'fill="#c62828"' in mood_svg  # the negative day is red
    weekly = html[html.index('class="weekly-chart"') :]
    counts = [int(c) for c in re.findall(r'class="week" data-count="(\d+)"', weekly)]
    assert counts == [3, 0, 1, 0, 1]
    assert 'id="entry-count">5<' in html and "Export this period" in html
    # A period narrows both charts.
    narrowed = as_therapist.get(
        reverse("admin:diaries_diaryentry_client", args=[user.pk]), {"from": "2026-01-06", "to": "2026-01-12"}
    ).content.decode()
    assert 'id="entry-count">2<' in narrowed


def test_chart_svg_escapes_titles_and_handles_no_points():
    point = selectors.MoodPoint(1, datetime(2026, 1, 1).astimezone(), 0.2, "positive", "<script>alert(1)</script>")
    svg = rendering.mood_chart_svg([point])
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert "No entries" in rendering.mood_chart_svg([]) and "No entries" in rendering.weekly_counts_svg([])


# --- Audio with byte ranges --------------------------------------------------------------------------------


def test_admin_audio_answers_byte_ranges(as_therapist, finished_entry):
    url = reverse("admin:diaries_diaryentry_audio", args=[finished_entry.pk])
    size = finished_entry.recording.size_bytes
    whole = as_therapist.get(url)
    body = b"".join(whole.streaming_content)
    assert whole.status_code == 200 and len(body) == size and body.startswith(b"RIFF")

    first = as_therapist.get(url, HTTP_RANGE="bytes=0-99")
    assert first.status_code == 206 and first["Content-Range"] == f"bytes 0-99/{size}"
    assert b"".join(first.streaming_content) == body[:100]

    middle = as_therapist.get(url, HTTP_RANGE="bytes=1000-")
    assert middle["Content-Range"] == f"bytes 1000-{size - 1}/{size}" and middle["Content-Length"] == str(size - 1000)
    assert b"".join(middle.streaming_content) == body[1000:]

    tail = as_therapist.get(url, HTTP_RANGE="bytes=-10")
    assert b"".join(tail.streaming_content) == body[-10:]

    beyond = as_therapist.get(url, HTTP_RANGE=f"bytes={size}-")
    assert beyond.status_code == 416 and beyond["Content-Range"] == f"bytes */{size}"

    # A play is logged when playback starts at byte 0, not for each seek's range request.
    assert AccessEvent.objects.filter(action="play").count() == 2  # the whole file and bytes=0-99


def test_admin_audio_of_an_entry_without_audio_is_404(as_therapist, finished_entry):
    from transcription.models import Recording

    Recording.objects.filter(pk=finished_entry.recording_id).update(audio="")
    assert as_therapist.get(reverse("admin:diaries_diaryentry_audio", args=[finished_entry.pk])).status_code == 404
    html = as_therapist.get(reverse("admin:diaries_diaryentry_change", args=[finished_entry.pk])).content.decode()
    assert "The audio has been deleted." in html


def test_client_ip_address_trusts_only_our_proxies(rf, settings):
    from diaries.views import client_ip_address

    request = rf.get("/", REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.9")
    settings.AXES_TRUSTED_PROXY_COUNT = 0
    assert client_ip_address(request) == "10.0.0.5"
    settings.AXES_TRUSTED_PROXY_COUNT = 1
    assert client_ip_address(request) == "203.0.113.9"  # the hop our load balancer appended, not the spoofed one
    settings.AXES_TRUSTED_PROXY_COUNT = 3
    assert client_ip_address(request) == "10.0.0.5"
    assert client_ip_address(rf.get("/", REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR="junk")) == "10.0.0.5"


def test_week_boundaries_follow_mondays(therapist, user):
    from django.utils import timezone

    sunday = timezone.make_aware(datetime(2026, 1, 11, 23, 0))  # weeks are counted in TIME_ZONE
    make_entry(user, "late sunday", sunday.isoformat())
    make_entry(user, "monday", (sunday + timedelta(hours=2)).isoformat())
    weeks = selectors.client_weekly_counts(user=therapist, client_id=user.pk)
    assert [count for _, count in weeks] == [1, 1]

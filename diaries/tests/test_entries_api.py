"""Reading, searching, exporting and deleting entries; other people's entries are 404."""

from __future__ import annotations

from datetime import datetime

import pytest
from django.core.files.storage import default_storage

from diaries.models import AccessEvent, DiaryEntry

pytestmark = pytest.mark.django_db


def make_entry(owner, title, body="Some words.", when="2026-03-01T10:00:00+00:00", **extra):
    return DiaryEntry.objects.create(
        owner=owner, title=title, body=body, summary=body[:50], recorded_at=datetime.fromisoformat(when), **extra
    )


def test_list_shows_only_my_entries_newest_first(api_client, user, other_user):
    make_entry(user, "older", when="2026-01-01T10:00:00+00:00")
    make_entry(user, "newer", when="2026-02-01T10:00:00+00:00")
    make_entry(other_user, "bob's secret")
    body = api_client.get("/api/entries/").json()
    assert body["count"] == 2
    assert [e["title"] for e in body["results"]] == ["newer", "older"]


def test_list_is_paginated(api_client, user, settings):
    for day in range(1, 26):
        make_entry(user, f"day {day}", when=f"2026-01-{day:02d}T10:00:00+00:00")
    first = api_client.get("/api/entries/").json()
    assert first["count"] == 25 and len(first["results"]) == 20 and first["next"]
    second = api_client.get("/api/entries/?page=2").json()
    assert [e["title"] for e in second["results"]] == [f"day {d}" for d in range(5, 0, -1)]


def test_date_range_and_search(api_client, user):
    make_entry(user, "Park walk", body="We walked in the park.", when="2026-01-05T10:00:00+00:00")
    make_entry(user, "Work day", body="A long meeting at work.", when="2026-01-10T10:00:00+00:00")
    make_entry(user, "Park again", body="Back to the park, lovely.", when="2026-02-10T10:00:00+00:00")
    titles = lambda url: [e["title"] for e in api_client.get(url).json()["results"]]  # noqa: E731
    assert titles("/api/entries/?from=2026-01-06&to=2026-01-31") == ["Work day"]
    assert titles("/api/entries/?q=park") == ["Park again", "Park walk"]
    assert titles("/api/entries/?q=meeting") == ["Work day"]
    assert titles("/api/entries/?q=park&to=2026-01-31") == ["Park walk"]
    response = api_client.get("/api/entries/?from=last-week")
    assert response.status_code == 400 and response.json()["error"] == "invalid_date"


def test_detail_has_every_field_and_segments(api_client, finished_entry):
    body = api_client.get(f"/api/entries/{finished_entry.pk}").json()
    assert body["title"] == finished_entry.title
    assert body["segments"] == [
        {"start": 0.0, "end": 3.0, "text": "Today I went for a long walk in the park."},
        {"start": 6.0, "end": 9.0, "text": "I felt calm and happy afterwards."},
    ]
    assert body["paragraphs"] == ["Today I went for a long walk in the park.", "I felt calm and happy afterwards."]
    assert body["mood_label"] == "positive" and body["mood_score"] > 0
    assert body["job_name"].startswith("transcription_") and body["language"] == "en"
    assert set(body) >= {"summary", "tags", "raw_transcript", "formatter", "recorded_at", "duration_seconds"}


def test_job_shows_entry_once_done(api_client, finished_entry):
    job = finished_entry.recording.job
    body = api_client.get(f"/api/jobs/{job.job_name}").json()
    assert body["status"] == "done" and body["progress"] == 100 and body["entry_id"] == finished_entry.pk


def test_markdown_rendering(api_client, finished_entry):
    response = api_client.get(f"/api/entries/{finished_entry.pk}/markdown")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/markdown")
    text = response.content.decode()
    assert text.startswith(f"# {finished_entry.title}\n")
    assert "## Summary" in text and "I felt calm and happy afterwards." in text
    assert "- `0:00:06–0:00:09` I felt calm and happy afterwards." in text


def test_audio_is_streamed_to_its_owner(api_client, finished_entry):
    response = api_client.get(f"/api/entries/{finished_entry.pk}/audio")
    assert response.status_code == 200 and response["Cache-Control"] == "private, no-store"
    assert b"".join(response.streaming_content)[:4] == b"RIFF"


def test_audio_answers_byte_ranges_and_logs_one_play_per_playback(api_client, finished_entry):
    url = f"/api/entries/{finished_entry.pk}/audio"
    with default_storage.open(finished_entry.recording.audio.name, "rb") as stored:
        audio = stored.read()
    size = len(audio)
    assert size == finished_entry.recording.size_bytes

    whole = api_client.get(url)
    assert whole.status_code == 200 and whole["Accept-Ranges"] == "bytes"
    assert b"".join(whole.streaming_content) == audio

    # A player seeking: the bytes asked for, with where they sit in the file.
    middle = api_client.get(url, HTTP_RANGE="bytes=100-1123")
    assert middle.status_code == 206
    assert middle["Content-Range"] == f"bytes 100-1123/{size}" and middle["Content-Length"] == "1024"
    assert b"".join(middle.streaming_content) == audio[100:1124]
    tail = api_client.get(url, HTTP_RANGE="bytes=-10")
    assert tail.status_code == 206 and b"".join(tail.streaming_content) == audio[-10:]
    open_ended = api_client.get(url, HTTP_RANGE=f"bytes={size - 5}-")
    assert b"".join(open_ended.streaming_content) == audio[-5:]

    outside = api_client.get(url, HTTP_RANGE=f"bytes={size}-")
    assert outside.status_code == 416 and outside["Content-Range"] == f"bytes */{size}"
    assert outside.json()["error"] == "range_not_satisfiable"

    # Only requests from byte 0 start a playback: the whole file once, nothing for the seeks.
    plays = AccessEvent.objects.filter(action=AccessEvent.Action.PLAY, entry=finished_entry)
    assert plays.count() == 1 and plays.get().detail == "api"
    api_client.get(url, HTTP_RANGE="bytes=0-")
    assert plays.count() == 2


def test_delete_removes_entry_recording_and_audio(api_client, finished_entry, django_capture_on_commit_callbacks):
    name = finished_entry.recording.audio.name
    with django_capture_on_commit_callbacks(execute=True):
        assert api_client.delete(f"/api/entries/{finished_entry.pk}").status_code == 204
    assert not DiaryEntry.objects.exists()
    assert not default_storage.exists(name)
    assert api_client.get(f"/api/entries/{finished_entry.pk}").status_code == 404


@pytest.mark.parametrize("method,suffix", [("get", ""), ("delete", ""), ("get", "/markdown"), ("get", "/audio")])
def test_another_users_entry_is_404_and_untouched(other_api_client, finished_entry, method, suffix):
    response = getattr(other_api_client, method)(f"/api/entries/{finished_entry.pk}{suffix}")
    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "message": "Not found."}
    assert finished_entry.title.encode() not in response.content
    assert DiaryEntry.objects.filter(pk=finished_entry.pk).exists()


def test_another_users_job_is_404(other_api_client, finished_entry):
    job = finished_entry.recording.job
    assert other_api_client.get(f"/api/jobs/{job.job_name}").status_code == 404


def test_list_without_a_key_is_401(client):
    response = client.get("/api/entries/")
    assert response.status_code == 401 and response.json()["error"] == "not_authenticated"


def test_openapi_schema_and_docs(client):
    schema = client.get("/api/schema/?format=json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert {"/upload", "/api/jobs/{job_name}", "/api/entries/", "/api/entries/{id}"} <= set(paths)
    assert "multipart/form-data" in paths["/upload"]["post"]["requestBody"]["content"]
    docs = client.get("/api/docs/")
    assert docs.status_code == 200 and b"swagger-ui" in docs.content
    assert b"cdn.jsdelivr" not in docs.content  # assets come from the sidecar package: works offline


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok", "database": "ok", "storage": "ok"}


def test_healthz_answers_any_host_and_reports_storage_errors(client, settings, monkeypatch):
    # Load balancers probe by pod IP, which is not in ALLOWED_HOSTS.
    assert client.get("/healthz", HTTP_HOST="10.1.2.3:8000").status_code == 200
    assert client.get("/api/entries/", HTTP_HOST="10.1.2.3:8000").status_code == 400
    from django.core.files.storage import default_storage

    def broken(name):
        raise OSError("bucket unreachable")

    monkeypatch.setattr(default_storage, "exists", broken)
    response = client.get("/healthz")
    assert response.status_code == 503 and response.json()["storage"] == "error"

"""The client's web page (sign in, record or upload, follow the job, read entries) and the failed-login lockout."""

from __future__ import annotations

from datetime import datetime

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from diaries.models import DiaryEntry

pytestmark = pytest.mark.django_db


def make_entry(owner, title, when="2026-03-01T10:00:00+00:00", **extra):
    return DiaryEntry.objects.create(
        owner=owner, title=title, body=f"{title}.", summary="", recorded_at=datetime.fromisoformat(when), **extra
    )


def test_the_diary_page_needs_a_sign_in(client):
    response = client.get(reverse("diary-home"))
    assert response.status_code == 302 and response["Location"] == f"{reverse('login')}?next=/diary/"
    page = client.get(response["Location"]).content.decode()
    assert 'name="username"' in page and 'name="password"' in page


def test_signing_in_through_the_form_lands_on_the_diary(client, user):
    response = client.post(reverse("login"), {"username": "alice", "password": "pw-alice-123"})
    assert response.status_code == 302 and response["Location"] == reverse("diary-home")
    assert b"Signed in as <strong>alice</strong>" in client.get(reverse("diary-home")).content


def test_diary_page_lists_only_my_entries_newest_first(client, user, other_user):
    make_entry(user, "Older day", "2026-01-01T10:00:00+00:00", reviewer_notes="THERAPIST ONLY")
    make_entry(user, "Newer day", "2026-02-01T10:00:00+00:00")
    make_entry(other_user, "Bob's day")
    client.force_login(user)
    html = client.get(reverse("diary-home")).content.decode()
    assert html.index("Newer day") < html.index("Older day")
    assert "Bob&#x27;s day" not in html and "Bob's day" not in html
    assert "THERAPIST ONLY" not in html  # reviewer notes are never shown to the client
    for element in ('id="record-button"', 'id="timer"', 'id="level-bar"', 'id="file-input"', 'id="job-progress"'):
        assert element in html
    assert 'data-upload-url="/upload"' in html and "diaries/diary.js" in html


def test_diary_page_is_paginated(client, user):
    for day in range(1, 13):
        make_entry(user, f"day {day}", f"2026-01-{day:02d}T10:00:00+00:00")
    client.force_login(user)
    first = client.get(reverse("diary-home")).content.decode()
    assert "day 12" in first and ">day 2<" not in first and "Older →" in first
    assert ">day 1<" in client.get(reverse("diary-home"), {"page": 2}).content.decode()


def test_entry_card_is_own_only(client, user, other_user):
    mine, theirs = make_entry(user, "Mine"), make_entry(other_user, "Theirs")
    client.force_login(user)
    card = client.get(reverse("diary-entry-card", args=[mine.pk]))
    assert card.status_code == 200 and b'id="entry-' in card.content and b"Mine" in card.content
    assert client.get(reverse("diary-entry-card", args=[theirs.pk])).status_code == 404


def test_upload_with_the_session_needs_the_csrf_token(
    user, speech_wav, fake_engine, django_capture_on_commit_callbacks
):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    page = browser.get(reverse("diary-home"))
    token = page.context["csrf_token"]

    def upload(**headers):
        audio = SimpleUploadedFile("diary.wav", speech_wav.read_bytes(), content_type="audio/wav")
        return browser.post("/upload", {"audio_file": audio}, **headers)

    assert upload().status_code == 403  # a cross-site form cannot upload in the user's name
    with django_capture_on_commit_callbacks(execute=False):
        accepted = upload(HTTP_X_CSRFTOKEN=str(token))
    assert accepted.status_code == 202, accepted.content
    job = browser.get(f"/api/jobs/{accepted.json()['job_name']}")
    assert job.status_code == 200 and job.json()["status"] == "queued"


def test_staff_see_a_link_to_the_review_admin(client, make_therapist, user):
    client.force_login(make_therapist("therapist_a", user))
    assert reverse("admin:index").encode() in client.get(reverse("diary-home")).content


def test_signing_out(client, user):
    client.force_login(user)
    assert client.post(reverse("logout")).status_code == 302
    assert client.get(reverse("diary-home")).status_code == 302


# --- Failed-login lockout (django-axes) ------------------------------------------------------------------


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user("therapist", password="right-password-1", is_staff=True)


def admin_login(client, password: str, username: str = "therapist"):
    return client.post(
        reverse("admin:login"), {"username": username, "password": password, "next": reverse("admin:index")}
    )


def test_admin_login_locks_after_the_failure_limit(client, staff, settings):
    assert settings.AXES_FAILURE_LIMIT == 5
    for _ in range(4):
        assert admin_login(client, "wrong").status_code == 200  # the form again, with an error
    locked = admin_login(client, "wrong")
    assert locked.status_code == 429 and b"Too many failed sign-in attempts" in locked.content
    # Even the right password is refused now, from anywhere (the username is locked).
    assert admin_login(client, "right-password-1").status_code == 429
    assert admin_login(Client(REMOTE_ADDR="198.51.100.7"), "right-password-1").status_code == 429


def test_a_success_before_the_limit_resets_the_count(client, staff):
    for _ in range(4):
        admin_login(client, "wrong")
    assert admin_login(client, "right-password-1").status_code == 302
    client.logout()
    for _ in range(4):
        assert admin_login(client, "wrong").status_code == 200


def test_the_client_login_is_protected_too(client, user):
    for _ in range(5):
        client.post(reverse("login"), {"username": "alice", "password": "nope"})
    assert client.post(reverse("login"), {"username": "alice", "password": "pw-alice-123"}).status_code == 429


def test_api_keys_are_not_affected_by_the_lockout(client, user, api_client):
    for _ in range(6):
        client.post(reverse("login"), {"username": "alice", "password": "nope"})
    assert api_client.get("/api/entries/").status_code == 200


def settings_in_a_fresh_process(**env: str) -> dict:
    import json
    import os
    import subprocess
    import sys

    from conftest import ROOT

    code = (
        "import json, diary_project.settings as s; print(json.dumps({k: getattr(s, k) for k in "
        "('AXES_ENABLED', 'AXES_FAILURE_LIMIT', 'AXES_COOLOFF_TIME', 'AXES_LOCKOUT_PARAMETERS', "
        "'AXES_TRUSTED_PROXY_COUNT', 'AUTHENTICATION_BACKENDS')}))"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AXES_")}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env={**clean, **env}, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_lockout_settings_have_safe_defaults_and_come_from_the_environment():
    defaults = settings_in_a_fresh_process()
    assert defaults["AXES_ENABLED"] is True and defaults["AXES_FAILURE_LIMIT"] == 5
    assert defaults["AXES_COOLOFF_TIME"] == 1.0 and defaults["AXES_LOCKOUT_PARAMETERS"] == ["username", "ip_address"]
    assert defaults["AXES_TRUSTED_PROXY_COUNT"] == 0
    assert defaults["AUTHENTICATION_BACKENDS"][0] == "axes.backends.AxesStandaloneBackend"
    custom = settings_in_a_fresh_process(
        AXES_FAILURE_LIMIT="3",
        AXES_COOLOFF_HOURS="0.5",
        AXES_LOCKOUT_PARAMETERS="username+ip_address",
        AXES_TRUSTED_PROXY_COUNT="2",
    )
    assert custom["AXES_FAILURE_LIMIT"] == 3 and custom["AXES_COOLOFF_TIME"] == 0.5
    assert custom["AXES_LOCKOUT_PARAMETERS"] == [["username", "ip_address"]] and custom["AXES_TRUSTED_PROXY_COUNT"] == 2
    assert settings_in_a_fresh_process(AXES_COOLOFF_HOURS="0")["AXES_COOLOFF_TIME"] is None  # locked until reset

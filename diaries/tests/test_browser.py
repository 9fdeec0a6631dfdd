"""In a real browser: Playwright driving Debian's Chromium (headless) against a live server.

- A therapist signs in to the admin, opens a new entry from the to-review queue, clicks a transcript line and
  the audio element's current time moves to that line, then marks the entry reviewed.
- A client signs in, records an entry with Chromium's fake microphone fed by a speech WAV made with
  espeak-ng, and sees the finished entry appear with the spoken words, transcribed by a real Celery worker
  running the real Whisper model.

Screenshots of every page are saved under test-artifacts/screenshots/ as artefacts.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from django.urls import reverse

from conftest import ROOT, SPOKEN_TEXT
from diaries.models import AccessEvent, DiaryEntry, ReviewStatus
from transcription.evaluation import word_error_rate

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
# Quiet, self-contained Chromium: no sandbox (containers, root), no GPU, no calls home.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
STEP_TIMEOUT_MS = 15_000


@pytest.fixture
def launch_browser(monkeypatch):
    """`launch_browser(*extra_args)`: a headless Chromium; everything is closed at teardown."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium is not installed at {CHROMIUM}: run `make test` (it installs the Debian package)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: pip install -r requirements-dev.txt")
    # Playwright's sync API runs an event loop in this thread; the ORM calls the test makes are still sync.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    playwright = sync_playwright().start()
    browsers = []

    def launch(*extra_args: str):
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=[*CHROMIUM_ARGS, *extra_args], timeout=30_000
        )
        browsers.append(browser)
        return browser

    yield launch
    for browser in browsers:
        browser.close()
    playwright.stop()


def new_page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(STEP_TIMEOUT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.js_errors = errors
    return page


def shot(page, name: str) -> None:
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def sign_in(page, url: str, username: str, password: str, screenshot: str) -> None:
    page.goto(url)
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    shot(page, screenshot)
    page.click("[type=submit]")


@pytest.mark.timeout(120)
def test_therapist_reviews_a_new_entry(live_server, launch_browser, user, make_therapist, finished_entry):
    therapist = make_therapist("therapist_a", user)
    page = new_page(launch_browser("--autoplay-policy=no-user-gesture-required"))

    sign_in(page, live_server.url + reverse("admin:index"), "therapist_a", "pw-therapist_a-123", "therapist-1-login")
    page.wait_for_selector("#to-review-link")
    shot(page, "therapist-2-admin-index")

    page.click("#to-review-link")
    page.wait_for_selector("#result_list")
    assert "Entries to review" in page.inner_text("#content")
    shot(page, "therapist-3-to-review")

    page.click(f"#result_list a:text-is('{finished_entry.title}')")
    page.wait_for_selector("#segments")
    assert page.inner_text("#formatter-name") == "rules"

    # Click the second line (6.0 s): the player seeks there and plays from that moment.
    line = page.locator('.segment[data-start="6.0"]')
    line.click()
    page.wait_for_function(
        """() => {
          const audio = document.getElementById("entry-audio");
          return audio.currentTime >= 6.0 && audio.currentTime < 9.5;
        }""",
        timeout=5_000,  # far less than the 6 s it would take to get there playing from the start
    )
    seeked = page.evaluate("document.getElementById('entry-audio').currentTime")
    assert 6.0 <= seeked < 9.5
    page.wait_for_timeout(500)
    state = page.evaluate(
        """() => {
          const audio = document.getElementById("entry-audio");
          return {time: audio.currentTime, ended: audio.ended, error: audio.error && audio.error.code};
        }"""
    )
    assert state["error"] is None and (state["time"] > seeked or state["ended"]), state  # and plays on from there
    assert "playing" in line.get_attribute("class")
    shot(page, "therapist-4-entry-playing")

    page.fill("textarea[name=reviewer_notes]", "Ask about the walk with her sister.")
    page.click("#mark-reviewed")
    page.wait_for_selector(".messagelist")
    shot(page, "therapist-5-after-review")
    messages_text = page.inner_text(".messagelist")
    assert f"“{finished_entry.title}” is now reviewed." in messages_text
    assert "0 diary entries" in page.inner_text("#changelist")  # back in the queue, which is now empty

    # The client's page: mood over time and entries per week as pictures, and exports of a period.
    page.goto(live_server.url + reverse("admin:diaries_diaryentry_clients"))
    shot(page, "therapist-6-clients")
    page.click("#result_list a:text-is('alice')")
    page.wait_for_selector("#mood-chart svg circle")
    assert page.locator("#weekly-chart svg rect.week").count() == 1
    shot(page, "therapist-7-client-charts")
    with page.expect_download() as download:
        page.click("#export-range-pdf")
    pdf = Path(download.value.path()).read_bytes()
    assert pdf.startswith(b"%PDF-") and download.value.suggested_filename.endswith(".pdf")

    finished_entry.refresh_from_db()
    assert finished_entry.review_status == ReviewStatus.REVIEWED
    assert finished_entry.reviewed_by == therapist and finished_entry.reviewer_notes.startswith("Ask about")
    logged = set(AccessEvent.objects.filter(user=therapist).values_list("action", flat=True))
    assert logged >= {"view", "play", "change", "export"}
    assert page.js_errors == []


@pytest.mark.timeout(120)
def test_client_records_an_entry_and_reads_it(live_server, launch_browser, start_worker, user, speech_wav, tmp_path):
    start_worker()  # the real Whisper model; starts while the browser signs in
    # Chromium reads WAV files for its fake microphone; %noloop: say it once, then silence.
    wav = tmp_path / "speech.wav"
    shutil.copy(speech_wav, wav)
    browser = launch_browser(
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}%noloop",
    )
    page = new_page(browser)

    sign_in(page, live_server.url + reverse("diary-home"), "alice", "pw-alice-123", "client-1-login")
    page.wait_for_selector("#record-button")
    assert "No entries yet" in page.inner_text("#entries")
    shot(page, "client-2-diary-empty")

    page.click("#record-button")
    page.wait_for_function("document.getElementById('timer').textContent === '0:04'")
    shot(page, "client-3-recording")
    # The speech is about 8 s long; stop once it has all been heard.
    page.wait_for_function("document.getElementById('timer').textContent === '0:09'")
    peak = float(page.get_attribute("#recorder", "data-peak-level") or 0)
    assert peak > 0.05, f"the level meter never moved (peak {peak})"
    page.click("#stop-button")

    page.wait_for_selector("#job:not([hidden])")
    started = time.monotonic()
    page.wait_for_function(
        "document.getElementById('job-progress').value > 0 && document.getElementById('job-status').textContent"
    )
    shot(page, "client-4-progress")
    page.wait_for_selector(".entry.fresh", timeout=90_000)
    assert page.inner_text("#job-status") == "Your entry is ready."
    shot(page, "client-5-entry")

    text = page.inner_text(".entry.fresh .entry-body")
    assert word_error_rate(SPOKEN_TEXT, text) < 0.35, text
    assert "walk" in text.lower() and "park" in text.lower()
    entry = DiaryEntry.objects.get(owner=user)
    assert entry.recording.original_filename.endswith(".webm") and entry.recording.audio_format == "matroska,webm"
    assert page.js_errors == [], page.js_errors
    # It stays after a reload, newest first.
    page.reload()
    assert page.inner_text("#entry-list .entry-title") == entry.title
    print(f"client flow: entry shown {time.monotonic() - started:.1f}s after the upload started")

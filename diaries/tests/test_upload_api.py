"""POST /upload: the original design's contract, every auth case and every bad input."""

from __future__ import annotations

import io
import wave

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from diaries.models import ApiKey
from diaries.services import api_key_revoke
from transcription.models import Recording, TranscriptionJob

pytestmark = pytest.mark.django_db


def wav_upload(path, name="walk.wav", content_type="audio/wav"):
    return SimpleUploadedFile(name, path.read_bytes(), content_type=content_type)


def assert_error(response, status: int, code: str | None = None):
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) >= {"error", "message"} and body["message"]
    if code:
        assert body["error"] == code
    assert not TranscriptionJob.objects.exists(), "nothing may be queued for a refused upload"
    return body


def test_upload_answers_202_with_the_original_contract(api_client, speech_wav, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = api_client.post(
            "/upload", {"audio_file": wav_upload(speech_wav), "recorded_at": "2026-11-20T08:30:00Z"}, format="multipart"
        )
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["message"] == "File uploaded and transcription started"
    assert body["job_name"].startswith("transcription_") and len(body["job_name"]) == len("transcription_") + 16
    assert response["Location"] == f"/api/jobs/{body['job_name']}"
    assert len(callbacks) == 1  # the chain is published only after the rows are committed
    recording = Recording.objects.get()
    assert recording.original_filename == "walk.wav" and recording.audio_format == "wav"
    assert recording.size_bytes == speech_wav.stat().st_size
    assert recording.duration_seconds == pytest.approx(7.5, abs=2.5)
    assert recording.recorded_at.isoformat() == "2026-11-20T08:30:00+00:00"
    import hashlib

    assert recording.sha256 == hashlib.sha256(speech_wav.read_bytes()).hexdigest()


def test_job_status_is_readable_by_its_owner(api_client, speech_wav):
    job_name = api_client.post("/upload", {"audio_file": wav_upload(speech_wav)}, format="multipart").json()["job_name"]
    body = api_client.get(f"/api/jobs/{job_name}").json()
    assert body["job_name"] == job_name and body["status"] == "queued" and body["progress"] == 0
    assert body["entry_id"] is None and body["error_message"] == ""


def test_missing_key_is_401(client, speech_wav):
    response = client.post("/upload", {"audio_file": wav_upload(speech_wav)})
    assert_error(response, 401)
    assert response["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize("header", ["Bearer nope", "Bearer ad_deadbeef_wrong", "Token abc", "Bearer a b", "Bearer"])
def test_bad_key_is_401(header, speech_wav, user):
    response = Client().post("/upload", {"audio_file": wav_upload(speech_wav)}, HTTP_AUTHORIZATION=header)
    assert_error(response, 401)


def test_revoked_key_is_401_and_last_use_is_recorded(api_client, speech_wav):
    key = ApiKey.objects.get()
    assert api_client.get("/api/entries/").status_code == 200
    key.refresh_from_db()
    assert key.last_used_at is not None
    api_key_revoke(api_key=key)
    assert_error(api_client.post("/upload", {"audio_file": wav_upload(speech_wav)}, format="multipart"), 401)


def test_key_is_stored_only_as_a_hash(api_client):
    key = ApiKey.objects.get()
    assert api_client.api_key not in (key.key_hash, key.prefix)
    assert key.prefix in api_client.api_key and len(key.key_hash) == 64


def test_missing_file_field_is_400(api_client):
    body = assert_error(api_client.post("/upload", {"recorded_at": "2026-01-01T00:00:00Z"}, format="multipart"), 400)
    assert "audio_file" in body["message"]


def test_duplicated_file_field_is_400(api_client, speech_wav):
    response = api_client.post(
        "/upload", {"audio_file": [wav_upload(speech_wav), wav_upload(speech_wav)]}, format="multipart"
    )
    assert_error(response, 400, "duplicate_field")


def test_empty_file_is_400(api_client):
    response = api_client.post(
        "/upload", {"audio_file": SimpleUploadedFile("a.wav", b"", "audio/wav")}, format="multipart"
    )
    assert_error(response, 400, "empty_file")


@pytest.mark.parametrize(
    "name,content",
    [
        ("notes.mp3", b"Dear diary, this is text and not audio at all.\n" * 50),
        ("photo.mp3", bytes.fromhex("89504e470d0a1a0a0000000d49484452") + b"\x00" * 2000),
        ("random.ogg", bytes(range(256)) * 40),
    ],
)
def test_non_audio_with_an_audio_name_is_415(api_client, name, content):
    upload = SimpleUploadedFile(name, content, content_type="audio/mpeg")
    body = assert_error(
        api_client.post("/upload", {"audio_file": upload}, format="multipart"), 415, "unsupported_audio"
    )
    assert "not audio" in body["message"]


def test_header_that_lies_is_415(api_client):
    # A RIFF/WAVE header followed by text: the header claims audio, the content is not.
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"")
    lying = buffer.getvalue()[:36] + b"LIST" + (4000).to_bytes(4, "little") + b"not audio " * 400
    upload = SimpleUploadedFile("liar.wav", lying, content_type="audio/wav")
    assert_error(api_client.post("/upload", {"audio_file": upload}, format="multipart"), 415)


def test_truncated_audio_keeps_what_decodes(api_client, speech_wav, tmp_path):
    from conftest import transcode

    mp3 = transcode(speech_wav, tmp_path / "walk.mp3", codec="mp3")
    truncated = mp3.read_bytes()[: len(mp3.read_bytes()) // 2]
    upload = SimpleUploadedFile("cut.mp3", truncated, content_type="audio/mpeg")
    response = api_client.post("/upload", {"audio_file": upload}, format="multipart")
    assert response.status_code == 202
    assert 1.0 < Recording.objects.get().duration_seconds < 6.0


def test_over_the_size_limit_is_413_before_reading(api_client, speech_wav, settings):
    settings.UPLOAD_MAX_BYTES = 100_000
    big = SimpleUploadedFile("big.wav", b"\x00" * 300_000, content_type="audio/wav")
    body = assert_error(api_client.post("/upload", {"audio_file": big}, format="multipart"), 413, "too_large")
    assert "limit" in body["message"]


def _chunked_request(body: bytes, content_type: str, key: str) -> tuple[int, dict]:
    """Call the real WSGI application the way gunicorn does for a chunked upload (no Content-Length)."""
    import json

    from diary_project.wsgi import application

    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/upload",
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.input_terminated": True,
        "wsgi.errors": io.StringIO(),
        "CONTENT_TYPE": content_type,
        "HTTP_TRANSFER_ENCODING": "chunked",
        "HTTP_AUTHORIZATION": f"Bearer {key}",
        "HTTP_HOST": "testserver",
    }
    status = {}
    chunks = application(environ, lambda s, h, *a: status.setdefault("code", int(s.split()[0])))
    return status["code"], json.loads(b"".join(chunks))


def _multipart(path, name="walk.wav"):
    from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart

    return encode_multipart(BOUNDARY, {"audio_file": wav_upload(path, name=name)}), MULTIPART_CONTENT


@pytest.mark.django_db(transaction=True)
def test_chunked_upload_without_content_length_is_accepted(api_client, speech_wav, django_capture_on_commit_callbacks):
    body, content_type = _multipart(speech_wav)
    with django_capture_on_commit_callbacks(execute=False):
        code, data = _chunked_request(body, content_type, api_client.api_key)
    assert code == 202, data
    assert Recording.objects.get().size_bytes == speech_wav.stat().st_size


@pytest.mark.django_db(transaction=True)
def test_one_byte_over_the_limit_without_content_length_is_413(api_client, speech_wav, settings):
    settings.UPLOAD_MAX_BYTES = speech_wav.stat().st_size - 1
    body, content_type = _multipart(speech_wav)
    code, data = _chunked_request(body, content_type, api_client.api_key)
    assert code == 413 and data["error"] == "too_large"
    assert not TranscriptionJob.objects.exists()


def test_at_the_size_limit_is_accepted(api_client, speech_wav, settings):
    settings.UPLOAD_MAX_BYTES = speech_wav.stat().st_size
    assert api_client.post("/upload", {"audio_file": wav_upload(speech_wav)}, format="multipart").status_code == 202


def test_too_long_recording_is_413(api_client, speech_wav, settings):
    settings.RECORDING_MAX_SECONDS = 2
    body = assert_error(
        api_client.post("/upload", {"audio_file": wav_upload(speech_wav)}, format="multipart"), 413, "too_long"
    )
    assert "limit" in body["message"]


@pytest.mark.parametrize("value", ["yesterday", "2999-01-01T00:00:00Z", "1900-01-01T00:00:00Z", "x" * 5000])
def test_invalid_recorded_at_is_400(api_client, speech_wav, value):
    response = api_client.post(
        "/upload", {"audio_file": wav_upload(speech_wav), "recorded_at": value}, format="multipart"
    )
    assert_error(response, 400)


def test_json_body_instead_of_multipart_is_415(api_client):
    response = api_client.post("/upload", {"audio_file": "aGVsbG8="}, format="json")
    assert_error(response, 415)


def test_invalid_language_is_400(api_client, speech_wav):
    response = api_client.post(
        "/upload", {"audio_file": wav_upload(speech_wav), "language": "english!"}, format="multipart"
    )
    assert_error(response, 400, "invalid_language")


@pytest.mark.parametrize(
    "codec,container,suffix",
    [
        ("mp3", "mp3", "mp3"),
        ("libopus", "ogg", "ogg"),
        ("flac", "flac", "flac"),
        ("aac", "mp4", "m4a"),
        ("libopus", "webm", "webm"),
    ],
)
def test_common_formats_are_accepted(api_client, speech_wav, tmp_path, codec, container, suffix):
    from conftest import transcode

    rate = 48000 if "opus" in codec else 16000
    path = transcode(speech_wav, tmp_path / f"walk.{suffix}", codec=codec, container=container, rate=rate)
    response = api_client.post(
        "/upload", {"audio_file": wav_upload(path, name=path.name, content_type="audio/*")}, format="multipart"
    )
    assert response.status_code == 202, response.content
    recording = Recording.objects.get()
    assert recording.duration_seconds == pytest.approx(7.5, abs=2.5)
    assert recording.audio.name.endswith("." + {"m4a": "m4a", "webm": "webm"}.get(suffix, suffix))


def test_upload_rate_limit_is_429_with_retry_after(api_client, speech_wav, settings):
    from django.core.cache import cache

    cache.clear()
    rates = dict(settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], upload="2/min")
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}
    from rest_framework.throttling import SimpleRateThrottle

    SimpleRateThrottle.THROTTLE_RATES = rates
    try:
        codes = [
            api_client.post("/upload", {"audio_file": wav_upload(speech_wav)}, format="multipart").status_code
            for _ in range(3)
        ]
        assert codes == [202, 202, 429]
        response = api_client.post("/upload", {"audio_file": wav_upload(speech_wav)}, format="multipart")
        assert response.status_code == 429 and int(response["Retry-After"]) > 0
        assert response.json()["error"] == "throttled"
    finally:
        from rest_framework.settings import api_settings

        SimpleRateThrottle.THROTTLE_RATES = api_settings.DEFAULT_THROTTLE_RATES
        cache.clear()


@pytest.mark.parametrize(
    "raw_name,status",
    [
        # Raw non-UTF-8 bytes in a header: Django's parser refuses the body, with a clear 400.
        (b"caf\xe9 \xff\xfe.wav", 400),
        # The standard way to send a non-ASCII name (RFC 5987/2231) is accepted.
        (b"x.wav\"; filename*=UTF-8''caf%C3%A9%20%F0%9F%8E%99.wav; x=\"", 202),
        (b"../../../../etc/cron.d/x.wav", 202),  # traversal: never reaches storage keys
        (b"evil\x00.wav", 202),
        (b"a" * 5000 + b".wav", 400),  # a multipart header over Django's limit: a clear parse error
    ],
    ids=["non-utf8", "rfc5987-utf8", "traversal", "nul", "very-long"],
)
def test_non_utf8_and_hostile_filenames(api_client, speech_wav, raw_name, status):
    from django.test.client import BOUNDARY, MULTIPART_CONTENT

    body = (
        b"--" + BOUNDARY.encode() + b"\r\n"
        b'Content-Disposition: form-data; name="audio_file"; filename="' + raw_name + b'"\r\n'
        b"Content-Type: audio/wav\r\n\r\n" + speech_wav.read_bytes() + b"\r\n"
        b"--" + BOUNDARY.encode() + b"--\r\n"
    )
    response = api_client.generic("POST", "/upload", body, content_type=MULTIPART_CONTENT)
    assert response.status_code == status, response.content
    if status == 202:
        recording = Recording.objects.get()
        assert recording.audio.name.startswith("recordings/") and ".." not in recording.audio.name
        assert "/" not in recording.original_filename and "\x00" not in recording.original_filename
        assert recording.original_filename.endswith(".wav")
    else:
        assert response.json()["error"] == "parse_error" and not Recording.objects.exists()


def test_ten_hour_recording_is_refused_by_the_duration_limit(api_client, tmp_path):
    # Ten real hours of 8-bit audio at 1 kHz (36 MB): measured by demuxing, not from the header.
    path = tmp_path / "ten-hours.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(1)
        w.setframerate(1000)
        silence = b"\x80" * 1000 * 3600
        for _ in range(10):
            w.writeframes(silence)
    with path.open("rb") as handle:
        response = api_client.post("/upload", {"audio_file": handle}, format="multipart")
    body = assert_error(response, 413, "too_long")
    assert "10.0 h long" in body["message"] and "limit is 4 h" in body["message"]


def test_header_claiming_ten_hours_is_measured_by_its_content(api_client, speech_wav):
    # A WAV whose header claims a huge data size over a few seconds of audio: accepted as what it is.
    data = bytearray(speech_wav.read_bytes())
    index = data.find(b"data")
    data[index + 4 : index + 8] = (0x7FFFFFF0).to_bytes(4, "little")
    upload = SimpleUploadedFile("liar.wav", bytes(data), content_type="audio/wav")
    assert api_client.post("/upload", {"audio_file": upload}, format="multipart").status_code == 202
    assert Recording.objects.get().duration_seconds < 15

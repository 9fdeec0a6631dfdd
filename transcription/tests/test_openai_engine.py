"""OpenAITranscriptionEngine against the fake OpenAI-compatible server (real HTTP on 127.0.0.1)."""

from __future__ import annotations

import json
import socket
import wave
from pathlib import Path
from typing import Any

import pytest

from transcription.engines.base import AudioRef, EngineError, Segment, TranscribeOptions, Transcript
from transcription.engines.openai_engine import OpenAITranscriptionEngine, iso_language
from transcription.tests.fake_openai_server import Behaviour, FakeOpenAIServer, fake_openai  # noqa: F401


def write_wav(path: Path, seconds: float = 0.5, rate: int = 16000) -> Path:
    """A short silent 16-bit mono WAV (the fake server does not decode audio)."""
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(b"\x00\x00" * int(seconds * rate))
    return path


@pytest.fixture
def wav_path(tmp_path: Path) -> Path:
    return write_wav(tmp_path / "entry.wav")


def make_engine(server: FakeOpenAIServer, **kwargs: Any) -> OpenAITranscriptionEngine:
    kwargs.setdefault("timeout", 5.0)
    return OpenAITranscriptionEngine(api_key="sk-test", base_url=server.base_url, **kwargs)


def test_verbose_json_segments_are_mapped(fake_openai, wav_path):  # noqa: F811
    fake_openai.script_transcription(
        Behaviour.transcription(
            [(0.0, 2.4, " Today I went to the market."), (2.4, 5.12, " It was raining."), (5.12, 5.5, "  ")],
            language="english",
            duration=5.6,
        )
    )
    engine = make_engine(fake_openai, model="whisper-1")
    audio = AudioRef(key="recordings/abc.wav", local_path=str(wav_path), content_type="audio/wav")

    handle = engine.start(audio, TranscribeOptions(job_name="job-1", language="en"))
    json.dumps(handle)  # stored on the job row between start and poll
    transcript = engine.poll(json.loads(json.dumps(handle)))

    assert isinstance(transcript, Transcript)
    assert transcript.segments == (
        Segment(0.0, 2.4, "Today I went to the market."),
        Segment(2.4, 5.12, "It was raining."),
    )
    assert (transcript.language, transcript.duration) == ("en", 5.6)
    assert (transcript.engine, transcript.model) == ("openai", "whisper-1")

    (request,) = fake_openai.transcription_requests
    assert request.headers["authorization"] == "Bearer sk-test"
    assert request.form["model"] == ["whisper-1"]
    assert request.form["response_format"] == ["verbose_json"]
    assert request.form["timestamp_granularities[]"] == ["segment"]
    assert request.form["language"] == ["en"]
    filename, content = request.files["file"]
    assert filename == "entry.wav"
    assert content == wav_path.read_bytes()


def test_language_detected_and_file_named_from_key(fake_openai, tmp_path):  # noqa: F811
    fake_openai.script_transcription(Behaviour.transcription([(0.0, 1.0, " Hallo.")], language="german"))
    path = write_wav(tmp_path / "upload-tmp")  # temporary files often have no extension
    engine = make_engine(fake_openai)

    transcript = engine.poll(engine.start(AudioRef(key="a/b/voice.wav", local_path=str(path)), TranscribeOptions("j")))

    assert transcript.language == "de"
    (request,) = fake_openai.transcription_requests
    assert "language" not in request.form
    assert request.files["file"][0] == "voice.wav"


def test_json_only_models_get_one_segment(fake_openai, wav_path):  # noqa: F811
    fake_openai.script_transcription(Behaviour.transcription([(0.0, 3.0, " Just text.")]))
    engine = make_engine(fake_openai, model="gpt-4o-mini-transcribe")

    transcript = engine.poll(
        engine.start(AudioRef(key="k.wav", local_path=str(wav_path), duration=3.2), TranscribeOptions("j"))
    )

    assert [seg.text for seg in transcript.segments] == ["Just text."]
    (request,) = fake_openai.transcription_requests
    assert request.form["response_format"] == ["json"]
    assert "timestamp_granularities[]" not in request.form


def test_rate_limit_is_transient_and_not_retried_in_process(fake_openai, wav_path):  # noqa: F811
    fake_openai.script_transcription(Behaviour.rate_limited(retry_after="7"))
    engine = make_engine(fake_openai)

    with pytest.raises(EngineError) as excinfo:
        engine.start(AudioRef(key="k.wav", local_path=str(wav_path)), TranscribeOptions("j"))

    assert not excinfo.value.permanent
    assert excinfo.value.retry_after == 7.0
    assert len(fake_openai.transcription_requests) == 1  # max_retries=0: Celery does the backing off


@pytest.mark.parametrize(
    ("behaviour", "permanent"),
    [
        (Behaviour.status_error(401, "Incorrect API key provided", "invalid_api_key"), True),
        (Behaviour.status_error(400, "Invalid file format.", "invalid_value"), True),
        (Behaviour.status_error(404, "The model does not exist", "model_not_found"), True),
        (Behaviour.rate_limited(code="insufficient_quota"), True),
        (Behaviour.server_error(), False),
        (Behaviour.status_error(503, "Service unavailable"), False),
        (Behaviour.raw(b"{broken"), False),
    ],
)
def test_http_errors_are_classified(fake_openai, wav_path, behaviour, permanent):  # noqa: F811
    fake_openai.script_transcription(behaviour)
    engine = make_engine(fake_openai)

    with pytest.raises(EngineError) as excinfo:
        engine.start(AudioRef(key="k.wav", local_path=str(wav_path)), TranscribeOptions("j"))

    assert excinfo.value.permanent is permanent
    if behaviour.kind == "status":
        assert str(behaviour.status) in excinfo.value.message


def test_timeout_is_transient(fake_openai, wav_path):  # noqa: F811
    fake_openai.script_transcription(Behaviour("transcription", delay=2.0))
    engine = make_engine(fake_openai, timeout=0.3)

    with pytest.raises(EngineError) as excinfo:
        engine.start(AudioRef(key="k.wav", local_path=str(wav_path)), TranscribeOptions("j"))
    assert not excinfo.value.permanent
    assert "timed out" in excinfo.value.message


def test_connection_refused_is_transient(wav_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    engine = OpenAITranscriptionEngine(api_key="sk-test", base_url=f"http://127.0.0.1:{port}/v1", timeout=1.0)

    with pytest.raises(EngineError) as excinfo:
        engine.start(AudioRef(key="k.wav", local_path=str(wav_path)), TranscribeOptions("j"))
    assert not excinfo.value.permanent


def test_too_large_or_missing_file(fake_openai, wav_path, tmp_path):  # noqa: F811
    engine = make_engine(fake_openai, max_upload_bytes=100)
    with pytest.raises(EngineError) as excinfo:
        engine.start(AudioRef(key="k.wav", local_path=str(wav_path)), TranscribeOptions("j"))
    assert excinfo.value.permanent

    with pytest.raises(EngineError) as excinfo:
        make_engine(fake_openai).start(AudioRef(key="k.wav"), TranscribeOptions("j"))
    assert excinfo.value.permanent

    with pytest.raises(EngineError) as excinfo:
        make_engine(fake_openai).start(
            AudioRef(key="k.wav", local_path=str(tmp_path / "gone.wav")), TranscribeOptions("j")
        )
    assert not excinfo.value.permanent
    assert fake_openai.transcription_requests == []


@pytest.mark.parametrize(("value", "expected"), [("english", "en"), ("en-US", "en"), ("pt", "pt"), (None, "")])
def test_iso_language(value, expected):
    assert iso_language(value) == expected

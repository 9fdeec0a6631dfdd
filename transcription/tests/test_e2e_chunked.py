"""A long recording split into chunks that two real Celery workers transcribe in parallel.

Chunking is set small here (recordings from 30 s, chunks of about 20 s) so that a minute and a
half of espeak-ng speech makes several chunks; the real bundled Whisper `base` transcribes them.
"""

from __future__ import annotations

import wave
from itertools import pairwise

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from conftest import make_speech, wait_for
from diaries.models import DiaryEntry
from transcription.benchmarks import BENCH_PARAGRAPHS
from transcription.engines.whisper import SAMPLE_RATE, decode_audio_file
from transcription.evaluation import word_error_rate
from transcription.models import ChunkStatus, JobStatus, TranscriptionChunk, TranscriptionJob

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

CHUNKING = {"WHISPER_CHUNK_MIN_SECONDS": "30", "WHISPER_CHUNK_SECONDS": "20"}


def join_with_pauses(parts, target, pause_seconds=1.0):
    with wave.open(str(parts[0])) as first:
        params = first.getparams()
    with wave.open(str(target), "wb") as out:
        out.setparams(params)
        for index, part in enumerate(parts):
            with wave.open(str(part)) as source:
                out.writeframes(source.readframes(source.getnframes()))
            if index < len(parts) - 1:
                out.writeframes(b"\x00" * int(params.framerate * pause_seconds) * params.sampwidth)
    return target


def test_a_long_recording_is_chunked_across_two_workers_and_merged(api_client, tmp_path, start_worker, settings):
    for name, value in CHUNKING.items():
        setattr(settings, name, float(value))
    paragraphs = BENCH_PARAGRAPHS[:5]
    parts = [make_speech(text, tmp_path / f"p{i}.wav", speed=160) for i, text in enumerate(paragraphs)]
    recording = join_with_pauses(parts, tmp_path / "diary.wav")
    reference = " ".join(paragraphs)
    # Two worker processes with one single-threaded model each: two cores, not oversubscribed.
    env = {**CHUNKING, "WHISPER_NUM_WORKERS": "1", "WHISPER_CPU_THREADS": "1"}
    start_worker(wait=False, **env)
    start_worker(**env)

    upload = SimpleUploadedFile("diary.wav", recording.read_bytes(), content_type="audio/wav")
    job_name = api_client.post("/upload", {"audio_file": upload}, format="multipart").json()["job_name"]
    wait_for(
        lambda: TranscriptionJob.objects.get(job_name=job_name).status in {"done", "failed"},
        timeout=240,
        message="the chunked job to finish",
    )

    job = TranscriptionJob.objects.get(job_name=job_name)
    assert job.status == JobStatus.DONE, job.error_message
    chunks = list(TranscriptionChunk.objects.filter(job=job).order_by("index"))
    assert len(chunks) >= 3 and job.timings["chunks"] == len(chunks)
    assert all(chunk.status == ChunkStatus.DONE for chunk in chunks)
    # Parallel: more than one worker process transcribed chunks.
    assert len({chunk.timings["worker"].split(":")[1] for chunk in chunks}) == 2
    # Contiguous, and every cut lies in a silence of the audio itself.
    audio = decode_audio_file(str(recording))
    assert chunks[0].start == 0 and chunks[-1].end == pytest.approx(len(audio) / SAMPLE_RATE, abs=0.01)
    for previous, chunk in pairwise(chunks):
        assert previous.end == chunk.start
        around = audio[int((chunk.start - 0.1) * SAMPLE_RATE) : int((chunk.start + 0.1) * SAMPLE_RATE)]
        assert np.abs(around).max() < 0.01, f"chunk {chunk.index} starts in speech at {chunk.start}"
    # Each chunk's segments lie in its own range; merged in time order, none twice, none lost.
    for chunk in chunks:
        for segment in chunk.transcript["segments"]:
            assert chunk.start <= segment["start"] < segment["end"] <= chunk.end + 0.01
    entry = DiaryEntry.objects.get(recording=job.recording)
    starts = [segment["start"] for segment in entry.segments]
    assert starts == sorted(starts)
    assert len(entry.segments) == sum(len(chunk.transcript["segments"]) for chunk in chunks)
    assert word_error_rate(reference, entry.raw_transcript) < 0.12, entry.raw_transcript
    assert entry.language == "en"

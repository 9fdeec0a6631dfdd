"""Long recordings in chunks: planning at silences, merging, and the chunk rows' claims and leases.

The chain's behaviour uses a scriptable engine; planning runs the real Silero VAD on espeak-ng speech.
"""

from __future__ import annotations

from datetime import timedelta
from itertools import pairwise
from typing import Any

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from conftest import make_speech
from diaries.models import DiaryEntry
from transcription import services
from transcription.engines import registry
from transcription.engines.base import Segment, Transcript
from transcription.engines.whisper import (
    SAMPLE_RATE,
    WhisperEngine,
    decode_audio_file,
    merge_transcripts,
    plan_chunks,
)
from transcription.models import ChunkStatus, JobStage, JobStatus, TranscriptionChunk, TranscriptionJob

SENTENCES = [
    "This morning I woke up early and made coffee.",
    "The rain on the window was calm and steady.",
    "At work the meeting went better than I expected.",
    "My manager agreed that we need two more weeks.",
    "In the afternoon I called my mother.",
    "She asked again when I am going to visit.",
    "Tonight I cooked pasta and listened to music.",
    "I am grateful for the quiet dinner.",
]


def test_chunks_are_cut_only_in_the_silences_of_real_speech(tmp_path, settings):
    pieces, silences, cursor = [], [], 0.0
    for index, sentence in enumerate(SENTENCES):
        speech = decode_audio_file(str(make_speech(sentence, tmp_path / f"s{index}.wav")))
        pieces.append(speech)
        cursor += len(speech) / SAMPLE_RATE
        if index < len(SENTENCES) - 1:
            gap = 0.6 + 0.2 * (index % 3)  # known silences of 0.6-1.0 s between sentences
            pieces.append(np.zeros(int(gap * SAMPLE_RATE), dtype=np.float32))
            silences.append((cursor, cursor + gap))
            cursor += gap
    audio = np.concatenate(pieces)
    engine = WhisperEngine(cache_dir=settings.WHISPER_MODEL_CACHE, cpu_threads=1, num_workers=2)

    chunks = engine.plan_chunks(audio, target_seconds=8, min_silence_ms=300)

    assert len(chunks) >= 3
    assert chunks[0][0] == 0.0 and chunks[-1][1] == pytest.approx(len(audio) / SAMPLE_RATE)
    for (_, end), (start, _) in pairwise(chunks):
        assert end == start  # contiguous: nothing lost, nothing twice
        assert any(low + 0.05 <= end <= high - 0.05 for low, high in silences), (end, silences)


def test_planning_prefers_long_silences_near_the_target_and_never_cuts_speech():
    # 40 s in four shares of 10 s; speech everywhere except these gaps.
    gaps = [(9.85, 10.15), (10.5, 11.3), (25.0, 26.0), (29.6, 30.0)]
    speech, start = [], 0.0
    for low, high in gaps:
        speech.append((start, low))
        start = high
    speech.append((start, 40.0))

    chunks = plan_chunks(speech, 40.0, target_seconds=10, min_silence_seconds=0.3)

    # Near 10 s the longer silence (10.9) beats the nearer short one (10.0); nothing near 20 s, so the
    # chunk grows to the next silence (25.5); near 30 s the one there (29.8). Every cut is mid-silence.
    assert [end for _, end in chunks[:-1]] == [10.9, 25.5, 29.8]
    assert chunks[0][0] == 0 and chunks[-1][1] == 40.0
    # No silence at all: one chunk, never a cut through speech.
    assert plan_chunks([(0.0, 50.0)], 50.0, target_seconds=10, min_silence_seconds=0.3) == [(0.0, 50.0)]
    # Short recordings stay whole; longer ones get an even number of equal shares.
    assert plan_chunks(speech, 12.0, target_seconds=10, min_silence_seconds=0.3) == [(0.0, 12.0)]
    even = [(i * 5.0, i * 5.0 + 4.5) for i in range(14)]
    assert len(plan_chunks(even, 70.0, target_seconds=10, min_silence_seconds=0.3)) == 8


def test_merge_keeps_time_order_and_every_segment():
    first = Transcript("en", (Segment(0.5, 4.0, "one"), Segment(5.0, 9.0, "two")), 10.0, 0.98)
    second = Transcript("en", (Segment(10.4, 14.0, "three"), Segment(15.0, 19.5, "four")), 10.0, 0.96)
    third = Transcript("de", (Segment(20.2, 21.0, "fünf"),), 2.0, 0.6)

    merged = merge_transcripts([third, first, second], duration=22.0, engine="whisper", model="base")

    assert [s.text for s in merged.segments] == ["one", "two", "three", "four", "fünf"]
    assert merged.text == "one two three four fünf"
    assert merged.language == "en" and merged.language_probability == 0.97
    assert merged.duration == 22.0 and merged.model == "base"


# --- The chain with a scriptable chunking engine --------------------------------------


class ChunkingFakeEngine:
    """Like WhisperEngine: decodes, plans fixed chunks, transcribes ranges (two segments per chunk)."""

    name = "fakechunks"
    needs_local_file = True
    supports_chunks = True
    model_name = "fake"
    bounds: list[tuple[float, float]] = [(0.0, 3.0), (3.0, 6.0), (6.0, 8.5)]
    calls: list[float] = []

    def warm_up(self) -> None:
        pass

    def decode(self, path: str) -> np.ndarray:
        return np.zeros(int(8.5 * SAMPLE_RATE), dtype=np.float32)

    def decode_to_pcm(self, path: str, target) -> np.ndarray:
        target.parent.mkdir(parents=True, exist_ok=True)
        np.zeros(int(8.5 * SAMPLE_RATE), dtype=np.int16).tofile(target)
        return np.memmap(target, dtype=np.int16, mode="r")

    def plan_chunks(self, samples: np.ndarray, *, target_seconds: float, min_silence_ms: int) -> list:
        return list(self.bounds)

    def transcribe_audio(self, samples: np.ndarray, *, language=None, offset: float = 0.0, on_progress=None):
        ChunkingFakeEngine.calls.append(offset)
        length = len(samples) / SAMPLE_RATE
        segments = (
            Segment(offset + 0.1, offset + length / 2, f"words at {offset:g}"),
            Segment(offset + length / 2, offset + length - 0.1, f"more at {offset:g}"),
        )
        return Transcript("en", segments, length, 0.99, self.name, self.model_name)

    def poll(self, handle: dict[str, Any]) -> Transcript:
        return Transcript.from_dict(handle["transcript"])


@pytest.fixture
def chunking_engine(monkeypatch, settings):
    monkeypatch.setitem(registry.ENGINES, "fakechunks", "transcription.tests.test_chunking.ChunkingFakeEngine")
    settings.TRANSCRIPTION_ENGINE = "fakechunks"
    settings.WHISPER_CHUNK_MIN_SECONDS = 5
    ChunkingFakeEngine.calls = []
    return ChunkingFakeEngine


@pytest.fixture
def published(monkeypatch) -> dict[str, list]:
    """What would have gone to the broker: chunk tasks and chains."""
    sent: dict[str, list] = {"chunks": [], "chains": []}
    monkeypatch.setattr(services, "_chunks_publish", lambda job_id, indexes: sent["chunks"].append(list(indexes)))
    monkeypatch.setattr(services, "job_enqueue", lambda *, job_id: sent["chains"].append(job_id))
    return sent


@pytest.fixture
def chunked_job(db, user, speech_wav, chunking_engine, published, django_capture_on_commit_callbacks):
    upload = SimpleUploadedFile("walk.wav", speech_wav.read_bytes(), content_type="audio/wav")
    job = services.recording_create(owner=user, uploaded_file=upload, enqueue=False)
    assert services.job_run_step(job_id=job.id, stage=JobStage.UPLOAD, worker="w1").advanced
    with django_capture_on_commit_callbacks(execute=True):
        assert services.job_run_step(job_id=job.id, stage=JobStage.TRANSCRIBE, worker="w1").advanced
    return job


def run_chunk(job: TranscriptionJob, index: int, worker: str) -> str:
    return services.chunk_transcribe(job_id=job.id, index=index, worker=worker).kind


@pytest.mark.django_db
def test_a_chunked_job_runs_each_chunk_once_and_merges_them(chunked_job, published, user):
    job = chunked_job
    job.refresh_from_db()
    assert job.stage == JobStage.POLL and job.engine_handle["chunks"] == 3
    assert published["chunks"] == [[0, 1, 2]]
    # A redelivered transcribe message finds the step done: no second set of chunk rows.
    assert services.job_run_step(job_id=job.id, stage=JobStage.TRANSCRIBE, worker="w2").kind == "skipped"
    assert TranscriptionChunk.objects.filter(job=job).count() == 3

    assert services.job_run_step(job_id=job.id, stage=JobStage.POLL, worker="w1").kind == "pending"
    assert [run_chunk(job, index, f"c{index}") for index in range(3)] == ["advanced"] * 3
    # The same chunk delivered twice: the copy finds it done and changes nothing.
    assert run_chunk(job, 1, "c-again") == "skipped"
    assert ChunkingFakeEngine.calls == [0.0, 3.0, 6.0]
    assert published["chains"] == [job.id]  # the last chunk woke the poll step

    assert services.job_run_step(job_id=job.id, stage=JobStage.POLL, worker="w1").advanced
    job.refresh_from_db()
    texts = [s["text"] for s in job.transcript["segments"]]
    assert texts == ["words at 0", "more at 0", "words at 3", "more at 3", "words at 6", "more at 6"]
    starts = [s["start"] for s in job.transcript["segments"]]
    assert starts == sorted(starts) and starts[2] == pytest.approx(3.1)
    assert job.timings["chunks"] == 3
    for stage in (JobStage.FORMAT, JobStage.SAVE):
        assert services.job_run_step(job_id=job.id, stage=stage, worker="w1").advanced
    assert len(DiaryEntry.objects.get(recording=job.recording).segments) == 6


@pytest.mark.django_db
def test_a_chunk_taken_over_after_its_lease_ran_out_is_stored_once(chunked_job):
    job = chunked_job
    assert services._chunk_claim(job.id, 0, "slow-worker")
    assert run_chunk(job, 0, "other") == "skipped"  # held, lease still running
    TranscriptionChunk.objects.filter(job=job, index=0).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert run_chunk(job, 0, "other") == "advanced"
    # The slow worker finishing late cannot overwrite or add anything.
    assert not services._chunk_finish(TranscriptionChunk.objects.get(job=job, index=0).id, "slow-worker")
    chunk = TranscriptionChunk.objects.get(job=job, index=0)
    assert chunk.status == ChunkStatus.DONE and chunk.attempts == 2 and len(chunk.transcript["segments"]) == 2


@pytest.mark.django_db
def test_poll_republishes_a_chunk_whose_worker_died_and_fails_on_a_failed_chunk(chunked_job, published, settings):
    job = chunked_job
    assert run_chunk(job, 0, "c0") == "advanced"
    # Chunk 1's worker died mid-chunk (lease ran out); chunk 2's message was lost before any worker took it.
    assert services._chunk_claim(job.id, 1, "dead-worker")
    past = timezone.now() - timedelta(seconds=1)
    TranscriptionChunk.objects.filter(job=job, index__in=[1, 2]).update(lease_expires_at=past)

    outcome = services.job_run_step(job_id=job.id, stage=JobStage.POLL, worker="p1")

    assert outcome.kind == "pending" and outcome.retry_after == settings.WHISPER_CHUNK_POLL_SECONDS
    assert published["chunks"][-1] == [1, 2]
    again = TranscriptionChunk.objects.get(job=job, index=1)
    assert again.status == ChunkStatus.QUEUED and again.claimed_by == "" and again.requeues == 1
    job.refresh_from_db()
    assert job.progress == 5 + 70 // 3 and job.stage == JobStage.POLL and job.claimed_by == ""
    # Published once per expiry, not on every poll.
    assert services.job_run_step(job_id=job.id, stage=JobStage.POLL, worker="p2").kind == "pending"
    assert len(published["chunks"]) == 2

    assert run_chunk(job, 1, "c1") == "advanced"
    services.chunk_fail(job_id=job.id, index=2, message="Failed 6 times: disk full")
    assert services.job_run_step(job_id=job.id, stage=JobStage.POLL, worker="p3").kind == "failed"
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and "Chunk 2" in job.error_message and "disk full" in job.error_message


@pytest.mark.django_db
def test_a_retried_job_plans_its_chunks_afresh(chunked_job):
    job = chunked_job
    services.chunk_fail(job_id=job.id, index=0, message="boom")
    assert services.job_run_step(job_id=job.id, stage=JobStage.POLL, worker="p").kind == "failed"
    job.refresh_from_db()
    assert services.job_retry(job=job)
    ChunkingFakeEngine.bounds = [(0.0, 4.0), (4.0, 8.5)]
    try:
        for stage in (JobStage.UPLOAD, JobStage.TRANSCRIBE):
            assert services.job_run_step(job_id=job.id, stage=stage, worker="w3").advanced
    finally:
        ChunkingFakeEngine.bounds = [(0.0, 3.0), (3.0, 6.0), (6.0, 8.5)]
    chunks = list(TranscriptionChunk.objects.filter(job=job).values_list("index", "status", "start"))
    assert chunks == [(0, "queued", 0.0), (1, "queued", 4.0)]


# --- Short recordings waiting together run in one call ----------------------------------


class BatchingFakeEngine(ChunkingFakeEngine):
    name = "fakebatch"
    supports_chunks = False
    batches: list[int] = []

    def transcribe_many(self, items: list[tuple[str, Any]]) -> list[Transcript]:
        BatchingFakeEngine.batches.append(len(items))
        segment = Segment(0.0, 2.0, "Today I went for a walk.")
        return [Transcript("en", (segment,), 8.0, 0.9, self.name, "fake") for _ in items]


@pytest.mark.django_db
def test_short_recordings_waiting_together_are_transcribed_in_one_call(
    user, speech_wav, monkeypatch, settings, published
):
    monkeypatch.setitem(registry.ENGINES, "fakebatch", "transcription.tests.test_chunking.BatchingFakeEngine")
    settings.TRANSCRIPTION_ENGINE = "fakebatch"
    settings.WHISPER_JOB_BATCH = 3
    BatchingFakeEngine.batches = []
    jobs = []
    for _ in range(4):
        upload = SimpleUploadedFile("walk.wav", speech_wav.read_bytes(), content_type="audio/wav")
        jobs.append(services.recording_create(owner=user, uploaded_file=upload, enqueue=False))
        assert services.job_run_step(job_id=jobs[-1].id, stage=JobStage.UPLOAD, worker="w").advanced

    assert services.job_run_step(job_id=jobs[0].id, stage=JobStage.TRANSCRIBE, worker="w1").advanced

    assert BatchingFakeEngine.batches == [3]
    stages = [TranscriptionJob.objects.get(id=job.id).stage for job in jobs]
    assert stages == [JobStage.POLL, JobStage.POLL, JobStage.POLL, JobStage.TRANSCRIBE]
    assert published["chains"] == [jobs[1].id, jobs[2].id]  # their chains go on from POLL
    # Their own transcribe messages find the step done.
    assert services.job_run_step(job_id=jobs[1].id, stage=JobStage.TRANSCRIBE, worker="w2").kind == "skipped"
    for job in jobs[:3]:
        for stage in (JobStage.POLL, JobStage.FORMAT, JobStage.SAVE):
            assert services.job_run_step(job_id=job.id, stage=stage, worker="w1").advanced
    assert DiaryEntry.objects.count() == 3

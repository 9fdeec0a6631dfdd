"""Writes for recordings and transcription jobs: the only place the pipeline's logic lives.

The chain's steps (upload → transcribe → poll → format → save) each run through
`job_run_step`, which claims the step with a conditional update, does the work, and
advances the job's `stage`. The job row is the source of truth; a broker message only
says "try the next step". Running a step twice, or a stale copy of a message, is harmless.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import tempfile
import time
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import DatabaseError, transaction
from django.db.models import F, Q
from django.utils import timezone

from diary_project.errors import ApplicationError, PayloadTooLarge, ServiceUnavailable, UnsupportedAudio
from transcription.audio import AudioProbeError, probe_audio
from transcription.engines.base import AudioRef, EngineError, Pending, TranscribeOptions, Transcript
from transcription.engines.registry import get_engine, get_formatter
from transcription.formatters.base import EntryDraft
from transcription.models import ACTIVE_STATUSES, JobStage, JobStatus, Recording, TranscriptionJob

logger = logging.getLogger(__name__)

STAGE_ORDER = [JobStage.UPLOAD, JobStage.TRANSCRIBE, JobStage.POLL, JobStage.FORMAT, JobStage.SAVE]
STAGE_STATUS = {
    JobStage.UPLOAD: JobStatus.QUEUED,
    JobStage.TRANSCRIBE: JobStatus.TRANSCRIBING,
    JobStage.POLL: JobStatus.TRANSCRIBING,
    JobStage.FORMAT: JobStatus.FORMATTING,
    JobStage.SAVE: JobStatus.FORMATTING,
}
STAGE_PROGRESS = {JobStage.TRANSCRIBE: 5, JobStage.POLL: 75, JobStage.FORMAT: 80, JobStage.SAVE: 90}


class TransientStepError(Exception):
    """A step failed in a way that a later attempt may not; the task retries with backoff."""


@dataclass(frozen=True)
class StepOutcome:
    kind: str  # "advanced" | "pending" | "skipped" | "failed"
    retry_after: float = 0.0
    detail: str = ""

    @property
    def advanced(self) -> bool:
        return self.kind == "advanced"


# --- Uploads ----------------------------------------------------------------------------


def sanitize_filename(name: str) -> str:
    """Keep a readable original name for display only (it never reaches storage)."""
    name = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in unicodedata.normalize("NFC", name) if unicodedata.category(ch)[0] != "C")
    name = name.encode("utf-8", "replace").decode("utf-8", "replace").strip(" .")
    return name[-200:] or "recording"


def _file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def _upload_on_disk(uploaded: Any) -> Iterator[str]:
    """A path to the uploaded bytes: the upload handler's temp file, or a copy of small in-memory ones."""
    if hasattr(uploaded, "temporary_file_path"):
        yield uploaded.temporary_file_path()
        return
    with tempfile.NamedTemporaryFile(suffix=".upload", dir=settings.FILE_UPLOAD_TEMP_DIR) as handle:
        uploaded.seek(0)
        shutil.copyfileobj(uploaded, handle, 1024 * 1024)
        handle.flush()
        yield handle.name


def validate_recorded_at(recorded_at: datetime | None) -> datetime:
    now = timezone.now()
    if recorded_at is None:
        return now
    if timezone.is_naive(recorded_at):
        recorded_at = timezone.make_aware(recorded_at, timezone.get_default_timezone())
    if recorded_at > now + timedelta(seconds=settings.RECORDED_AT_MAX_FUTURE_SECONDS):
        raise ApplicationError("recorded_at is in the future.", code="invalid_recorded_at")
    if recorded_at.year < 1970:
        raise ApplicationError("recorded_at is before 1970.", code="invalid_recorded_at")
    return recorded_at


LANGUAGE_RE = re.compile(r"^[a-z]{2,3}$")


def recording_create(
    *,
    owner: Any,
    uploaded_file: Any,
    recorded_at: datetime | None = None,
    language: str = "",
    engine: str | None = None,
    formatter: str | None = None,
    enqueue: bool = True,
) -> TranscriptionJob:
    """Store an uploaded recording and create its job; everything is checked before anything is queued."""
    size = int(getattr(uploaded_file, "size", 0) or 0)
    if size == 0:
        raise ApplicationError("The uploaded file is empty.", code="empty_file")
    if size > settings.UPLOAD_MAX_BYTES:
        raise PayloadTooLarge(f"The upload is larger than the {settings.UPLOAD_MAX_BYTES // (1024 * 1024)} MB limit.")
    language = (language or "").strip().lower()
    if language and not LANGUAGE_RE.match(language):
        raise ApplicationError("language must be an ISO 639-1 code such as 'en'.", code="invalid_language")
    recorded_at = validate_recorded_at(recorded_at)
    engine = engine or settings.TRANSCRIPTION_ENGINE
    formatter = formatter or settings.DIARY_FORMATTER

    with _upload_on_disk(uploaded_file) as path:
        try:
            info = probe_audio(path)
        except AudioProbeError as exc:
            raise UnsupportedAudio(
                f"The file is not audio that can be decoded: {exc}. Send wav, mp3, m4a/aac, ogg/opus, webm or flac."
            ) from exc
        if info.duration > settings.RECORDING_MAX_SECONDS:
            raise PayloadTooLarge(
                f"The recording is {info.duration / 3600:.1f} h long; the limit is "
                f"{settings.RECORDING_MAX_SECONDS / 3600:g} h.",
                code="too_long",
            )
        sha256 = _file_sha256(path)
        recording = Recording(
            owner=owner,
            original_filename=sanitize_filename(getattr(uploaded_file, "name", "")),
            content_type=(getattr(uploaded_file, "content_type", "") or "")[:100],
            audio_format=info.format_name[:50],
            size_bytes=size,
            sha256=sha256,
            duration_seconds=info.duration,
            language=language,
            recorded_at=recorded_at,
        )
        try:
            with open(path, "rb") as handle:
                recording.audio.save(f"audio.{info.extension}", File(handle), save=False)
        except Exception as exc:
            logger.exception("Storing an upload for user %s failed", owner.pk)
            raise ServiceUnavailable(
                "Audio storage is unavailable; the upload was not stored. Try again shortly."
            ) from exc

    try:
        with transaction.atomic():
            recording.save()
            job = TranscriptionJob.objects.create(
                recording=recording,
                engine=engine,
                formatter=formatter,
                lease_expires_at=timezone.now() + timedelta(seconds=settings.JOB_QUEUED_GRACE_SECONDS),
            )
            if enqueue:
                transaction.on_commit(lambda: job_enqueue(job_id=job.id))
    except DatabaseError as exc:
        # Nothing half-written may remain: the row rolled back, so remove the stored file too.
        logger.error("Database unavailable while saving an upload for user %s: %s", owner.pk, exc)
        delete_stored_audio(recording.audio.name)
        raise ServiceUnavailable("The database is unavailable; the upload was not stored. Try again shortly.") from exc
    logger.info(
        "Accepted %s: %s, %.1fs of %s audio", job.job_name, recording.audio.name, info.duration, info.format_name
    )
    return job


def delete_stored_audio(name: str) -> None:
    if not name:
        return
    try:
        default_storage.delete(name)
    except Exception:
        logger.exception("Could not delete stored audio %s", name)


def recordings_purge_expired_audio(*, now: datetime | None = None) -> list[int]:
    """Delete audio AUDIO_RETENTION_DAYS after its entry was made; the entry and transcript stay."""
    if settings.AUDIO_RETENTION_DAYS <= 0:
        return []
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.AUDIO_RETENTION_DAYS)
    expired = Recording.objects.filter(
        audio_deleted_at__isnull=True, job__status=JobStatus.DONE, job__finished_at__lt=cutoff
    ).exclude(audio="")
    purged = []
    for recording in expired:
        name = recording.audio.name
        # Mark first (conditionally: a concurrent purge is a no-op), then delete the file.
        if Recording.objects.filter(pk=recording.pk, audio_deleted_at__isnull=True).update(
            audio_deleted_at=now, audio=""
        ):
            delete_stored_audio(name)
            purged.append(recording.pk)
    if purged:
        logger.info("Retention: deleted the audio of %d recording(s)", len(purged))
    return purged


# --- Enqueueing and the sweep -----------------------------------------------------------


def job_enqueue(*, job_id: int) -> bool:
    """Publish the chain from the job's current stage. A failed publish is left to the sweep."""
    from transcription.tasks import chain_from_stage

    job = TranscriptionJob.objects.filter(id=job_id).only("stage", "status").first()
    if job is None or job.status not in ACTIVE_STATUSES:
        return False
    try:
        chain_from_stage(job.stage, job_id).apply_async()
    except Exception:
        logger.exception("Publishing job %s failed; the sweep will re-enqueue it", job_id)
        return False
    return True


def jobs_requeue_stuck(*, now: datetime | None = None) -> dict[str, list[str]]:
    """Re-enqueue active jobs whose lease ran out; fail those requeued too often. Safe to run twice."""
    now = now or timezone.now()
    requeued: list[str] = []
    failed: list[str] = []
    stuck = TranscriptionJob.objects.filter(status__in=ACTIVE_STATUSES).filter(
        Q(lease_expires_at__lt=now) | Q(lease_expires_at__isnull=True)
    )
    for job in stuck:
        # The conditional update on the old lease makes a concurrent sweep a no-op.
        same_lease = TranscriptionJob.objects.filter(id=job.id, lease_expires_at=job.lease_expires_at, stage=job.stage)
        if job.requeues >= settings.JOB_MAX_REQUEUES:
            message = f"Gave up after {job.requeues} recoveries at the {job.stage} step; the job can be re-run."
            if same_lease.update(
                status=JobStatus.FAILED, error_message=message, claimed_by="", lease_expires_at=None, finished_at=now
            ):
                logger.error("%s failed: %s", job.job_name, message)
                failed.append(job.job_name)
            continue
        if same_lease.update(
            claimed_by="",
            lease_expires_at=now + timedelta(seconds=settings.JOB_QUEUED_GRACE_SECONDS),
            requeues=F("requeues") + 1,
        ):
            logger.warning("%s was stuck at %s; re-enqueued", job.job_name, job.stage)
            job_enqueue(job_id=job.id)
            requeued.append(job.job_name)
    return {"requeued": requeued, "failed": failed}


def job_retry(*, job: TranscriptionJob) -> bool:
    """Re-run a failed job from the step it failed at (a fresh engine job for transcription)."""
    if job.status != JobStatus.FAILED:
        return False
    stage = job.stage if job.stage in (JobStage.FORMAT, JobStage.SAVE) else JobStage.UPLOAD
    if stage in (JobStage.FORMAT, JobStage.SAVE) and not job.transcript:
        stage = JobStage.UPLOAD
    with transaction.atomic():
        updated = TranscriptionJob.objects.filter(id=job.id, status=JobStatus.FAILED).update(
            status=STAGE_STATUS[stage],
            stage=stage,
            error_message="",
            requeues=0,
            claimed_by="",
            engine_handle={},
            progress=STAGE_PROGRESS.get(stage, 0),
            finished_at=None,
            lease_expires_at=timezone.now() + timedelta(seconds=settings.JOB_QUEUED_GRACE_SECONDS),
            timings={**job.timings, "run": int(job.timings.get("run", 1)) + 1},
        )
        if updated:
            transaction.on_commit(lambda: job_enqueue(job_id=job.id))
    return bool(updated)


def job_fail(*, job_id: int, message: str) -> None:
    TranscriptionJob.objects.filter(id=job_id, status__in=ACTIVE_STATUSES).update(
        status=JobStatus.FAILED,
        error_message=message[:2000],
        claimed_by="",
        lease_expires_at=None,
        finished_at=timezone.now(),
    )
    logger.error("Job %s failed: %s", job_id, message)


# --- Running steps ----------------------------------------------------------------------


def _step_lease(stage: str) -> timedelta:
    if stage == JobStage.TRANSCRIBE:
        return timedelta(seconds=settings.JOB_LEASE_SECONDS)
    return timedelta(seconds=settings.STEP_HARD_TIME_LIMIT + 60)


def _claim(job_id: int, stage: str, worker: str) -> bool:
    now = timezone.now()
    return bool(
        TranscriptionJob.objects.filter(id=job_id, stage=stage, status__in=ACTIVE_STATUSES)
        .filter(Q(claimed_by="") | Q(lease_expires_at__lt=now))
        .update(
            claimed_by=worker[:200],
            lease_expires_at=now + _step_lease(stage),
            status=STAGE_STATUS[stage],
            attempts=F("attempts") + 1,
            updated_at=now,
        )
    )


def _release(job_id: int, worker: str, *, wait_seconds: float, **fields: Any) -> int:
    """Give the step back (a retry or a later poll will claim it again)."""
    return TranscriptionJob.objects.filter(id=job_id, claimed_by=worker).update(
        claimed_by="",
        lease_expires_at=timezone.now() + timedelta(seconds=wait_seconds + settings.JOB_QUEUED_GRACE_SECONDS),
        updated_at=timezone.now(),
        **fields,
    )


def _advance(job: TranscriptionJob, worker: str, to_stage: str, elapsed: float, **fields: Any) -> bool:
    timings = dict(job.timings or {})
    timings[job.stage] = round(timings.get(job.stage, 0.0) + elapsed, 3)
    values: dict[str, Any] = {
        "stage": to_stage,
        "claimed_by": "",
        "lease_expires_at": timezone.now() + timedelta(seconds=settings.JOB_QUEUED_GRACE_SECONDS),
        "timings": timings,
        "error_message": "",
        "updated_at": timezone.now(),
        **fields,
    }
    if to_stage in STAGE_STATUS:
        values["status"] = STAGE_STATUS[to_stage]
        values.setdefault("progress", STAGE_PROGRESS.get(to_stage, 0))
    return bool(TranscriptionJob.objects.filter(id=job.id, stage=job.stage, claimed_by=worker).update(**values))


@contextlib.contextmanager
def audio_ref_for(recording: Recording, *, local: bool) -> Iterator[AudioRef]:
    """Where the engine finds the audio: a local path (downloaded if storage is remote) or an s3:// URI."""
    name = recording.audio.name
    if not default_storage.exists(name):
        raise EngineError(f"The stored audio {name} is missing", permanent=True)
    uri = None
    bucket = getattr(default_storage, "bucket_name", None)
    if bucket:
        # S3Storage may prefix keys with a location; _normalize_name gives the object's real key.
        normalize = getattr(default_storage, "_normalize_name", lambda value: value)
        uri = f"s3://{bucket}/{normalize(name)}"
    common = {"key": name, "uri": uri, "content_type": recording.content_type, "duration": recording.duration_seconds}
    if not local:
        yield AudioRef(**common)
        return
    if getattr(default_storage, "serves_plaintext_paths", True):
        try:
            yield AudioRef(local_path=default_storage.path(name), **common)
            return
        except NotImplementedError:  # remote storage (S3): download below
            pass
    suffix = os.path.splitext(name)[1]
    with tempfile.NamedTemporaryFile(suffix=suffix, dir=settings.FILE_UPLOAD_TEMP_DIR) as handle:
        with default_storage.open(name, "rb") as source:
            shutil.copyfileobj(source, handle, 1024 * 1024)
        handle.flush()
        yield AudioRef(local_path=handle.name, **common)


def _engine_job_name(job: TranscriptionJob) -> str:
    run = int((job.timings or {}).get("run", 1))
    return job.job_name if run == 1 else f"{job.job_name}_r{run}"


def _step_upload(job: TranscriptionJob, worker: str) -> StepOutcome:
    recording = job.recording
    name = recording.audio.name
    if not name or not default_storage.exists(name):
        raise EngineError("The uploaded audio is missing from storage", permanent=True)
    return StepOutcome("advanced") if _advance(job, worker, JobStage.TRANSCRIBE, 0.0) else StepOutcome("skipped")


def _step_transcribe(job: TranscriptionJob, worker: str) -> StepOutcome:
    engine = get_engine(job.engine)
    # Whisper: long recordings in chunks across workers, short ones together with others waiting.
    outcome = _transcribe_chunked_or_together(job, worker, engine)
    if outcome is not None:
        return outcome
    recording = job.recording
    last = {"progress": 5}

    def report_progress(fraction: float) -> None:
        progress = 5 + int(70 * fraction)
        if progress - last["progress"] >= 5:
            last["progress"] = progress
            TranscriptionJob.objects.filter(id=job.id, claimed_by=worker).update(progress=progress)

    started = time.monotonic()
    with audio_ref_for(recording, local=engine.needs_local_file) as audio:
        options = TranscribeOptions(
            job_name=_engine_job_name(job),
            language=recording.language or None,
            extra={"on_progress": report_progress},
        )
        handle = engine.start(audio, options)
    timings_extra = {"_poll_since": time.time()}
    job.timings = {**(job.timings or {}), **timings_extra}
    advanced = _advance(
        job,
        worker,
        JobStage.POLL,
        time.monotonic() - started,
        engine_handle=handle,
        external_job_id=str(handle.get("job_name", ""))[:200],
    )
    return StepOutcome("advanced") if advanced else StepOutcome("skipped")


def _step_poll(job: TranscriptionJob, worker: str) -> StepOutcome:
    engine = get_engine(job.engine)
    started = time.monotonic()
    if (job.engine_handle or {}).get("chunks"):
        result = _chunks_poll(job, worker)  # a chunked job: merge its chunks once every one is done
    else:
        result = engine.poll(job.engine_handle or {})
    if isinstance(result, Pending):
        waited = time.time() - float((job.timings or {}).get("_poll_since", time.time()))
        if waited > settings.POLL_DEADLINE_SECONDS:
            raise EngineError(
                f"Transcription did not finish within {settings.POLL_DEADLINE_SECONDS} s (engine {job.engine})",
                permanent=True,
            )
        _release(job.id, worker, wait_seconds=result.retry_after)
        return StepOutcome("pending", retry_after=result.retry_after, detail=result.detail)
    transcript: Transcript = result
    if not transcript.text.strip():
        raise EngineError("No speech was found in the recording.", permanent=True)
    advanced = _advance(job, worker, JobStage.FORMAT, time.monotonic() - started, transcript=transcript.to_dict())
    return StepOutcome("advanced") if advanced else StepOutcome("skipped")


def _step_format(job: TranscriptionJob, worker: str) -> StepOutcome:
    formatter = get_formatter(job.formatter)
    started = time.monotonic()
    draft = formatter.format(Transcript.from_dict(job.transcript or {}))
    advanced = _advance(
        job, worker, JobStage.SAVE, time.monotonic() - started, draft=draft.to_dict(), token_usage=draft.usage or {}
    )
    return StepOutcome("advanced") if advanced else StepOutcome("skipped")


def _step_save(job: TranscriptionJob, worker: str) -> StepOutcome:
    from diaries.services import entry_create_from_draft

    started = time.monotonic()
    draft = EntryDraft.from_dict(job.draft or {})
    transcript = Transcript.from_dict(job.transcript or {})
    # One transaction: the entry, its segments and the job's done state, or nothing.
    with transaction.atomic():
        locked = TranscriptionJob.objects.select_for_update().filter(id=job.id, stage=JobStage.SAVE, claimed_by=worker)
        if not locked.exists():
            return StepOutcome("skipped")
        entry = entry_create_from_draft(recording=job.recording, draft=draft, transcript=transcript)
        timings = dict(job.timings or {})
        timings[JobStage.SAVE] = round(time.monotonic() - started, 3)
        timings["total"] = round((timezone.now() - job.created_at).total_seconds(), 3)
        locked.update(
            stage=JobStage.DONE,
            status=JobStatus.DONE,
            progress=100,
            claimed_by="",
            lease_expires_at=None,
            error_message="",
            timings=timings,
            finished_at=timezone.now(),
            updated_at=timezone.now(),
        )
    logger.info("%s done: entry %s (%s)", job.job_name, entry.pk, draft.formatter)
    return StepOutcome("advanced")


STEP_FUNCTIONS = {
    JobStage.UPLOAD: _step_upload,
    JobStage.TRANSCRIBE: _step_transcribe,
    JobStage.POLL: _step_poll,
    JobStage.FORMAT: _step_format,
    JobStage.SAVE: _step_save,
}


def job_run_step(*, job_id: int, stage: str, worker: str) -> StepOutcome:
    """Claim and run one step. Raises TransientStepError when a retry may help."""
    if not _claim(job_id, stage, worker):
        return StepOutcome("skipped", detail="step already done, not yet due, or held by another worker")
    job = TranscriptionJob.objects.select_related("recording").get(id=job_id)
    try:
        return STEP_FUNCTIONS[stage](job, worker)
    except EngineError as exc:
        if exc.permanent:
            job_fail(job_id=job_id, message=exc.message)
            return StepOutcome("failed", detail=exc.message)
        _release(job_id, worker, wait_seconds=settings.TASK_RETRY_BACKOFF_MAX, error_message=exc.message[:2000])
        raise TransientStepError(exc.message) from exc
    except Exception as exc:
        if exc.__class__.__name__ == "SoftTimeLimitExceeded":
            message = f"The {stage} step ran past its time limit."
            job_fail(job_id=job_id, message=message)
            return StepOutcome("failed", detail=message)
        logger.exception("Step %s of job %s failed", stage, job_id)
        with contextlib.suppress(DatabaseError):
            _release(
                job_id, worker, wait_seconds=settings.TASK_RETRY_BACKOFF_MAX, error_message=f"{stage}: {exc}"[:2000]
            )
        raise TransientStepError(f"{stage}: {exc}") from exc


def job_run_inline(*, job_id: int, max_attempts: int = 3) -> TranscriptionJob:
    """Run every remaining step in this process (the `transcribe` command); waits on slow engines."""
    worker = f"inline:{os.getpid()}"
    attempts = 0
    while True:
        job = TranscriptionJob.objects.get(id=job_id)
        if job.status not in ACTIVE_STATUSES:
            return job
        try:
            outcome = job_run_step(job_id=job_id, stage=job.stage, worker=worker)
        except TransientStepError as exc:
            attempts += 1
            if attempts >= max_attempts:
                job_fail(job_id=job_id, message=f"{job.stage} failed after {attempts} attempts: {exc}")
                continue
            time.sleep(min(2**attempts, 30))
            continue
        if outcome.kind == "pending":
            time.sleep(outcome.retry_after)
        elif outcome.kind == "skipped":
            raise ApplicationError(f"Job {job.job_name} is being run by another worker ({outcome.detail}).")


# --- Whisper: long recordings in chunks, short ones together ----------------------------
# A recording of at least WHISPER_CHUNK_MIN_SECONDS is cut at silences into TranscriptionChunk rows;
# each chunk is a `transcribe_chunk` task any worker may run, and the poll step merges them. The
# rows, not the broker, say what is done: chunk tasks claim their row like steps claim their job.


def _chunking_applies(job: TranscriptionJob, engine: Any, worker: str) -> bool:
    duration = job.recording.duration_seconds or 0.0
    return bool(
        getattr(engine, "supports_chunks", False)
        and settings.WHISPER_CHUNK_MIN_SECONDS > 0
        and duration >= settings.WHISPER_CHUNK_MIN_SECONDS
        # The in-process `transcribe` command has no other workers to share chunks with.
        and not worker.startswith("inline:")
    )


def _job_batch_applies(job: TranscriptionJob, engine: Any, worker: str) -> bool:
    duration = job.recording.duration_seconds or 0.0
    return bool(
        hasattr(engine, "transcribe_many")
        and settings.WHISPER_JOB_BATCH > 1
        and 0 < duration <= settings.WHISPER_JOB_BATCH_MAX_SECONDS
        and not worker.startswith("inline:")
    )


def _transcribe_chunked_or_together(job: TranscriptionJob, worker: str, engine: Any) -> StepOutcome | None:
    """The whisper-only ways of the transcribe step; None means the plain one-call path."""
    if _chunking_applies(job, engine, worker):
        return _transcribe_in_chunks(job, worker, engine)
    if _job_batch_applies(job, engine, worker):
        return _transcribe_together(job, worker, engine)
    return None


def audio_cache_path(job: TranscriptionJob) -> Path:
    return Path(settings.WHISPER_AUDIO_CACHE_DIR) / f"{job.job_name}-{job.recording_id}.s16"


def _advance_to_poll(job: TranscriptionJob, worker: str, elapsed: float, handle: dict[str, Any], **fields: Any) -> bool:
    job.timings = {**(job.timings or {}), "_poll_since": time.time()}
    return _advance(job, worker, JobStage.POLL, elapsed, engine_handle=handle, external_job_id="", **fields)


def _transcribe_in_chunks(job: TranscriptionJob, worker: str, engine: Any) -> StepOutcome:
    """Plan chunks at silences, store them with the job's advance to POLL, publish them after commit."""
    from transcription.engines.whisper import as_float
    from transcription.models import TranscriptionChunk

    started = time.monotonic()
    recording = job.recording
    cache = audio_cache_path(job)
    with audio_ref_for(recording, local=True) as audio:
        try:
            # Decoded once, to a PCM file on this machine that chunk tasks here read their ranges from.
            samples = engine.decode_to_pcm(audio.local_path, cache)
            _audio_cache_prune(cache.parent)
        except OSError as exc:
            logger.warning("No audio cache for %s (%s); chunk tasks decode the file themselves", job.job_name, exc)
            samples = engine.decode(audio.local_path)
    bounds = engine.plan_chunks(
        samples, target_seconds=settings.WHISPER_CHUNK_SECONDS, min_silence_ms=settings.WHISPER_CHUNK_MIN_SILENCE_MS
    )
    if len(bounds) < 2:  # no silence to cut at: one call, as for short recordings
        transcript = engine.transcribe_audio(as_float(samples), language=recording.language or None)
        cache.unlink(missing_ok=True)
        advanced = _advance_to_poll(job, worker, time.monotonic() - started, {"transcript": transcript.to_dict()})
        return StepOutcome("advanced") if advanced else StepOutcome("skipped")
    lease = timezone.now() + timedelta(seconds=settings.JOB_QUEUED_GRACE_SECONDS)
    with transaction.atomic():
        # A re-run of a failed job plans afresh; a redelivered step never gets here (its claim fails).
        TranscriptionChunk.objects.filter(job=job).delete()
        TranscriptionChunk.objects.bulk_create(
            TranscriptionChunk(job=job, index=index, start=round(start, 3), end=round(end, 3), lease_expires_at=lease)
            for index, (start, end) in enumerate(bounds)
        )
        handle = {"chunks": len(bounds), "audio_seconds": round(len(samples) / 16000, 3)}
        if not _advance_to_poll(job, worker, time.monotonic() - started, handle, progress=5):
            transaction.set_rollback(True)
            return StepOutcome("skipped")
        transaction.on_commit(lambda: _chunks_publish(job.id, range(len(bounds))))
    logger.info("%s: %.0f s of audio in %d chunks", job.job_name, len(samples) / 16000, len(bounds))
    return StepOutcome("advanced")


def _audio_cache_prune(folder: Path, max_age_seconds: float = 24 * 3600) -> None:
    """Forget cached audio of jobs that never merged (failed, deleted): older than a day."""
    cutoff = time.time() - max_age_seconds
    for path in folder.glob("*.s16"):
        with contextlib.suppress(OSError):
            if path.stat().st_mtime < cutoff:
                path.unlink()


def _chunks_publish(job_id: int, indexes: Any) -> None:
    from celery import group

    from transcription.tasks import transcribe_chunk

    try:
        group(transcribe_chunk.si(job_id, index) for index in indexes).apply_async()
    except Exception:
        # The poll step publishes chunks again once their lease runs out.
        logger.exception("Publishing the chunks of job %s failed", job_id)


def _chunk_claim(job_id: int, index: int, worker: str) -> bool:
    from transcription.models import ChunkStatus, TranscriptionChunk

    now = timezone.now()
    return bool(
        TranscriptionChunk.objects.filter(
            job_id=job_id,
            index=index,
            status__in=(ChunkStatus.QUEUED, ChunkStatus.RUNNING),
            job__stage=JobStage.POLL,
            job__status__in=ACTIVE_STATUSES,
        )
        .filter(Q(claimed_by="") | Q(lease_expires_at__lt=now))
        .update(
            status=ChunkStatus.RUNNING,
            claimed_by=worker[:200],
            lease_expires_at=now + timedelta(seconds=settings.WHISPER_CHUNK_LEASE_SECONDS),
            attempts=F("attempts") + 1,
            updated_at=now,
        )
    )


def _chunk_samples(chunk: Any, engine: Any) -> Any:
    """The chunk's audio: from this machine's cache of the decoded recording, else decoded again."""
    from transcription.engines.whisper import SAMPLE_RATE, load_pcm_range

    cache = audio_cache_path(chunk.job)
    if not cache.exists():
        with audio_ref_for(chunk.job.recording, local=True) as audio:
            try:
                engine.decode_to_pcm(audio.local_path, cache)  # also for this job's other chunks here
            except OSError:
                samples = engine.decode(audio.local_path)
                return samples[round(chunk.start * SAMPLE_RATE) : round(chunk.end * SAMPLE_RATE)]
    return load_pcm_range(cache, chunk.start, chunk.end)


def _chunk_finish(chunk_id: int, worker: str, **fields: Any) -> bool:
    from transcription.models import ChunkStatus, TranscriptionChunk

    return bool(
        TranscriptionChunk.objects.filter(id=chunk_id, claimed_by=worker, status=ChunkStatus.RUNNING).update(
            claimed_by="", lease_expires_at=None, updated_at=timezone.now(), **fields
        )
    )


def _chunks_wake_poll(job_id: int) -> None:
    """When no chunk is left to run, publish the poll step now rather than wait for its countdown."""
    from transcription.models import ChunkStatus, TranscriptionChunk

    left = TranscriptionChunk.objects.filter(job_id=job_id, status__in=(ChunkStatus.QUEUED, ChunkStatus.RUNNING))
    if not left.exists():
        job_enqueue(job_id=job_id)


def chunk_transcribe(*, job_id: int, index: int, worker: str) -> StepOutcome:
    """Claim one chunk, transcribe its time range, store its transcript. Raises TransientStepError."""
    from transcription.models import ChunkStatus, TranscriptionChunk

    if not _chunk_claim(job_id, index, worker):
        return StepOutcome("skipped", detail="chunk done, held by another worker, or its job moved on")
    chunk = TranscriptionChunk.objects.select_related("job__recording").get(job_id=job_id, index=index)
    if chunk.attempts > settings.WHISPER_CHUNK_MAX_ATTEMPTS:
        message = f"Chunk {index} was attempted {chunk.attempts - 1} times without finishing. {chunk.error_message}"
        message = message.strip()
        _chunk_finish(chunk.id, worker, status=ChunkStatus.FAILED, error_message=message)
        _chunks_wake_poll(job_id)
        return StepOutcome("failed", detail=message)
    started = time.monotonic()
    try:
        engine = get_engine(chunk.job.engine)
        samples = _chunk_samples(chunk, engine)
        transcript = engine.transcribe_audio(samples, language=chunk.job.recording.language or None, offset=chunk.start)
    except Exception as exc:
        permanent = isinstance(exc, EngineError) and exc.permanent
        if exc.__class__.__name__ == "SoftTimeLimitExceeded":
            permanent, exc = True, EngineError(f"Chunk {index} ran past its time limit.")
        message = exc.message if isinstance(exc, EngineError) else f"chunk {index}: {exc}"
        if permanent:
            _chunk_finish(chunk.id, worker, status=ChunkStatus.FAILED, error_message=message[:2000])
            _chunks_wake_poll(job_id)
            return StepOutcome("failed", detail=message)
        if not isinstance(exc, EngineError):
            logger.exception("Chunk %s of job %s failed", index, job_id)
        # Back in the queue for this task's retry (or the poll step's re-publish if the retry is lost).
        _chunk_finish(
            chunk.id,
            worker,
            status=ChunkStatus.QUEUED,
            error_message=message[:2000],
            lease_expires_at=timezone.now()
            + timedelta(seconds=settings.TASK_RETRY_BACKOFF_MAX + settings.JOB_QUEUED_GRACE_SECONDS),
        )
        raise TransientStepError(message) from exc
    elapsed = round(time.monotonic() - started, 3)
    stored = _chunk_finish(
        chunk.id,
        worker,
        status=ChunkStatus.DONE,
        transcript=transcript.to_dict(),  # replaces, never appends: running a chunk twice is harmless
        error_message="",
        timings={"seconds": elapsed, "audio_seconds": round(chunk.end - chunk.start, 3), "worker": worker[:200]},
    )
    if not stored:
        return StepOutcome("skipped", detail="another worker took the chunk over")
    _chunks_wake_poll(job_id)
    return StepOutcome("advanced")


def chunk_fail(*, job_id: int, index: int, message: str) -> None:
    """A chunk whose task gave up retrying: the poll step fails the job."""
    from transcription.models import ChunkStatus, TranscriptionChunk

    TranscriptionChunk.objects.filter(
        job_id=job_id, index=index, status__in=(ChunkStatus.QUEUED, ChunkStatus.RUNNING)
    ).update(status=ChunkStatus.FAILED, error_message=message[:2000], claimed_by="", lease_expires_at=None)
    _chunks_wake_poll(job_id)


def _chunks_poll(job: TranscriptionJob, worker: str) -> Transcript | Pending:
    """Pending until every chunk is done (re-publishing those whose lease ran out), then the merge."""
    from transcription.engines.whisper import merge_transcripts
    from transcription.models import ChunkStatus, TranscriptionChunk

    chunks = list(TranscriptionChunk.objects.filter(job=job).order_by("index"))
    expected = int(job.engine_handle.get("chunks", 0))
    if len(chunks) != expected:
        raise EngineError(f"{expected - len(chunks)} of {expected} chunks are missing; re-run the job", permanent=True)
    failed = [chunk for chunk in chunks if chunk.status == ChunkStatus.FAILED]
    if failed:
        audio_cache_path(job).unlink(missing_ok=True)
        first = failed[0]
        raise EngineError(
            f"Chunk {first.index} ({first.start:.0f}-{first.end:.0f} s) failed: {first.error_message}", permanent=True
        )
    waiting = [chunk for chunk in chunks if chunk.status != ChunkStatus.DONE]
    if waiting:
        _chunks_republish_expired(job, waiting)
        done = len(chunks) - len(waiting)
        TranscriptionJob.objects.filter(id=job.id, claimed_by=worker).update(progress=5 + 70 * done // len(chunks))
        return Pending(retry_after=settings.WHISPER_CHUNK_POLL_SECONDS, detail=f"{done} of {len(chunks)} chunks done")
    engine = get_engine(job.engine)
    merged = merge_transcripts(
        [Transcript.from_dict(chunk.transcript or {}) for chunk in chunks],
        duration=float(job.engine_handle.get("audio_seconds") or chunks[-1].end),
        engine=getattr(engine, "name", job.engine),
        model=getattr(engine, "model_name", ""),
    )
    job.timings = {
        **(job.timings or {}),
        "chunks": len(chunks),
        "chunk_seconds": round(sum(float((chunk.timings or {}).get("seconds", 0.0)) for chunk in chunks), 3),
    }
    audio_cache_path(job).unlink(missing_ok=True)
    return merged


def _chunks_republish_expired(job: TranscriptionJob, waiting: list[Any]) -> None:
    from transcription.models import ChunkStatus, TranscriptionChunk

    now = timezone.now()
    again = []
    for chunk in waiting:
        if chunk.lease_expires_at is None or chunk.lease_expires_at >= now:
            continue
        # Conditional on the lease we saw: a concurrent poll, or the chunk's worker finishing, wins.
        same = TranscriptionChunk.objects.filter(
            id=chunk.id, status=chunk.status, lease_expires_at=chunk.lease_expires_at
        )
        if chunk.requeues >= settings.JOB_MAX_REQUEUES:
            message = f"Chunk {chunk.index} was lost {chunk.requeues} times (its workers died or its task was lost)."
            same.update(status=ChunkStatus.FAILED, error_message=message, claimed_by="", lease_expires_at=None)
            raise EngineError(message, permanent=True)
        if same.update(
            status=ChunkStatus.QUEUED,
            claimed_by="",
            lease_expires_at=now + timedelta(seconds=settings.JOB_QUEUED_GRACE_SECONDS),
            requeues=F("requeues") + 1,
            updated_at=now,
        ):
            logger.warning(
                "%s: chunk %s (%s) had no live worker; published again", job.job_name, chunk.index, chunk.status
            )
            again.append(chunk.index)
    if again:
        _chunks_publish(job.id, again)


def _transcribe_together(job: TranscriptionJob, worker: str, engine: Any) -> StepOutcome | None:
    """Claim other short recordings waiting to be transcribed and run them all in one engine call.

    Concurrent recordings keep every model replica busy (one short recording fills one). The others'
    own transcribe messages then find their step done and stop; their chains go on from POLL here.
    """
    limit = settings.WHISPER_JOB_BATCH - 1
    candidates = (
        TranscriptionJob.objects.filter(
            stage=JobStage.TRANSCRIBE,
            status__in=ACTIVE_STATUSES,
            engine=job.engine,
            claimed_by="",
            recording__duration_seconds__gt=0,
            recording__duration_seconds__lte=settings.WHISPER_JOB_BATCH_MAX_SECONDS,
        )
        .exclude(id=job.id)
        .order_by("created_at")
        .values_list("id", flat=True)[: limit * 2]
    )
    claimed = []
    for other_id in candidates:
        if len(claimed) >= limit:
            break
        if _claim(other_id, JobStage.TRANSCRIBE, worker):
            claimed.append(other_id)
    if not claimed:
        return None
    jobs = [job, *TranscriptionJob.objects.select_related("recording").filter(id__in=claimed).order_by("created_at")]
    started = time.monotonic()
    try:
        with contextlib.ExitStack() as stack:
            audio = [stack.enter_context(audio_ref_for(each.recording, local=True)) for each in jobs]
            results = engine.transcribe_many(
                [(ref.local_path, each.recording.language or None) for ref, each in zip(audio, jobs, strict=True)]
            )
    except BaseException:
        for other_id in claimed:
            _release(other_id, worker, wait_seconds=0)  # their own messages run them
        raise
    elapsed = time.monotonic() - started
    for each, result in zip(jobs[1:], results[1:], strict=True):
        if isinstance(result, EngineError):
            if result.permanent:
                job_fail(job_id=each.id, message=result.message)
            else:
                _release(each.id, worker, wait_seconds=0, error_message=result.message[:2000])
        elif _advance_to_poll(each, worker, elapsed, {"transcript": result.to_dict()}):
            job_enqueue(job_id=each.id)  # its own chain stops at the transcribe step it finds done
    if isinstance(results[0], EngineError):
        raise results[0]
    advanced = _advance_to_poll(job, worker, elapsed, {"transcript": results[0].to_dict()})
    logger.info("%s transcribed together with %d other recording(s)", job.job_name, len(claimed))
    return StepOutcome("advanced") if advanced else StepOutcome("skipped")

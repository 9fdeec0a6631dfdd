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

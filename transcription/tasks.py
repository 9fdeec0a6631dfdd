"""The Celery chain: upload → transcribe → poll → format → save.

Tasks take a job id and call one service; the job row says what is done. A task whose
step is already done (a redelivered or stale message) stops its copy of the chain.
"""

from __future__ import annotations

import logging
import os
import random

from celery import Task, chain, shared_task
from celery.exceptions import Ignore
from django.conf import settings

from transcription import services
from transcription.models import JobStage

logger = logging.getLogger(__name__)


def retry_countdown(retries: int) -> float:
    """Exponential backoff with full jitter, capped."""
    ceiling = min(settings.TASK_RETRY_BACKOFF_MAX, 5 * (2**retries))
    return random.uniform(ceiling / 2, ceiling)


def run_step_task(task: Task, job_id: int, stage: str) -> None:
    worker = f"{task.request.hostname or 'worker'}:{os.getpid()}:{task.request.id}"
    try:
        outcome = services.job_run_step(job_id=job_id, stage=stage, worker=worker)
    except services.TransientStepError as exc:
        if task.request.retries >= task.max_retries:
            services.job_fail(job_id=job_id, message=f"The {stage} step failed {task.request.retries + 1} times: {exc}")
            raise Ignore() from exc
        logger.warning("Job %s %s failed transiently (%s); retrying", job_id, stage, exc)
        raise task.retry(exc=exc, countdown=retry_countdown(task.request.retries)) from exc
    if outcome.kind == "pending":
        # Long waits re-enqueue with a countdown instead of sleeping in a worker.
        raise task.retry(countdown=outcome.retry_after, max_retries=None)
    if not outcome.advanced:
        logger.info("Job %s %s: %s (%s)", job_id, stage, outcome.kind, outcome.detail)
        raise Ignore()


_step_options = {
    "bind": True,
    "acks_late": True,
    "max_retries": settings.TASK_MAX_RETRIES,
    "soft_time_limit": settings.STEP_SOFT_TIME_LIMIT,
    "time_limit": settings.STEP_HARD_TIME_LIMIT,
}


@shared_task(name="transcription.upload_recording", **_step_options)
def upload_recording(self: Task, job_id: int) -> None:
    run_step_task(self, job_id, JobStage.UPLOAD)


@shared_task(
    name="transcription.transcribe_recording",
    **{
        **_step_options,
        "soft_time_limit": settings.TRANSCRIBE_SOFT_TIME_LIMIT,
        "time_limit": settings.TRANSCRIBE_HARD_TIME_LIMIT,
    },
)
def transcribe_recording(self: Task, job_id: int) -> None:
    run_step_task(self, job_id, JobStage.TRANSCRIBE)


@shared_task(name="transcription.poll_transcription", **_step_options)
def poll_transcription(self: Task, job_id: int) -> None:
    run_step_task(self, job_id, JobStage.POLL)


@shared_task(name="transcription.format_entry", **_step_options)
def format_entry(self: Task, job_id: int) -> None:
    run_step_task(self, job_id, JobStage.FORMAT)


@shared_task(name="transcription.save_entry", **_step_options)
def save_entry(self: Task, job_id: int) -> None:
    run_step_task(self, job_id, JobStage.SAVE)


@shared_task(
    name="transcription.transcribe_chunk",
    bind=True,
    acks_late=True,
    max_retries=settings.TASK_MAX_RETRIES,
    soft_time_limit=settings.WHISPER_CHUNK_SOFT_TIME_LIMIT,
    time_limit=settings.WHISPER_CHUNK_HARD_TIME_LIMIT,
)
def transcribe_chunk(self: Task, job_id: int, index: int) -> None:
    """One chunk of a long recording (published as a group by the transcribe step; merged by poll)."""
    worker = f"{self.request.hostname or 'worker'}:{os.getpid()}:{self.request.id}"
    try:
        outcome = services.chunk_transcribe(job_id=job_id, index=index, worker=worker)
    except services.TransientStepError as exc:
        if self.request.retries >= self.max_retries:
            services.chunk_fail(job_id=job_id, index=index, message=f"Failed {self.request.retries + 1} times: {exc}")
            raise Ignore() from exc
        logger.warning("Job %s chunk %s failed transiently (%s); retrying", job_id, index, exc)
        raise self.retry(exc=exc, countdown=retry_countdown(self.request.retries)) from exc
    if not outcome.advanced:
        logger.info("Job %s chunk %s: %s (%s)", job_id, index, outcome.kind, outcome.detail)
        raise Ignore()


STEP_TASKS = {
    JobStage.UPLOAD: upload_recording,
    JobStage.TRANSCRIBE: transcribe_recording,
    JobStage.POLL: poll_transcription,
    JobStage.FORMAT: format_entry,
    JobStage.SAVE: save_entry,
}


def chain_from_stage(stage: str, job_id: int) -> chain:
    stages = services.STAGE_ORDER[services.STAGE_ORDER.index(stage) :]
    return chain(*(STEP_TASKS[s].si(job_id) for s in stages))


@shared_task(name="transcription.requeue_stuck_jobs", soft_time_limit=120, time_limit=180)
def requeue_stuck_jobs() -> dict[str, list[str]]:
    return services.jobs_requeue_stuck()


@shared_task(name="transcription.purge_expired_audio", soft_time_limit=600, time_limit=660)
def purge_expired_audio() -> int:
    return len(services.recordings_purge_expired_audio())

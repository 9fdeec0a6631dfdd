"""Recordings and the transcription jobs that turn them into diary entries."""

from __future__ import annotations

import secrets
import uuid

from django.conf import settings
from django.db import models


def recording_storage_key(instance: Recording, filename: str) -> str:
    # The user's file name never reaches storage: keys are per-owner random names.
    extension = filename.rsplit(".", 1)[-1].lower() if "." in filename else "bin"
    return f"recordings/{instance.owner_id}/{uuid.uuid4().hex}.{extension}"


def new_job_name() -> str:
    return f"transcription_{secrets.token_hex(8)}"


class Recording(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="recordings")
    audio = models.FileField(upload_to=recording_storage_key, max_length=255)
    original_filename = models.CharField(max_length=255, blank=True)
    content_type = models.CharField(max_length=100, blank=True)
    audio_format = models.CharField(max_length=50, blank=True, help_text="Container format found by probing")
    size_bytes = models.BigIntegerField()
    sha256 = models.CharField(max_length=64, db_index=True)
    duration_seconds = models.FloatField(null=True, blank=True)
    language = models.CharField(max_length=16, blank=True, help_text="Requested language; empty = detect")
    recorded_at = models.DateTimeField(db_index=True)
    uploaded_at = models.DateTimeField(auto_now_add=True)
    audio_deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-recorded_at"]

    def __str__(self) -> str:
        return f"{self.original_filename or self.audio.name} ({self.owner})"


class JobStatus(models.TextChoices):
    QUEUED = "queued"
    TRANSCRIBING = "transcribing"
    FORMATTING = "formatting"
    DONE = "done"
    FAILED = "failed"


class JobStage(models.TextChoices):
    # The chain's steps, in order; `stage` is the next step to run.
    UPLOAD = "upload"
    TRANSCRIBE = "transcribe"
    POLL = "poll"
    FORMAT = "format"
    SAVE = "save"
    DONE = "done"


ACTIVE_STATUSES = (JobStatus.QUEUED, JobStatus.TRANSCRIBING, JobStatus.FORMATTING)


class TranscriptionJob(models.Model):
    job_name = models.CharField(max_length=64, unique=True, default=new_job_name)
    recording = models.OneToOneField(Recording, on_delete=models.CASCADE, related_name="job")
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED, db_index=True)
    stage = models.CharField(max_length=16, choices=JobStage.choices, default=JobStage.UPLOAD)
    engine = models.CharField(max_length=32)
    formatter = models.CharField(max_length=32)
    external_job_id = models.CharField(max_length=200, blank=True)
    engine_handle = models.JSONField(default=dict, blank=True)
    transcript = models.JSONField(null=True, blank=True)
    draft = models.JSONField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0, help_text="Step executions, retries included")
    requeues = models.PositiveIntegerField(default=0, help_text="Times the sweep re-enqueued this job")
    progress = models.PositiveSmallIntegerField(default=0)
    error_message = models.TextField(blank=True)
    timings = models.JSONField(default=dict, blank=True, help_text="Seconds spent per step")
    token_usage = models.JSONField(default=dict, blank=True)
    # Who holds the current step, and until when; an expired lease means the sweep may requeue.
    claimed_by = models.CharField(max_length=200, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.job_name

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES


class ChunkStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class TranscriptionChunk(models.Model):
    """One time range of a long recording, cut at a silence and transcribed by any worker.

    The poll step merges the chunks of a job once all are done; a chunk is claimed like a job's
    step (a conditional update with a lease), so a redelivered or re-published task is harmless.
    """

    job = models.ForeignKey(TranscriptionJob, on_delete=models.CASCADE, related_name="chunks")
    index = models.PositiveIntegerField()
    start = models.FloatField(help_text="Seconds from the start of the recording")
    end = models.FloatField()
    status = models.CharField(max_length=16, choices=ChunkStatus.choices, default=ChunkStatus.QUEUED)
    # Segments with times in the whole recording (the chunk's start already added).
    transcript = models.JSONField(null=True, blank=True)
    error_message = models.TextField(blank=True)
    claimed_by = models.CharField(max_length=200, blank=True)
    # Claimed: the worker's deadline. Queued: when to publish the task again if no worker took it.
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0, help_text="Times a worker claimed this chunk")
    requeues = models.PositiveIntegerField(default=0, help_text="Times the poll step published it again")
    timings = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["job", "index"]
        constraints = [models.UniqueConstraint(fields=["job", "index"], name="transcription_chunk_unique_index")]

    def __str__(self) -> str:
        return f"{self.job_id}#{self.index} {self.start:.1f}-{self.end:.1f}s ({self.status})"

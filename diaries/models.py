"""Diary entries, the API keys their owners use, therapists' assignments and the access log."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class ReviewStatus(models.TextChoices):
    NEW = "new", "New"
    REVIEWED = "reviewed", "Reviewed"
    FLAGGED = "flagged", "Flagged for follow-up"


class DiaryEntry(models.Model):
    class Mood(models.TextChoices):
        POSITIVE = "positive"
        NEUTRAL = "neutral"
        NEGATIVE = "negative"
        MIXED = "mixed"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="diary_entries")
    # One entry per recording: the unique constraint is what makes the save step idempotent.
    recording = models.OneToOneField(
        "transcription.Recording", on_delete=models.SET_NULL, null=True, blank=True, related_name="entry"
    )
    title = models.CharField(max_length=200)
    body = models.TextField(help_text="Paragraphs separated by blank lines")
    summary = models.TextField(blank=True)
    mood_label = models.CharField(max_length=16, choices=Mood.choices, default=Mood.NEUTRAL)
    mood_score = models.FloatField(default=0.0)
    tags = models.JSONField(default=list, blank=True)
    language = models.CharField(max_length=16, blank=True)
    raw_transcript = models.TextField(blank=True)
    segments = models.JSONField(default=list, blank=True, help_text="[{start, end, text}] in seconds")
    formatter = models.CharField(max_length=64, blank=True)
    recorded_at = models.DateTimeField(db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # The therapist's side: never shown to the client through the API or the client page.
    review_status = models.CharField(
        max_length=16, choices=ReviewStatus.choices, default=ReviewStatus.NEW, db_index=True
    )
    reviewer_notes = models.TextField(blank=True, help_text="Seen by therapists only, never by the client")
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-recorded_at", "-id"]
        verbose_name_plural = "diary entries"
        indexes = [models.Index(fields=["owner", "review_status", "-recorded_at"], name="entry_owner_review_idx")]

    def __str__(self) -> str:
        return self.title

    @property
    def paragraphs(self) -> list[str]:
        return [p for p in self.body.split("\n\n") if p.strip()]


class ApiKey(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, blank=True)
    # The prefix finds the row; only a SHA-256 of the whole key is stored.
    prefix = models.CharField(max_length=16, unique=True)
    key_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class TherapistAssignment(models.Model):
    """A staff user who reviews a client's entries; a client may have several therapists and vice versa."""

    therapist = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="client_assignments",
        limit_choices_to={"is_staff": True},
    )
    client = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="therapist_assignments")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["therapist__username", "client__username"]
        constraints = [
            models.UniqueConstraint(fields=["therapist", "client"], name="unique_therapist_client"),
            # Nobody reviews their own diary.
            models.CheckConstraint(condition=~models.Q(therapist=models.F("client")), name="therapist_is_not_client"),
        ]

    def __str__(self) -> str:
        return f"{self.therapist} → {self.client}"


class AccessEvent(models.Model):
    """Who opened, changed, exported, played or deleted which entry, and when. Written only, never edited."""

    class Action(models.TextChoices):
        VIEW = "view", "opened"
        CHANGE = "change", "changed"
        EXPORT = "export", "exported"
        PLAY = "play", "played"
        DELETE = "delete", "deleted"

    at = models.DateTimeField(default=timezone.now, db_index=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    # Copies that outlive the user and the entry: an access log must survive deletions.
    username = models.CharField(max_length=150)
    action = models.CharField(max_length=16, choices=Action.choices)
    entry = models.ForeignKey(
        DiaryEntry, on_delete=models.SET_NULL, null=True, blank=True, related_name="access_events"
    )
    entry_ref = models.BigIntegerField(null=True, blank=True, help_text="The entry's id, kept after it is deleted")
    entry_title = models.CharField(max_length=200, blank=True)
    client = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    detail = models.CharField(max_length=255, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name = "access log entry"
        verbose_name_plural = "access log"
        indexes = [models.Index(fields=["client", "-at"], name="access_client_at_idx")]

    def __str__(self) -> str:
        return f"{self.username} {self.get_action_display()} #{self.entry_ref} at {self.at:%Y-%m-%d %H:%M}"

"""Diary entries and the API keys their owners use."""

from __future__ import annotations

from django.conf import settings
from django.db import models


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

    class Meta:
        ordering = ["-recorded_at", "-id"]
        verbose_name_plural = "diary entries"

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

"""Writes for diary entries and API keys."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from diaries.models import ApiKey, DiaryEntry
from transcription.engines.base import Transcript
from transcription.formatters.base import EntryDraft


def _hash_key(key: str) -> str:
    # Keys carry 256 random bits, so a fast hash is enough: there is nothing to brute-force.
    return hashlib.sha256(key.encode()).hexdigest()


def api_key_create(*, user: Any, name: str = "") -> tuple[ApiKey, str]:
    """Create a key and return it with its secret, which is shown once and never stored."""
    prefix = secrets.token_hex(4)
    key = f"{settings.API_KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    api_key = ApiKey.objects.create(user=user, name=name[:100], prefix=prefix, key_hash=_hash_key(key))
    return api_key, key


def api_key_revoke(*, api_key: ApiKey) -> None:
    ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())


def api_key_authenticate(*, key: str) -> ApiKey | None:
    """The active key matching `key`, its last use recorded; None for unknown or revoked keys."""
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != settings.API_KEY_PREFIX:
        return None
    api_key = ApiKey.objects.select_related("user").filter(prefix=parts[1]).first()
    if api_key is None or not hmac.compare_digest(api_key.key_hash, _hash_key(key)):
        return None
    if api_key.revoked_at is not None or not api_key.user.is_active:
        return None
    now = timezone.now()
    # Record use at most once a minute per key, to spare the database a write per request.
    if api_key.last_used_at is None or (now - api_key.last_used_at).total_seconds() > 60:
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
    return api_key


def entry_create_from_draft(*, recording: Any, draft: EntryDraft, transcript: Transcript) -> DiaryEntry:
    """Create the recording's entry, or return the one already there (the save step may run twice)."""
    entry, _ = DiaryEntry.objects.get_or_create(
        recording=recording,
        defaults={
            "owner_id": recording.owner_id,
            "title": draft.title[:200],
            "body": draft.body,
            "summary": draft.summary,
            "mood_label": draft.mood_label,
            "mood_score": draft.mood_score,
            "tags": list(draft.tags),
            "language": (draft.language or transcript.language)[:16],
            "raw_transcript": transcript.text,
            "segments": [segment.to_dict() for segment in transcript.segments],
            "formatter": draft.formatter[:64],
            "recorded_at": recording.recorded_at,
        },
    )
    return entry


def entry_delete(*, entry: DiaryEntry) -> None:
    """Delete an entry together with its recording, its job and (on commit) the audio file."""
    with transaction.atomic():
        recording = entry.recording
        entry.delete()
        if recording is not None:
            recording.delete()  # transcription.signals removes the file once this commits

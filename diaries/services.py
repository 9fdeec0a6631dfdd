"""Writes for diary entries, API keys, therapists' assignments, reviews and the access log."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group, Permission
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from diaries.models import AccessEvent, ApiKey, DiaryEntry, ReviewStatus, TherapistAssignment
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


def entry_delete(*, entry: DiaryEntry, deleted_by: Any = None, ip_address: str | None = None) -> None:
    """Delete an entry together with its recording, its job and (on commit) the audio file.

    With `deleted_by` (a reviewer in the admin) the deletion is written to the access log first.
    """
    with transaction.atomic():
        if deleted_by is not None:
            access_record(user=deleted_by, action=AccessEvent.Action.DELETE, entries=[entry], ip_address=ip_address)
        recording = entry.recording
        entry.delete()
        if recording is not None:
            recording.delete()  # transcription.signals removes the file once this commits


# --- Access log ------------------------------------------------------------------------------


def access_record(
    *,
    user: Any,
    action: str,
    entries: Iterable[DiaryEntry],
    detail: str = "",
    ip_address: str | None = None,
) -> int:
    """Record that `user` did `action` (an `AccessEvent.Action`) to each of `entries`; returns the rows written."""
    if action not in AccessEvent.Action.values:
        raise ValueError(f"unknown access action {action!r}")
    now = timezone.now()
    username = getattr(user, "get_username", lambda: "")() if user is not None else ""
    user_id = user.pk if user is not None and getattr(user, "is_authenticated", False) else None
    rows = [
        AccessEvent(
            at=now,
            user_id=user_id,
            username=(username or "anonymous")[:150],
            action=action,
            entry_id=entry.pk,
            entry_ref=entry.pk,
            entry_title=entry.title[:200],
            client_id=entry.owner_id,
            detail=detail[:255],
            ip_address=ip_address or None,
        )
        for entry in entries
    ]
    AccessEvent.objects.bulk_create(rows, batch_size=500)
    return len(rows)


# --- Therapists --------------------------------------------------------------------------------

THERAPISTS_GROUP = "Therapists"
# What a therapist may do in the admin; which rows they may do it to is the selectors' business.
THERAPIST_PERMISSIONS = [
    ("diaries", "view_diaryentry"),
    ("diaries", "change_diaryentry"),
    ("diaries", "view_accessevent"),
    ("transcription", "view_recording"),
    ("transcription", "view_transcriptionjob"),
    ("transcription", "change_transcriptionjob"),
]


def therapists_group_ensure() -> Group:
    """The "Therapists" group with exactly the permissions above (created on first use)."""
    group, _ = Group.objects.get_or_create(name=THERAPISTS_GROUP)
    query = Permission.objects.none()
    for app_label, codename in THERAPIST_PERMISSIONS:
        query |= Permission.objects.filter(content_type__app_label=app_label, codename=codename)
    group.permissions.add(*query)
    return group


def therapist_assign(*, therapist: Any, client: Any) -> TherapistAssignment:
    """Let a staff user review a client's entries; idempotent. The therapist joins the Therapists group."""
    if therapist.pk == client.pk:
        raise ValidationError("Nobody can be their own therapist.")
    if not therapist.is_staff or not therapist.is_active:
        raise ValidationError(f"{therapist} must be an active staff user to be a therapist.")
    with transaction.atomic():
        assignment, _ = TherapistAssignment.objects.get_or_create(therapist=therapist, client=client)
        therapist.groups.add(therapists_group_ensure())
    return assignment


def therapist_unassign(*, assignment: TherapistAssignment) -> None:
    assignment.delete()


# --- Review --------------------------------------------------------------------------------------


def _stamp_review(entry: DiaryEntry, *, reviewer: Any, status: str, now) -> None:
    entry.review_status = status
    if status == ReviewStatus.NEW:
        entry.reviewed_by, entry.reviewed_at = None, None
    else:
        entry.reviewed_by, entry.reviewed_at = reviewer, now


def entry_update(
    *,
    entry: DiaryEntry,
    editor: Any,
    changed_fields: Iterable[str],
    mark: str | None = None,
    ip_address: str | None = None,
) -> DiaryEntry:
    """Save a reviewer's edits to `entry` (already applied to the instance), stamp the review, log the change.

    `mark` (a ReviewStatus) overrides the status in the form, as the "Mark reviewed" button does.
    """
    changed = list(changed_fields)
    if mark is not None:
        if mark not in ReviewStatus.values:
            raise ValueError(f"unknown review status {mark!r}")
        if mark != entry.review_status or "review_status" in changed:
            entry.review_status = mark
            changed.append("review_status")
    now = timezone.now()
    if "review_status" in changed:
        _stamp_review(entry, reviewer=editor, status=entry.review_status, now=now)
    with transaction.atomic():
        entry.save()
        detail = "changed " + ", ".join(dict.fromkeys(changed)) if changed else "saved without changes"
        if "review_status" in changed:
            detail += f"; review: {entry.get_review_status_display().lower()}"
        access_record(
            user=editor, action=AccessEvent.Action.CHANGE, entries=[entry], detail=detail, ip_address=ip_address
        )
    return entry


def entries_set_review(
    *, entries: Iterable[DiaryEntry], reviewer: Any, status: str, ip_address: str | None = None
) -> int:
    """Set the review status of many entries (the admin's bulk actions); returns how many changed."""
    if status not in ReviewStatus.values:
        raise ValueError(f"unknown review status {status!r}")
    now = timezone.now()
    changed = []
    with transaction.atomic():
        for entry in entries:
            if entry.review_status == status:
                continue
            _stamp_review(entry, reviewer=reviewer, status=status, now=now)
            entry.save(update_fields=["review_status", "reviewed_by", "reviewed_at", "updated_at"])
            changed.append(entry)
        access_record(
            user=reviewer,
            action=AccessEvent.Action.CHANGE,
            entries=changed,
            detail=f"review: {ReviewStatus(status).label.lower()} (bulk)",
            ip_address=ip_address,
        )
    return len(changed)

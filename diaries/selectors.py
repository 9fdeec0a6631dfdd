"""Reads. Every read of entries, recordings and jobs goes through `*_visible_to`."""

from __future__ import annotations

from datetime import date
from typing import Any

from django.db.models import Q, QuerySet

from diaries.models import DiaryEntry
from transcription.models import Recording, TranscriptionJob


def _owner_filter(user: Any, field: str) -> Q | None:
    """None means everything (superusers); otherwise the rows this user may see."""
    if not user or not user.is_authenticated or not user.is_active:
        return Q(pk__in=[])
    if user.is_superuser:
        return None
    return Q(**{field: user.pk})


def entries_visible_to(*, user: Any) -> QuerySet[DiaryEntry]:
    rule = _owner_filter(user, "owner_id")
    qs = DiaryEntry.objects.select_related("owner", "recording")
    return qs if rule is None else qs.filter(rule)


def recordings_visible_to(*, user: Any) -> QuerySet[Recording]:
    rule = _owner_filter(user, "owner_id")
    qs = Recording.objects.select_related("owner")
    return qs if rule is None else qs.filter(rule)


def jobs_visible_to(*, user: Any) -> QuerySet[TranscriptionJob]:
    rule = _owner_filter(user, "recording__owner_id")
    qs = TranscriptionJob.objects.select_related("recording", "recording__owner", "recording__entry")
    return qs if rule is None else qs.filter(rule)


def entry_list(
    *, user: Any, date_from: date | None = None, date_to: date | None = None, query: str = ""
) -> QuerySet[DiaryEntry]:
    qs = entries_visible_to(user=user)
    if date_from:
        qs = qs.filter(recorded_at__date__gte=date_from)
    if date_to:
        qs = qs.filter(recorded_at__date__lte=date_to)
    for word in query.split()[:10]:
        qs = qs.filter(Q(title__icontains=word) | Q(body__icontains=word) | Q(summary__icontains=word))
    return qs.order_by("-recorded_at", "-id")

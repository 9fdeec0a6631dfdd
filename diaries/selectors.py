"""Reads. Every read of entries, recordings, jobs, clients and the access log goes through `_owner_filter`.

Two scopes, one rule each:

- ``Scope.OWN`` (the REST API and the client page): a user's own rows, whoever they are. A therapist or
  a superuser who keeps a diary reads it here like any client, and sees nobody else's.
- ``Scope.REVIEW`` (the admin): superusers see everything; an active staff user sees the rows of the
  clients assigned to them (``TherapistAssignment``) and nothing else, not even their own diary:
  nobody reviews their own entries (an assignment to oneself is refused by a constraint). Anyone else
  sees nothing.

A row outside the scope is a 404 wherever it is asked for: list, search, filter, autocomplete, direct
URL, action, export and audio.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Count, Max, Q, QuerySet
from django.db.models.functions import TruncWeek
from django.utils import timezone

from diaries.models import AccessEvent, DiaryEntry, ReviewStatus, TherapistAssignment
from transcription.models import Recording, TranscriptionJob


class Scope(StrEnum):
    OWN = "own"
    REVIEW = "review"


def _owner_filter(user: Any, field: str, scope: Scope = Scope.OWN) -> Q | None:
    """None means everything (superusers reviewing); otherwise the rows whose `field` (a user id) this user may see."""
    if not user or not user.is_authenticated or not user.is_active:
        return Q(pk__in=[])
    if scope == Scope.OWN:
        return Q(**{field: user.pk})
    if scope != Scope.REVIEW:
        raise ValueError(f"unknown scope {scope!r}")
    if user.is_superuser:
        return None
    if not user.is_staff:
        return Q(pk__in=[])
    return Q(**{f"{field}__in": TherapistAssignment.objects.filter(therapist_id=user.pk).values("client_id")})


def _scoped(qs: QuerySet, user: Any, field: str, scope: Scope) -> QuerySet:
    rule = _owner_filter(user, field, Scope(scope))
    return qs if rule is None else qs.filter(rule)


def entries_visible_to(*, user: Any, scope: Scope = Scope.OWN) -> QuerySet[DiaryEntry]:
    return _scoped(DiaryEntry.objects.select_related("owner", "recording"), user, "owner_id", scope)


def recordings_visible_to(*, user: Any, scope: Scope = Scope.OWN) -> QuerySet[Recording]:
    return _scoped(Recording.objects.select_related("owner"), user, "owner_id", scope)


def jobs_visible_to(*, user: Any, scope: Scope = Scope.OWN) -> QuerySet[TranscriptionJob]:
    qs = TranscriptionJob.objects.select_related("recording", "recording__owner", "recording__entry")
    return _scoped(qs, user, "recording__owner_id", scope)


def clients_visible_to(*, user: Any) -> QuerySet:
    """The clients a reviewer may open: their assigned clients; for superusers, everyone with a diary."""
    users = get_user_model().objects.all()
    rule = _owner_filter(user, "pk", Scope.REVIEW)
    if rule is None:
        users = users.filter(
            Q(pk__in=DiaryEntry.objects.values("owner_id"))
            | Q(pk__in=Recording.objects.values("owner_id"))
            | Q(pk__in=TherapistAssignment.objects.values("client_id"))
        )
    else:
        users = users.filter(rule)
    return users.order_by("username")


def access_events_visible_to(*, user: Any) -> QuerySet[AccessEvent]:
    """The access log of the clients a reviewer may see (rows of deleted clients: superusers only)."""
    return _scoped(AccessEvent.objects.select_related("user", "client", "entry"), user, "client_id", Scope.REVIEW)


def entry_list(
    *,
    user: Any,
    date_from: date | None = None,
    date_to: date | None = None,
    query: str = "",
    scope: Scope = Scope.OWN,
) -> QuerySet[DiaryEntry]:
    qs = entries_visible_to(user=user, scope=scope)
    if date_from:
        qs = qs.filter(recorded_at__date__gte=date_from)
    if date_to:
        qs = qs.filter(recorded_at__date__lte=date_to)
    for word in query.split()[:10]:
        qs = qs.filter(Q(title__icontains=word) | Q(body__icontains=word) | Q(summary__icontains=word))
    return qs.order_by("-recorded_at", "-id")


def entries_to_review(*, user: Any) -> QuerySet[DiaryEntry]:
    """A reviewer's queue: new entries of their clients, newest first."""
    qs = entries_visible_to(user=user, scope=Scope.REVIEW).filter(review_status=ReviewStatus.NEW)
    return qs.order_by("-recorded_at", "-id")


def client_summaries(*, user: Any, query: str = "") -> QuerySet:
    """The reviewer's clients with their entry counts, for the clients page."""
    clients = clients_visible_to(user=user)
    for word in query.split()[:5]:
        clients = clients.filter(
            Q(username__icontains=word)
            | Q(first_name__icontains=word)
            | Q(last_name__icontains=word)
            | Q(email__icontains=word)
        )
    return clients.annotate(
        entry_count=Count("diary_entries", distinct=True),
        new_count=Count("diary_entries", filter=Q(diary_entries__review_status=ReviewStatus.NEW), distinct=True),
        flagged_count=Count(
            "diary_entries", filter=Q(diary_entries__review_status=ReviewStatus.FLAGGED), distinct=True
        ),
        last_recorded_at=Max("diary_entries__recorded_at"),
    )


def client_entries(
    *, user: Any, client_id: int, date_from: date | None = None, date_to: date | None = None
) -> QuerySet[DiaryEntry]:
    """One client's entries that this reviewer may see, oldest first (for charts and exports)."""
    qs = entry_list(user=user, date_from=date_from, date_to=date_to, scope=Scope.REVIEW).filter(owner_id=client_id)
    return qs.order_by("recorded_at", "id")


@dataclass(frozen=True)
class MoodPoint:
    entry_id: int
    recorded_at: datetime
    score: float
    label: str
    title: str


def client_mood_series(
    *, user: Any, client_id: int, date_from: date | None = None, date_to: date | None = None, limit: int = 1000
) -> list[MoodPoint]:
    rows = client_entries(user=user, client_id=client_id, date_from=date_from, date_to=date_to).values_list(
        "id", "recorded_at", "mood_score", "mood_label", "title"
    )
    points = [MoodPoint(*row) for row in rows.reverse()[:limit]]
    return sorted(points, key=lambda point: point.recorded_at)


def client_weekly_counts(
    *, user: Any, client_id: int, date_from: date | None = None, date_to: date | None = None
) -> list[tuple[date, int]]:
    """Entries per week (weeks start on Monday), every week between the first and the last, empty ones as 0."""
    rows = (
        client_entries(user=user, client_id=client_id, date_from=date_from, date_to=date_to)
        .order_by()
        .annotate(week=TruncWeek("recorded_at", tzinfo=timezone.get_current_timezone()))
        .values("week")
        .annotate(count=Count("id"))
        .values_list("week", "count")
    )
    counts: dict[date, int] = {}
    for week, count in rows:
        day = week.date() if isinstance(week, datetime) else week
        counts[day] = counts.get(day, 0) + count
    if not counts:
        return []
    series, week, last = [], min(counts), max(counts)
    while week <= last and len(series) < 520:
        series.append((week, counts.get(week, 0)))
        week += timedelta(days=7)
    return series

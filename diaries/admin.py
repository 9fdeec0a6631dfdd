"""Therapists' review in the Django admin.

Every queryset, custom view, action, autocomplete, export and audio URL here reads through the selectors in
``Scope.REVIEW``: superusers see everything, a therapist only the clients assigned to them. A row outside
that scope is a 404 (the admin's own views redirect a missing object to the index). Opening, changing,
exporting, playing and deleting an entry is written to the access log by `services.access_record`.
"""

from __future__ import annotations

import json
from datetime import date

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from diaries import selectors, services
from diaries.models import AccessEvent, ApiKey, DiaryEntry, ReviewStatus, TherapistAssignment
from diaries.rendering import MOOD_COLOURS, mood_chart_svg, weekly_counts_svg
from diaries.selectors import Scope
from diaries.views import client_ip_address, entry_audio_response, export_response
from transcription.models import JobStatus, Recording, TranscriptionJob
from transcription.services import job_retry

# The index links to the review queue and the clients page (see the template).
admin.site.index_template = "admin/diaries/index.html"


def _client_label(user) -> str:
    full_name = user.get_full_name()
    return f"{full_name} ({user.get_username()})" if full_name else user.get_username()


def _parse_day(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


class ClientFilter(admin.SimpleListFilter):
    """Filter by client; the choices are the reviewer's own clients, and any other id finds nothing."""

    title = "client"
    parameter_name = "client"
    owner_field = "owner_id"

    def lookups(self, request, model_admin):
        return [(str(user.pk), _client_label(user)) for user in selectors.clients_visible_to(user=request.user)[:500]]

    def queryset(self, request, queryset):
        value = self.value()
        if value is None:
            return queryset
        if not str(value).isdigit():
            return queryset.none()
        return queryset.filter(**{self.owner_field: int(value)})


class JobClientFilter(ClientFilter):
    owner_field = "recording__owner_id"


class AccessClientFilter(ClientFilter):
    owner_field = "client_id"


class DiaryEntryForm(forms.ModelForm):
    tags = forms.CharField(
        required=False,
        help_text="Comma-separated, e.g. family, work, sleep",
        widget=forms.TextInput(attrs={"class": "vTextField", "size": 60}),
    )

    class Meta:
        model = DiaryEntry
        fields = ["title", "summary", "body", "mood_label", "mood_score", "tags", "review_status", "reviewer_notes"]
        widgets = {
            "summary": forms.Textarea(attrs={"rows": 3}),
            "body": forms.Textarea(attrs={"rows": 14}),
            "reviewer_notes": forms.Textarea(attrs={"rows": 4}),
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance and self.instance.pk and "tags" in self.fields:
            self.initial["tags"] = ", ".join(self.instance.tags or [])

    def clean_tags(self) -> list[str]:
        raw = (self.cleaned_data.get("tags") or "").strip()
        try:
            parsed = json.loads(raw) if raw.startswith("[") else None
        except ValueError:
            parsed = None
        items = parsed if isinstance(parsed, list) else raw.split(",")
        tags = list(dict.fromkeys(str(item).strip()[:50] for item in items if str(item).strip()))
        if len(tags) > 20:
            raise forms.ValidationError("At most 20 tags.")
        return tags

    def clean_mood_score(self) -> float:
        score = self.cleaned_data["mood_score"]
        if not -1.0 <= score <= 1.0:
            raise forms.ValidationError("The mood score runs from -1 (very negative) to +1 (very positive).")
        return score


@admin.register(DiaryEntry)
class DiaryEntryAdmin(admin.ModelAdmin):
    form = DiaryEntryForm
    list_display = ["title", "client", "recorded_at", "review_badge", "mood_label", "job_status", "formatter"]
    list_filter = [
        "review_status",
        ClientFilter,
        "mood_label",
        "language",
        "formatter",
        ("recorded_at", admin.DateFieldListFilter),
    ]
    search_fields = [
        "title",
        "body",
        "summary",
        "owner__username",
        "owner__first_name",
        "owner__last_name",
        "owner__email",
    ]
    date_hierarchy = "recorded_at"
    change_form_template = "admin/diaries/diaryentry/change_form.html"
    actions = ["mark_reviewed", "flag_for_follow_up", "export_markdown", "export_pdf"]
    fieldsets = [
        ("Entry", {"fields": ["title", "summary", "body", ("mood_label", "mood_score"), "tags"]}),
        ("Review", {"fields": ["review_status", "reviewer_notes", ("reviewed_by", "reviewed_at")]}),
        (
            "Source (read-only)",
            {
                "fields": [
                    "owner",
                    "recorded_at",
                    "language",
                    "formatter",
                    "raw_transcript",
                    ("created_at", "updated_at"),
                ],
                "classes": ["collapse"],
            },
        ),
    ]
    readonly_fields = [
        "owner",
        "recorded_at",
        "recording",
        "raw_transcript",
        "formatter",
        "language",
        "reviewed_by",
        "reviewed_at",
        "created_at",
        "updated_at",
    ]

    def get_queryset(self, request):
        qs = selectors.entries_visible_to(user=request.user, scope=Scope.REVIEW)
        return qs.select_related("recording__job", "reviewed_by")

    def has_add_permission(self, request):
        return False  # entries come from recordings

    @admin.display(description="Client", ordering="owner__username")
    def client(self, entry: DiaryEntry) -> str:
        return _client_label(entry.owner)

    @admin.display(description="Review", ordering="review_status")
    def review_badge(self, entry: DiaryEntry):
        colours = {ReviewStatus.NEW: "#417690", ReviewStatus.REVIEWED: "#2e7d32", ReviewStatus.FLAGGED: "#c62828"}
        return format_html(
            '<span class="review-badge review-{}" style="color:{};font-weight:bold">{}</span>',
            entry.review_status,
            colours.get(entry.review_status, "inherit"),
            entry.get_review_status_display(),
        )

    @admin.display(description="Job")
    def job_status(self, entry: DiaryEntry) -> str:
        job = getattr(entry.recording, "job", None) if entry.recording else None
        return job.status if job else "—"

    # --- URLs and views --------------------------------------------------------------------------

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name

        def wrap(view):
            return self.admin_site.admin_view(view)

        custom = [
            path("to-review/", wrap(self.to_review_view), name="{}_{}_to_review".format(*info)),
            path("clients/", wrap(self.clients_view), name="{}_{}_clients".format(*info)),
            path("clients/<int:client_id>/", wrap(self.client_view), name="{}_{}_client".format(*info)),
            path(
                "clients/<int:client_id>/export/",
                wrap(self.client_export_view),
                name="{}_{}_client_export".format(*info),
            ),
            path("<path:object_id>/audio/", wrap(self.audio_view), name="{}_{}_audio".format(*info)),
            path("<path:object_id>/export/<str:fmt>/", wrap(self.export_view), name="{}_{}_export".format(*info)),
        ]
        return custom + super().get_urls()

    def _require_view(self, request) -> None:
        if not self.has_view_permission(request):
            raise PermissionDenied

    def _entry_or_404(self, request, object_id: str) -> DiaryEntry:
        entry = self.get_object(request, unquote(object_id))
        if entry is None:
            raise Http404("No such entry.")
        return entry

    def _client_or_404(self, request, client_id: int):
        return get_object_or_404(selectors.clients_visible_to(user=request.user), pk=client_id)

    def to_review_view(self, request):
        """The reviewer's landing page: their clients' new entries, newest first (a filtered changelist)."""
        self._require_view(request)
        url = reverse("admin:diaries_diaryentry_changelist")
        return HttpResponseRedirect(f"{url}?review_status__exact={ReviewStatus.NEW}")  # default order: newest first

    def changelist_view(self, request, extra_context=None):
        if request.GET.get("review_status__exact") == ReviewStatus.NEW:
            extra_context = {**(extra_context or {}), "title": "Entries to review, newest first"}
        return super().changelist_view(request, extra_context)

    def clients_view(self, request):
        self._require_view(request)
        query = request.GET.get("q", "")[:100]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Clients",
            "query": query,
            "clients": selectors.client_summaries(user=request.user, query=query),
        }
        return TemplateResponse(request, "admin/diaries/clients.html", context)

    def client_view(self, request, client_id: int):
        """One client: mood over time, entries per week, exports of a date range."""
        self._require_view(request)
        client = self._client_or_404(request, client_id)
        date_from, date_to = _parse_day(request.GET.get("from")), _parse_day(request.GET.get("to"))
        scope = {"user": request.user, "client_id": client.pk, "date_from": date_from, "date_to": date_to}
        points = selectors.client_mood_series(**scope)
        weeks = selectors.client_weekly_counts(**scope)
        entries = selectors.client_entries(**scope)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Client: {_client_label(client)}",
            "client": client,
            "date_from": date_from,
            "date_to": date_to,
            "mood_svg": mark_safe(mood_chart_svg(points)),  # the renderer escapes every text it writes
            "weekly_svg": mark_safe(weekly_counts_svg(weeks)),
            "weeks": weeks,
            "mood_colours": MOOD_COLOURS,
            "entry_count": entries.count(),
            "to_review_count": entries.filter(review_status=ReviewStatus.NEW).count(),
            "flagged_count": entries.filter(review_status=ReviewStatus.FLAGGED).count(),
            "recent_entries": entries.reverse()[:10],
            "export_url": reverse("admin:diaries_diaryentry_client_export", args=[client.pk]),
            "entries_url": reverse("admin:diaries_diaryentry_changelist") + f"?client={client.pk}",
        }
        return TemplateResponse(request, "admin/diaries/client.html", context)

    def client_export_view(self, request, client_id: int):
        """A client's entries between two dates (either may be open) as one Markdown or PDF document."""
        self._require_view(request)
        client = self._client_or_404(request, client_id)
        fmt = request.GET.get("format", "md")
        date_from, date_to = _parse_day(request.GET.get("from")), _parse_day(request.GET.get("to"))
        entries = list(
            selectors.client_entries(user=request.user, client_id=client.pk, date_from=date_from, date_to=date_to)
        )
        period = f"{date_from or 'the first entry'} to {date_to or 'the last entry'}"
        response = export_response(
            entries,
            fmt=fmt,
            title=f"Diary of {_client_label(client)}",
            subtitle=f"{len(entries)} entries, {period}",
            filename=f"diary-{client.get_username()}-{date_from or 'start'}-{date_to or 'end'}",
        )
        services.access_record(
            user=request.user,
            action=AccessEvent.Action.EXPORT,
            entries=entries,
            detail=f"{fmt} export of {period}",
            ip_address=client_ip_address(request),
        )
        return response

    def export_view(self, request, object_id: str, fmt: str):
        self._require_view(request)
        entry = self._entry_or_404(request, object_id)
        response = export_response(
            [entry],
            fmt=fmt,
            title=entry.title,
            subtitle=f"Diary of {_client_label(entry.owner)}",
            filename=f"entry-{entry.pk}",
        )
        services.access_record(
            user=request.user,
            action=AccessEvent.Action.EXPORT,
            entries=[entry],
            detail=f"{fmt} export",
            ip_address=client_ip_address(request),
        )
        return response

    def audio_view(self, request, object_id: str):
        """The entry's recording for the player, with byte ranges so that it can seek; a play is logged once."""
        self._require_view(request)
        entry = self._entry_or_404(request, object_id)
        return entry_audio_response(request, entry)

    # --- The entry page --------------------------------------------------------------------------

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            job = getattr(obj.recording, "job", None) if obj.recording else None
            has_audio = bool(obj.recording_id and obj.recording.audio.name and not obj.recording.audio_deleted_at)
            context.update(
                audio_url=reverse("admin:diaries_diaryentry_audio", args=[obj.pk]) if has_audio else "",
                segments=obj.segments,
                job=job,
                export_md_url=reverse("admin:diaries_diaryentry_export", args=[obj.pk, "md"]),
                export_pdf_url=reverse("admin:diaries_diaryentry_export", args=[obj.pk, "pdf"]),
                client_url=reverse("admin:diaries_diaryentry_client", args=[obj.owner_id]),
                client_label=_client_label(obj.owner),
                can_review=self.has_change_permission(request, obj),
            )
            if request.method == "GET":
                services.access_record(
                    user=request.user,
                    action=AccessEvent.Action.VIEW,
                    entries=[obj],
                    ip_address=client_ip_address(request),
                )
        return super().render_change_form(request, context, add, change, form_url, obj)

    def save_model(self, request, obj, form, change):
        mark = None
        if "_mark_reviewed" in request.POST:
            mark = ReviewStatus.REVIEWED
        elif "_flag" in request.POST:
            mark = ReviewStatus.FLAGGED
        services.entry_update(
            entry=obj,
            editor=request.user,
            changed_fields=form.changed_data,
            mark=mark,
            ip_address=client_ip_address(request),
        )
        if mark is not None:
            self.message_user(request, f"“{obj}” is now {obj.get_review_status_display().lower()}.", messages.SUCCESS)

    def delete_model(self, request, obj):
        services.entry_delete(entry=obj, deleted_by=request.user, ip_address=client_ip_address(request))

    def delete_queryset(self, request, queryset):
        for entry in queryset:
            services.entry_delete(entry=entry, deleted_by=request.user, ip_address=client_ip_address(request))

    # --- Actions (their querysets come from get_queryset: other reviewers' rows are never in them) ---

    def _set_review(self, request, queryset, status: str) -> None:
        changed = services.entries_set_review(
            entries=queryset, reviewer=request.user, status=status, ip_address=client_ip_address(request)
        )
        label = ReviewStatus(status).label.lower()
        self.message_user(request, f"{changed} entr{'y' if changed == 1 else 'ies'} marked {label}.", messages.SUCCESS)

    @admin.action(description="Mark selected entries as reviewed", permissions=["change"])
    def mark_reviewed(self, request, queryset):
        self._set_review(request, queryset, ReviewStatus.REVIEWED)

    @admin.action(description="Flag selected entries for follow-up", permissions=["change"])
    def flag_for_follow_up(self, request, queryset):
        self._set_review(request, queryset, ReviewStatus.FLAGGED)

    def _export_selected(self, request, queryset, fmt: str):
        entries = list(queryset.order_by("owner__username", "recorded_at", "id"))
        response = export_response(
            entries,
            fmt=fmt,
            title="Diary entries",
            subtitle=f"{len(entries)} selected entries",
            filename="diary-entries",
        )
        services.access_record(
            user=request.user,
            action=AccessEvent.Action.EXPORT,
            entries=entries,
            detail=f"{fmt} export of a selection",
            ip_address=client_ip_address(request),
        )
        return response

    @admin.action(description="Export selected entries as Markdown", permissions=["view"])
    def export_markdown(self, request, queryset):
        return self._export_selected(request, queryset, "md")

    @admin.action(description="Export selected entries as PDF", permissions=["view"])
    def export_pdf(self, request, queryset):
        return self._export_selected(request, queryset, "pdf")


@admin.register(TranscriptionJob)
class TranscriptionJobAdmin(admin.ModelAdmin):
    list_display = [
        "job_name",
        "owner",
        "status",
        "stage",
        "progress",
        "engine",
        "formatter",
        "attempts",
        "created_at",
        "short_error",
    ]
    list_filter = ["status", JobClientFilter, "stage", "engine", "formatter"]
    search_fields = ["job_name", "external_job_id", "recording__owner__username", "error_message"]
    readonly_fields = [f.name for f in TranscriptionJob._meta.fields] + ["entry_link"]
    exclude = ["engine_handle", "transcript", "draft"]
    actions = ["rerun_failed"]

    def get_queryset(self, request):
        return selectors.jobs_visible_to(user=request.user, scope=Scope.REVIEW)

    def has_add_permission(self, request):
        return False

    @admin.display(description="Owner")
    def owner(self, job: TranscriptionJob):
        return job.recording.owner

    @admin.display(description="Error")
    def short_error(self, job: TranscriptionJob) -> str:
        return (job.error_message[:80] + "…") if len(job.error_message) > 80 else job.error_message

    @admin.display(description="Entry")
    def entry_link(self, job: TranscriptionJob):
        entry = getattr(job.recording, "entry", None)
        if entry is None:
            return "—"
        return format_html('<a href="{}">{}</a>', reverse("admin:diaries_diaryentry_change", args=[entry.pk]), entry)

    @admin.action(description="Re-run selected failed jobs", permissions=["change"])
    def rerun_failed(self, request, queryset):
        rerun = sum(job_retry(job=job) for job in queryset.filter(status=JobStatus.FAILED))
        skipped = queryset.count() - rerun
        self.message_user(
            request,
            f"Re-queued {rerun} job(s); {skipped} were not failed and were left alone.",
            messages.SUCCESS if rerun else messages.WARNING,
        )


@admin.register(Recording)
class RecordingAdmin(admin.ModelAdmin):
    list_display = ["original_filename", "owner", "recorded_at", "duration_seconds", "size_bytes", "audio_format"]
    list_filter = [ClientFilter]
    search_fields = ["original_filename", "owner__username", "sha256"]
    # The storage key is not shown: audio is played through the entry's audio URL only.
    fields = [f.name for f in Recording._meta.fields if f.name not in {"id", "audio"}] + ["entry_link"]
    readonly_fields = fields

    def get_queryset(self, request):
        return selectors.recordings_visible_to(user=request.user, scope=Scope.REVIEW).select_related("entry")

    def has_add_permission(self, request):
        return False

    @admin.display(description="Entry")
    def entry_link(self, recording: Recording):
        entry = getattr(recording, "entry", None)
        if entry is None:
            return "—"
        return format_html('<a href="{}">{}</a>', reverse("admin:diaries_diaryentry_change", args=[entry.pk]), entry)


@admin.register(TherapistAssignment)
class TherapistAssignmentAdmin(admin.ModelAdmin):
    """Who reviews whom: superusers only. Saving an assignment puts the therapist in the Therapists group."""

    list_display = ["therapist", "client", "created_at"]
    list_filter = [("therapist", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["therapist__username", "client__username", "client__first_name", "client__last_name"]
    autocomplete_fields = ["therapist", "client"]

    def _superuser(self, request) -> bool:
        return request.user.is_active and request.user.is_superuser

    def has_module_permission(self, request):
        return self._superuser(request)

    def has_view_permission(self, request, obj=None):
        return self._superuser(request)

    def has_add_permission(self, request):
        return self._superuser(request)

    def has_change_permission(self, request, obj=None):
        return False  # delete and add instead: an assignment has nothing to edit

    def has_delete_permission(self, request, obj=None):
        return self._superuser(request)

    def save_model(self, request, obj, form, change):
        assignment = services.therapist_assign(therapist=obj.therapist, client=obj.client)
        obj.pk = assignment.pk

    def delete_model(self, request, obj):
        services.therapist_unassign(assignment=obj)

    def delete_queryset(self, request, queryset):
        for assignment in queryset:
            services.therapist_unassign(assignment=assignment)


@admin.register(AccessEvent)
class AccessEventAdmin(admin.ModelAdmin):
    """The access log: read-only for everyone, superusers included."""

    list_display = ["at", "username", "action", "entry_link", "client", "detail", "ip_address"]
    list_filter = ["action", AccessClientFilter, ("at", admin.DateFieldListFilter)]
    search_fields = ["username", "entry_title", "client__username", "detail"]
    date_hierarchy = "at"
    list_select_related = ["client", "entry"]

    def get_queryset(self, request):
        return selectors.access_events_visible_to(user=request.user)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="Entry", ordering="entry_ref")
    def entry_link(self, event: AccessEvent):
        if event.entry_id is None:
            return f"#{event.entry_ref} {event.entry_title} (deleted)"
        url = reverse("admin:diaries_diaryentry_change", args=[event.entry_id])
        return format_html('<a href="{}">#{} {}</a>', url, event.entry_ref, event.entry_title)


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["prefix", "user", "name", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["revoked_at"]
    search_fields = ["prefix", "user__username", "name"]
    readonly_fields = ["prefix", "key_hash", "created_at", "last_used_at", "revoked_at", "user"]
    actions = ["revoke"]

    def has_add_permission(self, request):
        # Keys are shown once at creation: `manage.py create_api_key USER`.
        return False

    def get_queryset(self, request):
        qs = super().get_queryset(request).select_related("user")
        return qs if request.user.is_superuser else qs.filter(user=request.user)

    @admin.action(description="Revoke selected keys")
    def revoke(self, request, queryset):
        for key in queryset:
            services.api_key_revoke(api_key=key)
        self.message_user(request, f"Revoked {queryset.count()} key(s).")

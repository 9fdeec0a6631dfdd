"""Staff review in the Django admin; every queryset comes from the visibility selectors."""

from __future__ import annotations

from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html

from diaries import selectors, services
from diaries.models import ApiKey, DiaryEntry
from transcription.models import JobStatus, Recording, TranscriptionJob
from transcription.services import job_retry


@admin.register(DiaryEntry)
class DiaryEntryAdmin(admin.ModelAdmin):
    list_display = ["title", "owner", "recorded_at", "mood_label", "job_status", "formatter", "language"]
    list_filter = ["mood_label", "language", "formatter", ("recorded_at", admin.DateFieldListFilter)]
    search_fields = ["title", "body", "summary", "owner__username", "owner__email"]
    date_hierarchy = "recorded_at"
    change_form_template = "admin/diaries/diaryentry/change_form.html"
    fields = [
        "owner",
        "recorded_at",
        "title",
        "summary",
        "body",
        "mood_label",
        "mood_score",
        "tags",
        "language",
        "formatter",
        "raw_transcript",
        "created_at",
        "updated_at",
    ]
    readonly_fields = ["owner", "recording", "raw_transcript", "formatter", "language", "created_at", "updated_at"]

    def get_queryset(self, request):
        return selectors.entries_visible_to(user=request.user).select_related("recording__job")

    @admin.display(description="Job")
    def job_status(self, entry: DiaryEntry) -> str:
        job = getattr(entry.recording, "job", None) if entry.recording else None
        return job.status if job else "—"

    def delete_model(self, request, obj):
        services.entry_delete(entry=obj)

    def delete_queryset(self, request, queryset):
        for entry in queryset:
            services.entry_delete(entry=entry)

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            context["audio_url"] = reverse("entry-audio", args=[obj.pk]) if obj.recording_id else ""
            context["segments"] = obj.segments
            job = getattr(obj.recording, "job", None) if obj.recording else None
            context["job"] = job
        return super().render_change_form(request, context, add, change, form_url, obj)


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
    list_filter = ["status", "stage", "engine", "formatter"]
    search_fields = ["job_name", "external_job_id", "recording__owner__username", "error_message"]
    readonly_fields = [f.name for f in TranscriptionJob._meta.fields] + ["entry_link"]
    exclude = ["engine_handle", "transcript", "draft"]
    actions = ["rerun_failed"]

    def get_queryset(self, request):
        return selectors.jobs_visible_to(user=request.user)

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

    @admin.action(description="Re-run selected failed jobs")
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
    search_fields = ["original_filename", "owner__username", "sha256"]
    readonly_fields = [f.name for f in Recording._meta.fields]

    def get_queryset(self, request):
        return selectors.recordings_visible_to(user=request.user)

    def has_add_permission(self, request):
        return False


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

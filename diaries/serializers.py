from __future__ import annotations

from rest_framework import serializers

from diaries.models import DiaryEntry
from transcription.models import TranscriptionJob


class UploadSerializer(serializers.Serializer):
    audio_file = serializers.FileField(
        allow_empty_file=True, help_text="The recording (wav, mp3, m4a, ogg, webm, flac)"
    )
    recorded_at = serializers.DateTimeField(required=False, help_text="When it was recorded (ISO 8601); default now")
    language = serializers.CharField(
        required=False, allow_blank=True, max_length=8, help_text="ISO 639-1; default detect"
    )


class UploadResponseSerializer(serializers.Serializer):
    message = serializers.CharField()
    job_name = serializers.CharField()


class ErrorSerializer(serializers.Serializer):
    error = serializers.CharField()
    message = serializers.CharField()


class JobSerializer(serializers.ModelSerializer):
    entry_id = serializers.SerializerMethodField()
    recording = serializers.SerializerMethodField()

    class Meta:
        model = TranscriptionJob
        fields = [
            "job_name",
            "status",
            "stage",
            "progress",
            "error_message",
            "engine",
            "formatter",
            "attempts",
            "timings",
            "created_at",
            "updated_at",
            "finished_at",
            "entry_id",
            "recording",
        ]

    def get_entry_id(self, job: TranscriptionJob) -> int | None:
        entry = getattr(job.recording, "entry", None)
        return entry.pk if entry is not None else None

    def get_recording(self, job: TranscriptionJob) -> dict:
        rec = job.recording
        return {
            "original_filename": rec.original_filename,
            "size_bytes": rec.size_bytes,
            "duration_seconds": rec.duration_seconds,
            "recorded_at": rec.recorded_at,
            "sha256": rec.sha256,
        }


class SegmentSerializer(serializers.Serializer):
    start = serializers.FloatField()
    end = serializers.FloatField()
    text = serializers.CharField()


class EntryListSerializer(serializers.ModelSerializer):
    class Meta:
        model = DiaryEntry
        fields = ["id", "title", "summary", "mood_label", "mood_score", "tags", "language", "recorded_at", "created_at"]


class EntryPageSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = EntryListSerializer(many=True)


class EntryDetailSerializer(serializers.ModelSerializer):
    paragraphs = serializers.ListField(child=serializers.CharField(), read_only=True)
    segments = SegmentSerializer(many=True, read_only=True)
    job_name = serializers.SerializerMethodField()
    duration_seconds = serializers.SerializerMethodField()

    class Meta:
        model = DiaryEntry
        fields = [
            "id",
            "title",
            "body",
            "paragraphs",
            "summary",
            "mood_label",
            "mood_score",
            "tags",
            "language",
            "raw_transcript",
            "segments",
            "formatter",
            "recorded_at",
            "created_at",
            "updated_at",
            "job_name",
            "duration_seconds",
        ]

    def get_job_name(self, entry: DiaryEntry) -> str | None:
        job = getattr(entry.recording, "job", None) if entry.recording else None
        return job.job_name if job else None

    def get_duration_seconds(self, entry: DiaryEntry) -> float | None:
        return entry.recording.duration_seconds if entry.recording else None

"""Run the whole chain for one audio file in this process and print the entry as Markdown."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files import File
from django.core.management.base import BaseCommand, CommandError

from diaries.rendering import entry_to_markdown
from diary_project.errors import ApplicationError
from transcription.engines.registry import ENGINES, FORMATTERS
from transcription.models import JobStatus
from transcription.services import job_run_inline, recording_create


class Command(BaseCommand):
    help = "Transcribe FILE into a diary entry (in-process) and print it as Markdown."

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path)
        parser.add_argument("--user", default="", help="Owner's username (default: the first superuser, or 'diary')")
        parser.add_argument("--engine", choices=sorted(ENGINES), default=None)
        parser.add_argument("--formatter", choices=sorted(FORMATTERS), default=None)
        parser.add_argument("--language", default="", help="ISO 639-1 code; default: detect")

    def _owner(self, username: str):
        User = get_user_model()
        if username:
            user = User.objects.filter(username=username).first()
            if user is None:
                raise CommandError(f"No user named {username!r} (create one with createsuperuser)")
            return user
        user = User.objects.filter(is_superuser=True).order_by("id").first()
        return user or User.objects.get_or_create(username="diary")[0]

    def handle(self, *args, **options):
        path: Path = options["file"]
        if not path.is_file():
            raise CommandError(f"{path} is not a file")
        owner = self._owner(options["user"])
        with path.open("rb") as handle:
            upload = File(handle, name=path.name)
            upload.size = path.stat().st_size
            try:
                job = recording_create(
                    owner=owner,
                    uploaded_file=upload,
                    language=options["language"],
                    engine=options["engine"] or settings.TRANSCRIPTION_ENGINE,
                    formatter=options["formatter"] or settings.DIARY_FORMATTER,
                    enqueue=False,
                )
            except ApplicationError as exc:
                raise CommandError(exc.message) from exc
        self.stderr.write(f"{job.job_name}: transcribing {path.name} with {job.engine} …")
        job = job_run_inline(job_id=job.id)
        if job.status != JobStatus.DONE:
            raise CommandError(f"{job.job_name} {job.status}: {job.error_message}")
        entry = job.recording.entry
        self.stderr.write(f"{job.job_name}: done in {job.timings.get('total', 0):.1f}s (entry {entry.pk})")
        self.stdout.write(entry_to_markdown(entry), ending="")

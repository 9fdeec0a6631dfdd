from django.conf import settings
from django.core.management.base import BaseCommand

from transcription.services import recordings_purge_expired_audio


class Command(BaseCommand):
    help = "Delete audio AUDIO_RETENTION_DAYS after its entry was made (entries and transcripts stay)."

    def handle(self, *args, **options):
        if settings.AUDIO_RETENTION_DAYS <= 0:
            self.stdout.write("AUDIO_RETENTION_DAYS is 0: audio is kept; nothing to do")
            return
        purged = recordings_purge_expired_audio()
        self.stdout.write(f"deleted the audio of {len(purged)} recording(s)")

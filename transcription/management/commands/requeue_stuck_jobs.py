from django.core.management.base import BaseCommand

from transcription.services import jobs_requeue_stuck


class Command(BaseCommand):
    help = "Re-enqueue jobs whose step lease ran out (a lost message or a dead worker). Safe to run twice."

    def handle(self, *args, **options):
        result = jobs_requeue_stuck()
        for name in result["requeued"]:
            self.stdout.write(f"requeued {name}")
        for name in result["failed"]:
            self.stdout.write(f"failed {name} (too many recoveries)")
        self.stdout.write(f"{len(result['requeued'])} requeued, {len(result['failed'])} failed")

from pathlib import Path

from django.core.management.base import BaseCommand

from transcription import benchmarks


class Command(BaseCommand):
    help = "Measure model real-time factors and upload-to-entry latency; print a table and write JSON."

    def add_arguments(self, parser):
        parser.add_argument("--output", type=Path, default=Path("bench-results"))
        parser.add_argument("--threads", type=int, default=2)

    def handle(self, *args, **options):
        results = benchmarks.run(options["output"], threads=options["threads"])
        self.stdout.write(benchmarks.format_table(results))
        self.stdout.write(f"JSON: {options['output'] / 'bench.json'}")

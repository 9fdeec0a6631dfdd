from pathlib import Path

from django.core.management.base import BaseCommand

from transcription import benchmarks


class Command(BaseCommand):
    help = (
        "Measure word error rates, real-time factors, upload-to-entry latency, short-clip throughput, "
        "worker scaling on a long recording and peak memory; print one table, write JSON and PNG plots."
    )

    def add_arguments(self, parser):
        parser.add_argument("--output", type=Path, default=Path("bench-results"))
        parser.add_argument("--long-minutes", type=float, default=15, help="length of the chunked recording")
        parser.add_argument("--clips", type=int, default=30, help="how many short clips")

    def handle(self, *args, **options):
        results = benchmarks.run(options["output"], long_minutes=options["long_minutes"], clip_count=options["clips"])
        self.stdout.write(benchmarks.format_table(results))
        self.stdout.write(f"JSON: {options['output'] / 'bench.json'}; plots: worker_scaling.png, rtf_per_model.png")

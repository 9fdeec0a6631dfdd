"""`make bench`: real-time factors of the bundled models and upload-to-entry latency.

Everything is measured in one run on the same audio, so ratios between rows survive the
machine's noise (timings here vary up to 1.4x between identical runs). The raw library call
(faster-whisper alone) is printed beside the product's end-to-end figures.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import wave
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# A diary in six paragraphs (~470 words, about three minutes spoken by espeak-ng).
BENCH_PARAGRAPHS = [
    "This morning I woke up early because the neighbours were moving furniture again. I made coffee and sat by the "
    "window for a while, watching the rain on the street. I felt tired but also strangely calm, as if the noise "
    "outside had nothing to do with me.",
    "At work the meeting about the new project went better than I expected. My manager listened to my ideas about "
    "the schedule and agreed that we need two more weeks. I was nervous before I spoke, my hands were shaking a "
    "little, but afterwards I felt proud that I said what I really thought.",
    "Lunch was a sandwich at my desk, which I keep promising myself I will stop doing. I want to take a real break "
    "in the middle of the day, walk around the block, and look at something other than a screen. Maybe tomorrow I "
    "will ask Sarah to come with me to the park.",
    "In the afternoon I called my mother. She sounded lonely and she asked again when I am going to visit. I told "
    "her I would come at the end of the month, and I could hear that she was happy about it. After the call I felt "
    "guilty that I do not call her more often.",
    "Therapy this week was about noticing my thoughts before they turn into worries. We practised writing down one "
    "worry and then writing what I would say to a friend who had the same worry. It sounds simple, but it helped. "
    "The worry about money looked smaller on paper than it felt in my head.",
    "Tonight I cooked pasta with tomatoes and basil and I ate it slowly while listening to music. I am going to read "
    "for half an hour and go to bed before eleven. Three good things today: the meeting, the call with my mother, "
    "and the quiet dinner. I am grateful for all of them.",
]
SHORT_CLIP_TEXT = BENCH_PARAGRAPHS[1]


def word_error_rate(reference: str, hypothesis: str) -> float:
    import re

    ref = re.findall(r"[a-z0-9']+", reference.lower())
    hyp = re.findall(r"[a-z0-9']+", hypothesis.lower())
    previous = list(range(len(hyp) + 1))
    for i, ref_word in enumerate(ref, 1):
        current = [i] + [0] * len(hyp)
        for j, hyp_word in enumerate(hyp, 1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref_word != hyp_word))
        previous = current
    return previous[-1] / max(1, len(ref))


def speak(text: str, path: Path, speed: int = 160) -> Path:
    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng is needed for the benchmark audio: apt-get install espeak-ng")
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", str(speed), "-w", str(path), text], check=True)
    return path


def join_wavs(parts: list[Path], target: Path, pause_seconds: float = 1.5) -> Path:
    with wave.open(str(parts[0])) as first:
        params = first.getparams()
    silence = b"\x00" * int(params.framerate * pause_seconds) * params.sampwidth * params.nchannels
    with wave.open(str(target), "wb") as out:
        out.setparams(params)
        for index, part in enumerate(parts):
            with wave.open(str(part)) as source:
                out.writeframes(source.readframes(source.getnframes()))
            if index < len(parts) - 1:
                out.writeframes(silence)
    return target


def wav_seconds(path: Path) -> float:
    with wave.open(str(path)) as source:
        return source.getnframes() / source.getframerate()


def to_mp3(source: Path, target: Path) -> Path:
    sys.path.insert(0, str(ROOT))
    from conftest import transcode  # the same PyAV re-encoder the tests use

    return transcode(source, target, codec="mp3", container="mp3")


@dataclass
class ModelRow:
    model: str
    decoding: str
    audio_seconds: float
    seconds: float
    rtf: float
    wer: float


def bench_models(long_wav: Path, reference: str, threads: int) -> list[ModelRow]:
    from django.conf import settings

    from transcription.engines.whisper import WhisperEngine

    audio_seconds = wav_seconds(long_wav)
    rows = []
    configs = [
        ("base", "batched greedy (b8)", {"batch_size": 8, "beam_size": 1}),
        ("base", "sequential greedy", {"batch_size": 0, "beam_size": 1}),
        ("base", "sequential beam 5", {"batch_size": 0, "beam_size": 5}),
        ("tiny.en", "batched greedy (b8)", {"batch_size": 8, "beam_size": 1}),
        ("tiny.en", "sequential greedy", {"batch_size": 0, "beam_size": 1}),
    ]
    for model, label, options in configs:
        engine = WhisperEngine(model=model, cache_dir=settings.WHISPER_MODEL_CACHE, cpu_threads=threads, **options)
        engine.warm_up()
        started = time.perf_counter()
        transcript = engine.transcribe_path(str(long_wav), language="en")
        seconds = time.perf_counter() - started
        rows.append(
            ModelRow(
                model,
                label,
                round(audio_seconds, 1),
                round(seconds, 2),
                round(seconds / audio_seconds, 4),
                round(word_error_rate(reference, transcript.text), 4),
            )
        )
        print(f"  {model:8s} {label:22s} rtf {rows[-1].rtf:.3f}  wer {rows[-1].wer:.3f}", flush=True)
    return rows


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _multipart(path: Path) -> tuple[bytes, str]:
    boundary = f"bench{time.time_ns()}"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="audio_file"; filename="{path.name}"\r\n'
        f"Content-Type: audio/mpeg\r\n\r\n"
    ).encode()
    return head + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def _request(url: str, key: str, data: bytes | None = None, content_type: str = "") -> dict:
    request = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    request.add_header("Authorization", f"Bearer {key}")
    if content_type:
        request.add_header("Content-Type", content_type)
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


@dataclass
class EndToEndRow:
    audio: str
    audio_seconds: float
    latency_seconds: float
    rtf: float
    transcribe_seconds: float
    raw_call_seconds: float
    overhead_seconds: float
    wer: float


def bench_end_to_end(clips: list[tuple[str, Path, str]], threads: int, workdir: Path) -> list[EndToEndRow]:
    """Start gunicorn and a Celery worker on a fresh embedded data dir; upload each clip over HTTP."""
    from django.conf import settings

    from transcription.engines.whisper import WhisperEngine

    env = dict(
        os.environ,
        DIARY_DATA_DIR=str(workdir / "data"),
        WHISPER_MODEL_CACHE=str(settings.WHISPER_MODEL_CACHE),
        WHISPER_CPU_THREADS=str(threads),
        CELERY_POLLING_INTERVAL="0.1",
        LOG_LEVEL="WARNING",
    )
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "-v0"], env=env, check=True, cwd=ROOT)
    key = subprocess.run(
        [*manage, "create_api_key", "bench", "--create-user"],
        env=env,
        check=True,
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout.strip()
    port = _free_port()
    logs = (workdir / "worker.log").open("wb"), (workdir / "web.log").open("wb")
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "diary_project",
            "worker",
            "--concurrency",
            "1",
            "--loglevel",
            "INFO",
            "--without-gossip",
            "--without-mingle",
        ],
        env=env,
        cwd=ROOT,
        stdout=logs[0],
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    web = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "diary_project.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
        ],
        env=env,
        cwd=ROOT,
        stdout=logs[1],
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    rows = []
    try:
        deadline = time.monotonic() + 120
        while b" ready." not in (workdir / "worker.log").read_bytes():
            if time.monotonic() > deadline or worker.poll() is not None:
                raise SystemExit("the benchmark worker did not start; see " + str(workdir / "worker.log"))
            time.sleep(0.2)
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                urllib.request.urlopen(base + "/healthz", timeout=2)
                break
            except OSError:
                time.sleep(0.2)
        raw_engine = WhisperEngine(model="base", cache_dir=settings.WHISPER_MODEL_CACHE, cpu_threads=threads)
        for label, path, reference in clips:
            raw_engine.warm_up()
            started = time.perf_counter()
            raw_engine.transcribe_path(str(path))
            raw_seconds = time.perf_counter() - started
            body, content_type = _multipart(path)
            started = time.perf_counter()
            job_name = _request(base + "/upload", key, body, content_type)["job_name"]
            while True:
                job = _request(f"{base}/api/jobs/{job_name}", key)
                if job["status"] in ("done", "failed"):
                    break
                time.sleep(0.05)
            latency = time.perf_counter() - started
            if job["status"] != "done":
                raise SystemExit(f"benchmark job failed: {job['error_message']}")
            entry = _request(f"{base}/api/entries/{job['entry_id']}", key)
            audio_seconds = job["recording"]["duration_seconds"]
            transcribe = job["timings"].get("transcribe", 0.0)
            rows.append(
                EndToEndRow(
                    label,
                    round(audio_seconds, 1),
                    round(latency, 2),
                    round(latency / audio_seconds, 4),
                    round(transcribe, 2),
                    round(raw_seconds, 2),
                    round(latency - raw_seconds, 2),
                    round(word_error_rate(reference, entry["body"]), 4),
                )
            )
            print(
                f"  {label:24s} latency {latency:.2f}s  rtf {rows[-1].rtf:.3f}  raw call {raw_seconds:.2f}s", flush=True
            )
    finally:
        for process in (web, worker):
            os.killpg(process.pid, signal.SIGTERM)
        for process in (web, worker):
            process.wait(timeout=60)
    return rows


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(output_dir: Path, threads: int = 2) -> dict:
    output_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="diary-bench-") as tmp:
        workdir = Path(tmp)
        # The diary read twice (second time backwards): about three and a half minutes.
        paragraphs = BENCH_PARAGRAPHS + BENCH_PARAGRAPHS[::-1]
        parts = [speak(text, workdir / f"part{i}.wav") for i, text in enumerate(paragraphs)]
        long_wav = join_wavs(parts, workdir / "diary-long.wav")
        reference = " ".join(paragraphs)
        long_mp3 = to_mp3(long_wav, workdir / "diary-long.mp3")
        short_mp3 = to_mp3(speak(SHORT_CLIP_TEXT, workdir / "short.wav"), workdir / "short.mp3")
        print(
            f"Bench audio: {wav_seconds(long_wav):.0f} s of speech ({len(reference.split())} words), "
            f"and a {wav_seconds(workdir / 'short.wav'):.0f} s clip",
            flush=True,
        )
        print("Model real-time factors (raw faster-whisper call, 2 threads):", flush=True)
        models = bench_models(long_wav, reference, threads)
        print(
            "Upload-to-entry on the embedded default (gunicorn + Celery worker, filesystem broker, SQLite):", flush=True
        )
        e2e = bench_end_to_end(
            [("short clip (mp3)", short_mp3, SHORT_CLIP_TEXT), ("long recording (mp3)", long_mp3, reference)],
            threads,
            workdir,
        )
    results = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "threads": threads},
        "models": [asdict(row) for row in models],
        "end_to_end": [asdict(row) for row in e2e],
        "bench_process_peak_rss_mb": round(peak_rss_mb(), 1),
    }
    (output_dir / "bench.json").write_text(json.dumps(results, indent=2))
    return results


def format_table(results: dict) -> str:
    lines = ["", "Model                    decoding                 audio s   time s    RTF     WER"]
    for row in results["models"]:
        lines.append(
            f"{row['model']:24s} {row['decoding']:24s} {row['audio_seconds']:7.1f} {row['seconds']:8.2f} "
            f"{row['rtf']:7.3f} {row['wer']:7.3f}"
        )
    lines += ["", "End to end (upload → entry)  audio s  latency s   RTF   transcribe s  raw call s  overhead s   WER"]
    for row in results["end_to_end"]:
        lines.append(
            f"{row['audio']:28s} {row['audio_seconds']:7.1f} {row['latency_seconds']:10.2f} "
            f"{row['rtf']:6.3f} {row['transcribe_seconds']:13.2f} {row['raw_call_seconds']:11.2f} "
            f"{row['overhead_seconds']:11.2f} {row['wer']:6.3f}"
        )
    lines.append("")
    lines.append("overhead = upload-to-entry latency minus the raw batched faster-whisper call on the same file")
    return "\n".join(lines)

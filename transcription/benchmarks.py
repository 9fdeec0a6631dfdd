"""`make bench`: how fast and how accurate transcription is, from the model call to the finished entry.

Everything is measured in one run on the same audio, so ratios between rows survive the machine's
noise (timings here vary up to 1.4x between identical runs). Sections:

1. models: word error rate and real-time factor of each model and decoding option (library calls);
2. memory: peak resident memory of a process that loads a model and transcribes (per configuration);
3. end to end on the embedded default (gunicorn + one Celery worker, filesystem broker, SQLite),
   each recording's upload-to-entry latency beside the raw faster-whisper call and the engine call
   on the same file (overhead = latency - engine call);
4. many short clips from several users: one by one against all at once;
5. a long recording split into chunks: the worker-scaling curve (1, 2, 4 single-threaded worker
   processes, and the default single process with two model replicas).
Results go to bench-results/bench.json and two PNG plots.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
import wave
from dataclasses import asdict, dataclass, field
from pathlib import Path

from transcription.evaluation import word_error_rate

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
MODEL_SETTINGS = {"base": {}, "tiny.en": {}}


def speak(text: str, path: Path, speed: int = 160, voice: str = "en-us") -> Path:
    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng is needed for the benchmark audio: apt-get install espeak-ng")
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(path), text], check=True)
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
class BenchAudio:
    bench_wav: Path
    bench_mp3: Path
    bench_reference: str
    # The WER set: the bench set and a second reading (other order, faster voice), each as WAV and MP3;
    # other words read in British English (WAV) and by a female American voice (MP3).
    wer_set: list[tuple[Path, str]]
    minute_mp3: Path
    minute_reference: str
    long_wav: Path
    long_mp3: Path
    long_reference: str
    clips: list[tuple[Path, str]] = field(default_factory=list)


# Other words, for the WER set only: the bench paragraphs recur, and so would the same slips.
OTHER_PARAGRAPHS = [
    "I slept badly again and woke at four, thinking about the exam on Thursday. When the alarm rang I stayed in "
    "bed for twenty minutes before I could make myself get up.",
    "On the bus a woman was singing quietly to her baby. It was such a gentle sound that I forgot to look at my "
    "phone for the whole journey, and I arrived feeling lighter.",
    "My brother phoned in the evening. We argued about who should look after our father's garden this summer, and "
    "I said things I did not mean. I want to apologise tomorrow, before it grows into something bigger.",
    "The doctor said my blood pressure is a little high. She asked me to walk every day, to drink less coffee and "
    "to come back in six weeks. I wrote the date in my calendar in red.",
    "For dinner I tried a new recipe with lentils, carrots and cumin. It was too salty, but I was proud that I "
    "cooked something instead of ordering food for the third night in a row.",
    "Before sleeping I listed what I can control this week: my sleep, my walks, and how I speak to my brother. "
    "Everything else can wait until it actually happens.",
]


def make_audio(workdir: Path, long_minutes: float, clip_count: int) -> BenchAudio:
    parts = [speak(text, workdir / f"part{i}.wav") for i, text in enumerate(BENCH_PARAGRAPHS)]
    # The bench set: the diary read twice (second time backwards), about three and a half minutes.
    order = list(range(6)) + list(range(5, -1, -1))
    bench_wav = join_wavs([parts[i] for i in order], workdir / "bench.wav")
    fast = [speak(text, workdir / f"fast{i}.wav", speed=185) for i, text in enumerate(BENCH_PARAGRAPHS)]
    second_order = [3, 0, 5, 1, 4, 2, 2, 4, 1, 5]
    second_wav = join_wavs([fast[i] for i in second_order], workdir / "second.wav", pause_seconds=1.0)
    second_reference = " ".join(BENCH_PARAGRAPHS[i] for i in second_order)
    # Other words in other voices: British English, and a female American voice a little faster.
    other_reference = " ".join(OTHER_PARAGRAPHS)
    other_gb = [speak(text, workdir / f"gb{i}.wav", voice="en-gb") for i, text in enumerate(OTHER_PARAGRAPHS)]
    other_f = [
        speak(text, workdir / f"f{i}.wav", speed=175, voice="en-us+f3") for i, text in enumerate(OTHER_PARAGRAPHS)
    ]
    other_gb_wav = join_wavs(other_gb, workdir / "other-gb.wav", pause_seconds=1.2)
    other_f_wav = join_wavs(other_f, workdir / "other-f.wav", pause_seconds=1.2)
    bench_mp3 = to_mp3(bench_wav, workdir / "bench.mp3")
    bench_reference = " ".join(BENCH_PARAGRAPHS[i] for i in order)
    minute_wav = join_wavs(parts[:4], workdir / "minute.wav")
    repeats = [parts[i % 6] for i in range(int(long_minutes * 60 / 18) + 1)]
    long_wav = join_wavs(repeats, workdir / "long.wav")
    # Short clips: the first two sentences of each paragraph, about 10-14 s each.
    clip_texts = [". ".join(text.split(". ")[:2]).rstrip(".") + "." for text in BENCH_PARAGRAPHS]
    clip_texts += [". ".join(text.split(". ")[1:3]).rstrip(".") + "." for text in BENCH_PARAGRAPHS]
    clips = []
    for index, text in enumerate(clip_texts):
        wav = speak(text, workdir / f"clip{index}.wav")
        clips.append((to_mp3(wav, workdir / f"clip{index}.mp3"), text))
    return BenchAudio(
        bench_wav=bench_wav,
        bench_mp3=bench_mp3,
        bench_reference=bench_reference,
        wer_set=[
            (bench_wav, bench_reference),
            (bench_mp3, bench_reference),
            (second_wav, second_reference),
            (to_mp3(second_wav, workdir / "second.mp3"), second_reference),
            (other_gb_wav, other_reference),
            (to_mp3(other_f_wav, workdir / "other-f.mp3"), other_reference),
        ],
        minute_mp3=to_mp3(minute_wav, workdir / "minute.mp3"),
        minute_reference=" ".join(BENCH_PARAGRAPHS[:4]),
        long_wav=long_wav,
        long_mp3=to_mp3(long_wav, workdir / "long.mp3"),
        long_reference=" ".join(BENCH_PARAGRAPHS[i % 6] for i in range(len(repeats))),
        clips=[clips[i % len(clips)] for i in range(clip_count)],
    )


# --- 1. Models: library calls -----------------------------------------------------------


@dataclass
class ModelRow:
    model: str
    decoding: str
    parallelism: str
    language: str
    audio_seconds: float
    seconds: float
    rtf: float
    wer: float
    wer_per_file: list[float]


def raw_library_call(model_dir: str, path: str, *, threads: int, batch_size: int = 8, language=None):
    """faster-whisper as its README shows it: BatchedInferencePipeline, greedy, 2 threads, one process."""
    from faster_whisper import BatchedInferencePipeline

    from transcription.engines.whisper import load_whisper_model

    model = load_whisper_model(
        model_dir,
        cache_dir=Path(os.environ.get("WHISPER_MODEL_CACHE", ROOT / "var" / "models")),
        device="cpu",
        compute_type="int8",
        cpu_threads=threads,
        num_workers=1,
    )
    pipeline = BatchedInferencePipeline(model=model)
    segments, _ = pipeline.transcribe(path, language=language, beam_size=1, batch_size=batch_size)
    return " ".join(segment.text.strip() for segment in segments)


def _cpu_idle_fraction(seconds: float = 0.5) -> float:
    def sample() -> tuple[int, int]:
        with open("/proc/stat") as stat:
            fields = [int(value) for value in stat.readline().split()[1:]]
        return fields[3] + fields[4], sum(fields)

    idle, total = sample()
    time.sleep(seconds)
    idle2, total2 = sample()
    return (idle2 - idle) / max(1, total2 - total)


QUIET_WAITS: list[float] = []


def wait_for_quiet_cpu(max_wait: float = 30.0) -> None:
    """Wait (at most max_wait) until the CPUs are idle: other work on a shared machine skews timings."""
    if not Path("/proc/stat").exists():
        return
    started = time.monotonic()
    calm = 0
    while time.monotonic() - started < max_wait and calm < 3:
        calm = calm + 1 if _cpu_idle_fraction() >= 0.9 else 0
    QUIET_WAITS.append(round(time.monotonic() - started, 1))


def _timed(function, *args, **kwargs):
    wait_for_quiet_cpu()
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - started, result


def bench_models(audio: BenchAudio, cpus: int) -> list[ModelRow]:
    """Each configuration on the WER set: six files, three texts, four voices or speeds, WAV and MP3."""
    from django.conf import settings

    from transcription.engines.whisper import WhisperEngine, decode_audio_file

    files = [(str(path), reference) for path, reference in audio.wer_set]
    seconds_of_audio = sum(len(decode_audio_file(str(path))) / 16000 for path, _ in audio.wer_set)
    cache = settings.WHISPER_MODEL_CACHE
    replicas = f"{cpus} replicas x 1 thread"
    threads = f"1 x {cpus} threads"

    def engine(model: str, **options):
        built = WhisperEngine(model=model, cache_dir=cache, **options)
        built.transcribe_path(str(audio.clips[0][0]))  # warm: load, first-call allocations
        return lambda path, language=None: built.transcribe_path(path, language=language).text

    def library(model: str):
        raw_library_call(model, str(audio.clips[0][0]), threads=cpus)
        return lambda path, language=None: raw_library_call(model, path, threads=cpus, language=language)

    sequential = {"cpu_threads": cpus, "num_workers": 1, "batch_size": 0}
    configs = [
        ("base", "batched greedy (default)", replicas, "detected", engine("base", cpu_threads=1, num_workers=cpus)),
        ("base", "batched greedy (default)", replicas, "given", engine("base", cpu_threads=1, num_workers=cpus)),
        (
            "base",
            "batched greedy, batch 4",
            threads,
            "detected",
            engine("base", cpu_threads=cpus, num_workers=1, batch_size=4),
        ),
        ("base", "library: batched b8 greedy", threads, "detected", library("base")),
        ("base", "sequential greedy", threads, "given", engine("base", **sequential)),
        ("base", "sequential beam 5", threads, "given", engine("base", **sequential, beam_size=5)),
        ("tiny.en", "batched greedy (default)", replicas, "en", engine("tiny.en", cpu_threads=1, num_workers=cpus)),
        ("tiny.en", "library: batched b8 greedy", threads, "en", library("tiny.en")),
        ("tiny.en", "sequential greedy", threads, "en", engine("tiny.en", **sequential)),
    ]
    rows = []
    for model, label, parallelism, language, call in configs:
        seconds, wers = 0.0, []
        for path, reference in files:
            elapsed, text = _timed(call, path, "en" if language == "given" else None)
            seconds += elapsed
            wers.append(word_error_rate(reference, text))
        rows.append(
            ModelRow(
                model,
                label,
                parallelism,
                language,
                round(seconds_of_audio, 1),
                round(seconds, 2),
                round(seconds / seconds_of_audio, 4),
                round(sum(wers) / len(wers), 4),
                [round(wer, 4) for wer in wers],
            )
        )
        print(
            f"  {model:8s} {label:28s} {parallelism:22s} rtf {rows[-1].rtf:.4f}  wer {rows[-1].wer:.3f} "
            f"(per file {', '.join(f'{wer:.3f}' for wer in wers)})",
            flush=True,
        )
    return rows


# --- 2. Memory --------------------------------------------------------------------------

MEMORY_PROBE = """
import os, sys
from pathlib import Path
from transcription.engines.whisper import WhisperEngine
engine = WhisperEngine(model=sys.argv[1], cache_dir=Path(sys.argv[2]), cpu_threads=int(sys.argv[3]),
                       num_workers=int(sys.argv[4]), batch_size=int(sys.argv[6]))
engine.transcribe_path(sys.argv[5])
status = Path("/proc/self/status").read_text()
print(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM")))
"""


@dataclass
class MemoryRow:
    model: str
    parallelism: str
    peak_rss_mb: float


def bench_memory(audio: BenchAudio, cpus: int) -> list[MemoryRow]:
    """Peak RSS (VmHWM) of a fresh process that loads the model and transcribes the bench set."""
    from django.conf import settings

    rows = []
    # (model, threads, replicas, batch): the default first, then the older 2-thread configurations.
    configs = [("base", 1, cpus, 1), ("base", 1, 1, 1), ("base", cpus, 1, 4), ("base", cpus, 1, 8)]
    configs.append(("tiny.en", 1, cpus, 1))
    for model, threads, replicas, batch in configs:
        out = subprocess.run(
            [
                sys.executable,
                "-c",
                MEMORY_PROBE,
                model,
                str(settings.WHISPER_MODEL_CACHE),
                str(threads),
                str(replicas),
                str(audio.bench_wav),
                str(batch),
            ],
            cwd=ROOT,
            env={**os.environ, "LOG_LEVEL": "WARNING"},
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()[-1]
        parallelism = f"{replicas} replica(s) x {threads} thread(s), batch {batch}"
        rows.append(MemoryRow(model, parallelism, round(int(out) / 1024, 1)))
        print(f"  {model:8s} {rows[-1].parallelism:26s} peak RSS {rows[-1].peak_rss_mb:.0f} MB", flush=True)
    return rows


# --- The service: gunicorn and Celery workers on a fresh embedded data dir --------------


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
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


def _peak_rss_mb(pid: int) -> float:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    peaks = [int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM")]
    return round(peaks[0] / 1024, 1) if peaks else 0.0


PRINT_POLL = (
    "from django.conf import settings; o = settings.CELERY_BROKER_TRANSPORT_OPTIONS; "
    "print(o['polling_interval'], o['busy_polling_interval'], o['busy_seconds'])"
)
# `make run`'s processes: the worker takes one task at a time (prefetch 1, late acknowledgement).
GUNICORN = [sys.executable, "-m", "gunicorn", "diary_project.wsgi:application", "--workers", "1", "--threads", "4"]
CELERY_WORKER = [sys.executable, "-m", "celery", "-A", "diary_project", "worker", "--concurrency", "1"]
CELERY_WORKER += ["--loglevel", "INFO", "--without-gossip", "--without-mingle"]


class Service:
    """The embedded default as `make run` starts it, on a temporary data dir; workers come and go."""

    def __init__(self, workdir: Path) -> None:
        from django.conf import settings

        self.workdir = workdir
        self.env = dict(
            os.environ,
            DIARY_DATA_DIR=str(workdir / "data"),
            WHISPER_MODEL_CACHE=str(settings.WHISPER_MODEL_CACHE),
            LOG_LEVEL="WARNING",
            # The bench measures transcription, not the API's fairness limits.
            API_RATE_LIMIT="100000/min",
            UPLOAD_RATE_LIMIT="100000/min",
        )
        self.database = workdir / "data" / "diary.sqlite3"
        # Settings the caller's environment might carry would change what "default" means.
        for name in list(self.env):
            if name.startswith(("WHISPER_", "CELERY_", "DATABASE_", "SQLITE_", "STORAGE_", "MEDIA_")):
                self.env.pop(name)
        self.env["WHISPER_MODEL_CACHE"] = str(settings.WHISPER_MODEL_CACHE)
        self.manage = [sys.executable, str(ROOT / "manage.py")]
        subprocess.run([*self.manage, "migrate", "-v0"], env=self.env, check=True, cwd=ROOT)
        self.keys = [self._key(f"bench{i}") for i in range(3)]
        # The filesystem broker's polling these workers get by default (no CELERY_*POLLING* variables).
        idle, busy, busy_seconds = (
            float(value)
            for value in subprocess.run(
                [*self.manage, "shell", "-c", PRINT_POLL],
                env=self.env,
                check=True,
                cwd=ROOT,
                capture_output=True,
                text=True,
            ).stdout.split()[-3:]
        )
        self.default_broker = f"{idle:g} s idle, {busy:g} s busy" if busy_seconds > 0 else f"{idle:g} s fixed"
        self.fixed_broker = f"{idle:g} s fixed"
        self.port = _free_port()
        self.web_log = (workdir / "web.log").open("wb")
        self.web = subprocess.Popen(
            [*GUNICORN, "--bind", f"127.0.0.1:{self.port}"],
            env=self.env,
            cwd=ROOT,
            stdout=self.web_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.base = f"http://127.0.0.1:{self.port}"
        self.workers: list[subprocess.Popen] = []
        for _ in range(200):
            try:
                urllib.request.urlopen(self.base + "/healthz", timeout=2)
                break
            except OSError:
                time.sleep(0.1)

    def _key(self, user: str) -> str:
        return subprocess.run(
            [*self.manage, "create_api_key", user, "--create-user"],
            env=self.env,
            check=True,
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()

    def start_workers(self, count: int, **settings_env: str) -> None:
        for index in range(count):
            log = self.workdir / f"worker-{len(self.workers)}.log"
            self.workers.append(
                subprocess.Popen(
                    [*CELERY_WORKER, "-n", f"bench{index}@%h"],
                    env={**self.env, **settings_env},
                    cwd=ROOT,
                    stdout=log.open("wb"),
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        deadline = time.monotonic() + 180
        for worker in self.workers:
            log = self.workdir / f"worker-{self.workers.index(worker)}.log"
            while b" ready." not in log.read_bytes():
                if time.monotonic() > deadline or worker.poll() is not None:
                    raise SystemExit(f"a benchmark worker did not start; see {log}")
                time.sleep(0.1)
        # The model loads in each worker's child after the fork; wait until it has.
        for worker in self.workers:
            while True:
                children = self._children(worker.pid)
                if children and all(_peak_rss_mb(pid) > 150 for pid in children):
                    break
                if time.monotonic() > deadline:
                    raise SystemExit("a benchmark worker did not load its model")
                time.sleep(0.1)

    @staticmethod
    def _children(pid: int) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
        return [int(child) for child in out.split()]

    def stop_workers(self) -> float:
        """Stop every worker; return the largest peak RSS of a worker child process (MB)."""
        peak = max((_peak_rss_mb(c) for w in self.workers for c in self._children(w.pid)), default=0.0)
        # SIGTERM to the main process only: its warm shutdown stops the pool children in order.
        for worker in self.workers:
            worker.send_signal(signal.SIGTERM)
        for worker in self.workers:
            try:
                worker.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait(timeout=30)
        self.workers = []
        return peak

    def upload(self, path: Path, user: int = 0) -> str:
        body, content_type = _multipart(path)
        return _request(self.base + "/upload", self.keys[user], body, content_type)["job_name"]

    def wait(self, job_names: list[str], user_of: dict[str, int] | None = None, interval: float = 0.05) -> dict:
        """Poll until every job is done; return each job's last state (failure stops the bench)."""
        # The job rows are read straight from SQLite (cheap): polling the API this often would load the CPUs.
        finished_at: dict[str, float] = {}
        with sqlite3.connect(f"file:{self.database}?mode=ro", uri=True, timeout=30) as database:
            while len(finished_at) < len(job_names):
                marks = ",".join("?" * len(job_names))
                rows = database.execute(
                    f"SELECT job_name, status FROM transcription_transcriptionjob WHERE job_name IN ({marks})",
                    job_names,
                ).fetchall()
                now = time.perf_counter()
                for name, status in rows:
                    if status == "failed":
                        raise SystemExit(f"benchmark job {name} failed; see {self.workdir}")
                # A dead worker would leave this loop waiting for ever (it happened: see diary_project/broker.py).
                if any(worker.poll() is not None for worker in self.workers):
                    raise SystemExit(f"a benchmark worker exited; see the worker logs in {self.workdir}")
                    if status == "done":
                        finished_at.setdefault(name, now)
                time.sleep(interval)
        jobs = {}
        for name in job_names:
            jobs[name] = _request(f"{self.base}/api/jobs/{name}", self.keys[(user_of or {}).get(name, 0)])
            jobs[name]["finished_at_perf"] = finished_at[name]
        return jobs

    def entry(self, job: dict, user: int = 0) -> dict:
        return _request(f"{self.base}/api/entries/{job['entry_id']}", self.keys[user])

    def close(self) -> None:
        try:
            if self.workers:
                self.stop_workers()
        finally:
            os.killpg(self.web.pid, signal.SIGTERM)
            self.web.wait(timeout=60)


# --- 3. End to end ----------------------------------------------------------------------


STAGES = ("upload", "transcribe", "poll", "format", "save")


@dataclass
class EndToEndRow:
    audio: str
    broker_polling: str
    audio_seconds: float
    latency_seconds: float
    rtf: float
    library_call_seconds: float
    engine_call_seconds: float
    overhead_seconds: float
    latency_over_library: float
    transcribe_step_seconds: float
    steps_seconds: float
    waiting_seconds: float
    wer: float
    engine_wer: float


def bench_end_to_end(
    service: Service, audio: BenchAudio, cpus: int, *, broker: str, calls: dict[str, tuple[float, float, float]]
) -> list[EndToEndRow]:
    """Each recording uploaded alone; `calls` keeps the library and engine call times per file across passes."""
    from django.conf import settings

    from transcription.engines.whisper import WhisperEngine

    engine = WhisperEngine(model="base", cache_dir=settings.WHISPER_MODEL_CACHE, cpu_threads=1, num_workers=cpus)
    engine.transcribe_path(str(audio.clips[0][0]))
    rows = []
    cases = [
        ("short clip, 12 s (mp3)", audio.clips[0][0], audio.clips[0][1]),
        ("one minute (mp3)", audio.minute_mp3, audio.minute_reference),
        ("bench set, 3.5 min (mp3)", audio.bench_mp3, audio.bench_reference),
    ]
    for label, path, reference in cases:
        if label not in calls:
            library_seconds, _ = _timed(raw_library_call, "base", str(path), threads=cpus)
            engine_seconds, transcript = _timed(engine.transcribe_path, str(path))
            calls[label] = (library_seconds, engine_seconds, word_error_rate(reference, transcript.text))
        library_seconds, engine_seconds, engine_wer = calls[label]
        wait_for_quiet_cpu()
        started = time.perf_counter()
        name = service.upload(path)
        job = service.wait([name])[name]
        latency = job["finished_at_perf"] - started
        entry = service.entry(job)
        seconds = job["recording"]["duration_seconds"]
        # Time in the chain's steps; the rest is the HTTP upload and messages waiting for the worker.
        steps = sum(float(job["timings"].get(stage, 0.0)) for stage in STAGES)
        rows.append(
            EndToEndRow(
                label,
                broker,
                round(seconds, 1),
                round(latency, 2),
                round(latency / seconds, 4),
                round(library_seconds, 2),
                round(engine_seconds, 2),
                round(latency - engine_seconds, 2),
                round(latency / library_seconds, 3),
                round(job["timings"].get("transcribe", 0.0), 2),
                round(steps, 2),
                round(latency - steps, 2),
                round(word_error_rate(reference, entry["raw_transcript"]), 4),
                round(engine_wer, 4),
            )
        )
        print(
            f"  {label:26s} {broker:20s} latency {latency:6.2f}s rtf {rows[-1].rtf:.4f}"
            f"  library call {library_seconds:5.2f}s  engine call {engine_seconds:5.2f}s"
            f"  overhead {rows[-1].overhead_seconds:5.2f}s",
            flush=True,
        )
    return rows


# --- 4. Many short clips ----------------------------------------------------------------


@dataclass
class ThroughputRow:
    mode: str
    broker_polling: str
    clips: int
    audio_seconds: float
    seconds: float
    clips_per_minute: float
    speedup: float
    wer: float


def _throughput_row(
    mode: str, poll: str | None, clips: list, audio_seconds: float, seconds: float, texts: list, base: float | None
) -> ThroughputRow:
    wer = sum(word_error_rate(ref, text) for (_, ref), text in zip(clips, texts, strict=True)) / len(clips)
    per_minute = len(clips) / seconds * 60
    row = ThroughputRow(
        mode,
        poll,
        len(clips),
        round(audio_seconds, 1),
        round(seconds, 2),
        round(per_minute, 1),
        round(per_minute / base, 2) if base else 1.0,
        round(wer, 4),
    )
    where = poll or "library"
    print(f"  {mode:44s} {where:20s} {seconds:6.2f}s  {per_minute:5.1f} clips/min  x{row.speedup:.2f}", flush=True)
    return row


def bench_clips_library(audio: BenchAudio, cpus: int) -> list[ThroughputRow]:
    """Compute only: the engine one clip at a time, then two at a time (as the transcribe step batches them)."""
    from django.conf import settings

    from transcription.engines.whisper import WhisperEngine, decode_audio_file

    clips = audio.clips
    seconds_of_audio = sum(len(decode_audio_file(str(path))) / 16000 for path, _ in clips)
    engine = WhisperEngine(model="base", cache_dir=settings.WHISPER_MODEL_CACHE, cpu_threads=1, num_workers=cpus)
    engine.transcribe_path(str(clips[0][0]))
    raw_library_call("base", str(clips[0][0]), threads=cpus)
    rows = []
    seconds, texts = _timed(lambda: [raw_library_call("base", str(path), threads=cpus) for path, _ in clips])
    rows.append(
        _throughput_row(
            "faster-whisper b8, 1 x 2 threads, one by one", None, clips, seconds_of_audio, seconds, texts, None
        )
    )
    seconds, texts = _timed(lambda: [engine.transcribe_path(str(path)).text for path, _ in clips])
    base = rows[0].clips_per_minute
    rows.append(_throughput_row("engine, one by one", None, clips, seconds_of_audio, seconds, texts, base))
    pairs = [[(str(path), None) for path, _ in clips[i : i + cpus]] for i in range(0, len(clips), cpus)]
    seconds, results = _timed(lambda: [t for pair in pairs for t in engine.transcribe_many(pair)])
    texts = [t.text for t in results]
    rows.append(_throughput_row(f"engine, {cpus} at a time", None, clips, seconds_of_audio, seconds, texts, base))
    return rows


def bench_clips_service(service: Service, audio: BenchAudio, broker: str) -> list[ThroughputRow]:
    """The service: each clip uploaded after the last one's entry exists, then all at once from 3 users."""
    clips = audio.clips
    names, users = [], {}
    wait_for_quiet_cpu()
    started = time.perf_counter()
    for index, (path, _) in enumerate(clips):
        name = service.upload(path, user=index % 3)
        users[name] = index % 3
        service.wait([name], users)
        names.append(name)
    one_by_one = time.perf_counter() - started
    jobs = service.wait(names, users)
    seconds_of_audio = sum(jobs[name]["recording"]["duration_seconds"] for name in names)
    texts = [service.entry(jobs[name], users[name])["raw_transcript"] for name in names]
    rows = [_throughput_row("service, one by one", broker, clips, seconds_of_audio, one_by_one, texts, None)]

    names, users = [], {}
    wait_for_quiet_cpu()
    started = time.perf_counter()
    for index, (path, _) in enumerate(clips):
        name = service.upload(path, user=index % 3)
        users[name] = index % 3
        names.append(name)
    jobs = service.wait(names, users, interval=0.2)
    together = max(job["finished_at_perf"] for job in jobs.values()) - started
    texts = [service.entry(jobs[name], users[name])["raw_transcript"] for name in names]
    base = rows[0].clips_per_minute
    rows.append(
        _throughput_row("service, all at once (3 users)", broker, clips, seconds_of_audio, together, texts, base)
    )
    return rows


# --- 5. Worker scaling on a long recording ----------------------------------------------


@dataclass
class ScalingRow:
    workers: int
    per_worker: str
    threads_total: int
    audio_seconds: float
    latency_seconds: float
    rtf: float
    speedup: float
    chunks: int
    wer: float
    worker_peak_rss_mb: float


def bench_scaling(service: Service, audio: BenchAudio, cpus: int) -> list[ScalingRow]:
    configs = [(1, 1, 1), (2, 1, 1), (4, 1, 1), (1, cpus, 1)]  # (processes, replicas, threads)
    rows: list[ScalingRow] = []
    for processes, replicas, threads in configs:
        service.start_workers(processes, WHISPER_NUM_WORKERS=str(replicas), WHISPER_CPU_THREADS=str(threads))
        wait_for_quiet_cpu()
        started = time.perf_counter()
        name = service.upload(audio.long_mp3)
        job = service.wait([name], interval=0.2)[name]
        latency = job["finished_at_perf"] - started
        peak = service.stop_workers()
        text = service.entry(job)["raw_transcript"]
        seconds = job["recording"]["duration_seconds"]
        rows.append(
            ScalingRow(
                processes,
                f"{replicas} replica(s) x {threads} thread(s)",
                processes * replicas * threads,
                round(seconds, 1),
                round(latency, 2),
                round(latency / seconds, 4),
                round(rows[0].latency_seconds / latency, 2) if rows else 1.0,
                int(job["timings"].get("chunks", 1)),
                round(word_error_rate(audio.long_reference, text), 4),
                peak,
            )
        )
        print(
            f"  {processes} worker(s) x {rows[-1].per_worker:26s} latency {latency:6.1f}s rtf {rows[-1].rtf:.4f}"
            f"  x{rows[-1].speedup:.2f}  {rows[-1].chunks} chunks  wer {rows[-1].wer:.3f}  peak {peak:.0f} MB",
            flush=True,
        )
    return rows


# --- The run, the table and the plots ---------------------------------------------------


def run(output_dir: Path, *, long_minutes: float = 15, clip_count: int = 30) -> dict:
    from django.conf import settings

    cpus = settings.WHISPER_AVAILABLE_CPUS
    output_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="diary-bench-") as tmp:
        workdir = Path(tmp)
        audio = make_audio(workdir, long_minutes, clip_count)
        print(
            f"Bench audio: bench set {wav_seconds(audio.bench_wav):.0f} s, long recording "
            f"{wav_seconds(audio.long_wav) / 60:.1f} min, {len(audio.clips)} short clips; {cpus} CPUs",
            flush=True,
        )
        print("1. Models (library calls on the WER set: six files, three texts, WAV and MP3):", flush=True)
        models = bench_models(audio, cpus)
        print("2. Peak memory of one process (model loaded, bench set transcribed):", flush=True)
        memory = bench_memory(audio, cpus)
        service = Service(workdir)
        try:
            service.start_workers(1)  # the embedded default: `make run`'s one worker, default settings
            print("3. Upload to entry on the embedded default (gunicorn + 1 Celery worker):", flush=True)
            calls: dict[str, tuple[float, float, float]] = {}
            e2e = bench_end_to_end(service, audio, cpus, broker=service.default_broker, calls=calls)
            print(f"4. {len(audio.clips)} short clips from 3 users:", flush=True)
            clips = bench_clips_library(audio, cpus)
            clips += bench_clips_service(service, audio, service.default_broker)
            default_worker_peak = service.stop_workers()
            # The broker's polling between steps was most of the fixed overhead: the same at a fixed interval.
            service.start_workers(1, CELERY_BUSY_POLLING_SECONDS="0")
            e2e += bench_end_to_end(service, audio, cpus, broker=service.fixed_broker, calls=calls)
            service.stop_workers()
            print(
                f"5. Worker scaling on a {wav_seconds(audio.long_wav) / 60:.0f}-minute recording (chunked):", flush=True
            )
            scaling = bench_scaling(service, audio, cpus)
        finally:
            service.close()
    results = {
        "machine": {"cpus": cpus, "python": platform.python_version(), "platform": platform.platform()},
        "defaults": {
            name: getattr(settings, name)
            for name in (
                "WHISPER_MODEL",
                "WHISPER_CPU_THREADS",
                "WHISPER_NUM_WORKERS",
                "WHISPER_BATCH_SIZE",
                "WHISPER_BEAM_SIZE",
                "WHISPER_JOB_BATCH",
                "WHISPER_CHUNK_MIN_SECONDS",
                "WHISPER_CHUNK_SECONDS",
            )
        },
        "models": [asdict(row) for row in models],
        "memory": [asdict(row) for row in memory]
        + [{"model": "base", "parallelism": "celery worker child, defaults", "peak_rss_mb": default_worker_peak}],
        "end_to_end": [asdict(row) for row in e2e],
        "short_clips": [asdict(row) for row in clips],
        "worker_scaling": [asdict(row) for row in scaling],
        "bench_seconds": round(time.perf_counter() - started, 1),
        "seconds_waited_for_idle_cpus": QUIET_WAITS,
    }
    (output_dir / "bench.json").write_text(json.dumps(results, indent=2))
    plot(results, output_dir)
    return results


def plot(results: dict, output_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scaling = [row for row in results["worker_scaling"] if row["per_worker"].startswith("1 replica")]
    default = [row for row in results["worker_scaling"] if not row["per_worker"].startswith("1 replica")]
    figure, axis = plt.subplots(figsize=(6.4, 4.2))
    workers = [row["workers"] for row in scaling]
    axis.plot(workers, [row["latency_seconds"] for row in scaling], "o-", label="worker processes x 1 thread")
    first = scaling[0]["latency_seconds"]
    cpus = results["machine"]["cpus"]
    axis.plot(workers, [first / min(w, cpus) for w in workers], ":", color="grey", label=f"ideal on {cpus} CPUs")
    for row in default:
        axis.plot([1], [row["latency_seconds"]], "s", label=f"1 process x {row['per_worker']} (default)")
    axis.set_xlabel("Celery worker processes")
    axis.set_ylabel("upload to entry (s)")
    axis.set_xticks(workers)
    axis.set_ylim(bottom=0)
    axis.set_title(f"{scaling[0]['audio_seconds'] / 60:.0f}-minute recording in {scaling[0]['chunks']} chunks")
    axis.legend()
    figure.tight_layout()
    figure.savefig(output_dir / "worker_scaling.png", dpi=120)
    plt.close(figure)

    models = results["models"]
    figure, axis = plt.subplots(figsize=(8, 4.6))
    labels = [f"{row['model']}\n{row['decoding']}\n{row['parallelism']}, lang {row['language']}" for row in models]
    bars = axis.barh(range(len(models)), [row["rtf"] for row in models], color="tab:blue")
    for bar, row in zip(bars, models, strict=True):
        axis.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" WER {row['wer']:.1%}", va="center")
    axis.set_yticks(range(len(models)), labels, fontsize=6.5)
    axis.invert_yaxis()
    axis.set_xlabel("real-time factor (processing time / audio length), lower is faster")
    axis.set_title("WER set (six files, three texts, WAV and MP3), library calls")
    axis.set_xlim(right=max(row["rtf"] for row in models) * 1.3)
    figure.tight_layout()
    figure.savefig(output_dir / "rtf_per_model.png", dpi=120)
    plt.close(figure)


def format_table(results: dict) -> str:
    lines = [
        "",
        f"Machine: {results['machine']['cpus']} CPUs; bench run {results['bench_seconds']:.0f} s "
        f"(of which {sum(results['seconds_waited_for_idle_cpus']):.0f} s waiting for other work on the CPUs to stop)",
        "",
        "Model    decoding                     parallelism             language   audio s  time s     RTF    WER"
        "  per file (bench wav, mp3; second reading wav, mp3; other words gb wav, f mp3)",
    ]
    for row in results["models"]:
        per_file = ", ".join(f"{wer:.3f}" for wer in row["wer_per_file"])
        lines.append(
            f"{row['model']:8s} {row['decoding']:28s} {row['parallelism']:23s} {row['language']:9s} "
            f"{row['audio_seconds']:7.1f} {row['seconds']:7.2f} {row['rtf']:7.4f} {row['wer']:6.3f}"
            f"  ({per_file})"
        )
    lines += [
        "",
        "End to end (upload -> entry)  broker polling        audio s  latency s     RTF  library s  engine s  "
        "overhead s  latency/library  transcribe step s  steps s  waiting s    WER  engine WER",
    ]
    for row in results["end_to_end"]:
        lines.append(
            f"{row['audio']:28s} {row['broker_polling']:20s} {row['audio_seconds']:7.1f} "
            f"{row['latency_seconds']:10.2f} {row['rtf']:7.4f} "
            f"{row['library_call_seconds']:10.2f} {row['engine_call_seconds']:9.2f} {row['overhead_seconds']:11.2f} "
            f"{row['latency_over_library']:16.3f} {row['transcribe_step_seconds']:18.2f} {row['steps_seconds']:8.2f} "
            f"{row['waiting_seconds']:10.2f} {row['wer']:6.3f} {row['engine_wer']:11.3f}"
        )
    lines += [
        "",
        "Short clips                                    broker polling        clips  audio s  time s  clips/min  "
        "speedup    WER",
    ]
    for row in results["short_clips"]:
        poll = row["broker_polling"] or "-"
        lines.append(
            f"{row['mode']:46s} {poll:20s} {row['clips']:5d} {row['audio_seconds']:8.1f} {row['seconds']:7.2f} "
            f"{row['clips_per_minute']:10.1f} {row['speedup']:8.2f} {row['wer']:6.3f}"
        )
    lines += [
        "",
        "Worker scaling (long recording)  per worker                 threads  audio s  latency s     RTF  speedup  "
        "chunks    WER  worker peak MB",
    ]
    for row in results["worker_scaling"]:
        lines.append(
            f"{row['workers']:2d} worker process(es)           {row['per_worker']:26s} {row['threads_total']:7d} "
            f"{row['audio_seconds']:8.1f} {row['latency_seconds']:10.2f} {row['rtf']:7.4f} {row['speedup']:8.2f} "
            f"{row['chunks']:7d} {row['wer']:6.3f} {row['worker_peak_rss_mb']:15.0f}"
        )
    lines += ["", "Peak memory of one process (VmHWM)     MB"]
    for row in results["memory"]:
        lines.append(f"{row['model']:8s} {row['parallelism']:30s} {row['peak_rss_mb']:6.0f}")
    lines += [
        "",
        "library = faster-whisper's BatchedInferencePipeline (b8, greedy, 2 threads, language detected) on the file;",
        "engine = this service's WhisperEngine call the worker makes; overhead = latency - engine call;",
        "steps = time inside the chain's steps (job timings); waiting = upload request + broker hops between steps.",
    ]
    return "\n".join(lines)

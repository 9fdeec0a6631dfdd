"""Fixtures shared by every app's tests: users and keys, speech made with espeak-ng, real workers."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent


def make_speech(text: str, path: Path, *, voice: str = "en-us", speed: int = 150, gap_ms: int = 0) -> Path:
    """Synthesise `text` to a WAV file with espeak-ng (a real recording the model must understand)."""
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is not installed: run `make test` (it installs the Debian package)")
    args = ["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(path)]
    if gap_ms:
        args += ["-g", str(gap_ms // 10)]
    subprocess.run([*args, text], check=True, capture_output=True)
    return path


SPOKEN_TEXT = (
    "Today I went for a long walk in the park with my sister. "
    "The weather was lovely and I felt calm and happy afterwards."
)


@pytest.fixture(scope="session")
def speech_wav(tmp_path_factory) -> Path:
    return make_speech(SPOKEN_TEXT, tmp_path_factory.mktemp("speech") / "walk.wav")


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user(username="alice", password="pw-alice-123")


@pytest.fixture
def other_user(django_user_model):
    return django_user_model.objects.create_user(username="bob", password="pw-bob-123")


def api_client_for(user):
    from rest_framework.test import APIClient

    from diaries.services import api_key_create

    _, key = api_key_create(user=user, name="test")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    client.api_key = key
    return client


@pytest.fixture
def api_client(user):
    return api_client_for(user)


@pytest.fixture
def other_api_client(other_user):
    return api_client_for(other_user)


@pytest.fixture(autouse=True)
def _fresh_engines():
    # Engines read settings when built; tests that change settings need new ones.
    from transcription.engines import registry

    registry.reset()
    yield
    registry.reset()


class WorkerProcess:
    """A real `celery worker` subprocess on the same database and broker as the test."""

    def __init__(self, log_path: Path, env: dict[str, str], concurrency: int = 1, beat: bool = False) -> None:
        args = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "diary_project",
            "worker",
            "--loglevel",
            "INFO",
            "--concurrency",
            str(concurrency),
            "--without-gossip",
            "--without-mingle",
            "-n",
            f"test-{os.getpid()}-{time.monotonic_ns()}@%h",
        ]
        if beat:
            args += ["-B", "-s", str(log_path.with_suffix(".beat"))]
        self.log_path = log_path
        self.log = log_path.open("ab")
        self.process = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if " ready." in self.log_path.read_text(errors="replace"):
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        pytest.fail(f"Celery worker did not start:\n{self.log_path.read_text(errors='replace')[-4000:]}")

    def child_pids(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True).stdout
        return [int(pid) for pid in out.split()]

    def kill9(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            # SIGTERM to the main process only: it stops its children; signalling them directly
            # makes it fork replacements during shutdown.
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill9()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # nothing of this worker outlives the test
        self.log.close()


def worker_env(**extra: str) -> dict[str, str]:
    """The environment a worker needs to share this test's database, storage and broker."""
    from django.conf import settings
    from django.db import connection

    env = dict(os.environ)
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        env["SQLITE_PATH"] = str(db["NAME"])
    else:
        env["DATABASE_URL"] = (
            f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
        )
    env["MEDIA_ROOT"] = str(settings.MEDIA_ROOT)
    env.update(extra)
    return env


@pytest.fixture
def start_worker(tmp_path) -> Iterator:
    """Start real workers: `start_worker(**env)`; all are stopped at teardown."""
    workers: list[WorkerProcess] = []

    def start(concurrency: int = 1, beat: bool = False, wait: bool = True, **extra_env: str) -> WorkerProcess:
        worker = WorkerProcess(tmp_path / f"worker-{len(workers)}.log", worker_env(**extra_env), concurrency, beat)
        workers.append(worker)
        if wait:
            worker.wait_ready()
        return worker

    yield start
    for worker in workers:
        worker.stop()


def wait_for(predicate, timeout: float, interval: float = 0.2, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"Timed out after {timeout}s waiting for {message}")


def transcode(source: Path, target: Path, *, codec: str, rate: int = 16000, container: str | None = None) -> Path:
    """Re-encode a WAV with PyAV's bundled FFmpeg (wav → mp3/ogg-opus/flac/m4a-aac/webm)."""
    import av

    with av.open(str(source)) as src, av.open(str(target), "w", format=container) as dst:
        stream = dst.add_stream(codec, rate=rate)
        stream.layout = "mono"
        resampler = av.AudioResampler(format=stream.codec_context.format or "s16", layout="mono", rate=rate)
        for frame in src.decode(audio=0):
            frame.pts = None
            for resampled in resampler.resample(frame):
                for packet in stream.encode(resampled):
                    dst.mux(packet)
        for resampled in resampler.resample(None):
            for packet in stream.encode(resampled):
                dst.mux(packet)
        for packet in stream.encode(None):
            dst.mux(packet)
    return target


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class WebProcess:
    """gunicorn serving the project, on the test's database, for uploads over real HTTP."""

    def __init__(self, log_path: Path, env: dict[str, str], threads: int = 4) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log_path.open("ab")
        self.log_path = log_path
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "diary_project.wsgi:application",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                "1",
                "--threads",
                str(threads),
                "--timeout",
                "120",
            ],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for(self._answers, timeout=60, message=f"gunicorn to answer (log: {log_path})")

    def _answers(self) -> bool:
        import urllib.request

        if self.process.poll() is not None:
            pytest.fail(f"gunicorn exited:\n{self.log_path.read_text(errors='replace')[-3000:]}")
        try:
            with urllib.request.urlopen(self.url + "/healthz", timeout=2):
                return True
        except OSError:
            return False

    def upload(self, key: str, path: Path, **fields: str) -> tuple[int, dict]:
        from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart

        with path.open("rb") as handle:
            body = encode_multipart(BOUNDARY, {"audio_file": handle, **fields})
        return http_json(self.url + "/upload", key, body, MULTIPART_CONTENT)

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.log.close()


def http_json(url: str, key: str, data: bytes | None = None, content_type: str = "", method: str | None = None):
    """One request with an API key; returns (status, parsed JSON body or None), errors included."""
    import json
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, data=data, method=method or ("POST" if data else "GET"))
    request.add_header("Authorization", f"Bearer {key}")
    if content_type:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            body = response.read()
            return response.status, (json.loads(body) if body else None)
    except urllib.error.HTTPError as error:
        body = error.read()
        return error.code, (json.loads(body) if body else None)


@pytest.fixture
def start_web(tmp_path) -> Iterator:
    """Start gunicorn on the test's database: `start_web(**env)`; stopped at teardown."""
    webs: list[WebProcess] = []

    def start(threads: int = 4, **extra_env: str) -> WebProcess:
        web = WebProcess(tmp_path / f"web-{len(webs)}.log", worker_env(**extra_env), threads)
        webs.append(web)
        return web

    yield start
    for web in webs:
        web.stop()

"""Faults survived by real processes: broker restarts, the database going away, a crowd of
uploads, the LLM endpoint down. Every test is bounded in time; none is a timing assertion."""

from __future__ import annotations

import concurrent.futures
import contextlib
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from django.db import OperationalError, connection

from conftest import ROOT, free_port, make_speech, wait_for, worker_env
from diaries.models import DiaryEntry
from diaries.services import api_key_create
from transcription.models import Recording, TranscriptionJob

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

# Sentences the small models transcribe reliably from espeak-ng, each with a word to find again.
SENTENCES = {
    "ocean": "I went swimming in the ocean this morning.",
    "bicycle": "I rode my bicycle to work in the rain.",
    "garden": "We planted tomatoes in the garden today.",
    "mountain": "We climbed a big mountain on Sunday.",
    "kitchen": "We baked bread in the kitchen this afternoon.",
}
WORDS = list(SENTENCES)
FAST = {"WHISPER_MODEL": "tiny.en", "WHISPER_CPU_THREADS": "1", "CELERY_POLLING_INTERVAL": "0.2"}


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("clips")
    return {word: make_speech(text, folder / f"{word}.wav") for word, text in SENTENCES.items()}


def all_finished(names: list[str]) -> bool:
    return TranscriptionJob.objects.filter(job_name__in=names, status__in=["done", "failed"]).count() == len(names)


def assert_all_done_once(names: list[str]) -> None:
    jobs = TranscriptionJob.objects.filter(job_name__in=names)
    assert sorted(j.status for j in jobs) == ["done"] * len(names), [(j.job_name, j.error_message) for j in jobs]
    assert DiaryEntry.objects.filter(recording__job__job_name__in=names).count() == len(names)


def run_sweep(env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", "requeue_stuck_jobs"],
        cwd=ROOT,
        env=worker_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def new_key(django_user_model, name: str) -> str:
    return api_key_create(user=django_user_model.objects.create_user(name))[1]


# --- Broker restarts --------------------------------------------------------------------


class RedisServer:
    def __init__(self, folder: Path, persistent: bool) -> None:
        self.port, self.folder, self.persistent = free_port(), folder, persistent
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        args = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.folder),
            "--save",
            "",
            "--appendonly",
            "yes" if self.persistent else "no",
            "--appendfsync",
            "always",
        ]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self._answers, timeout=20, message="redis-server")

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)


@pytest.mark.parametrize("persistent", [True, False], ids=["redis-aof", "redis-no-persistence"])
def test_redis_broker_restart_with_jobs_queued_loses_nothing(
    persistent, tmp_path, clips, start_web, start_worker, django_user_model
):
    if not Path("/usr/bin/redis-server").exists():
        pytest.fail("redis-server is needed for this test (it is on this machine kind)")
    redis = RedisServer(tmp_path, persistent)
    redis.start()
    try:
        env = {**FAST, "CELERY_BROKER_URL": f"redis://127.0.0.1:{redis.port}/0", "JOB_QUEUED_GRACE_SECONDS": "4"}
        web = start_web(**env)
        key = new_key(django_user_model, "redis-user")
        names = [web.upload(key, clips[w])[1]["job_name"] for w in WORDS[:3]]
        redis.stop()  # the jobs' messages sit in the broker, no worker has taken them
        redis.start()
        start_worker(**env)
        if not persistent:
            # The restart dropped the messages; the database still knows the jobs, and the sweep
            # re-enqueues them once their queued lease runs out.
            time.sleep(4.5)
            assert run_sweep(env).strip().endswith("3 requeued, 0 failed")
        wait_for(lambda: all_finished(names), timeout=120, message="the jobs to finish after the restart")
        assert_all_done_once(names)
        assert run_sweep(env).strip() == "0 requeued, 0 failed"  # nothing left behind
    finally:
        redis.stop()


def test_sqs_broker_restart_with_jobs_queued_loses_nothing(tmp_path, clips, start_web, start_worker, django_user_model):
    import boto3

    from transcription.tests.moto_server import DUMMY_AWS_ENV, _wait_until_answering, stop_moto_server

    queue = f"diary-{uuid.uuid4().hex[:8]}"

    def sqs_client(endpoint: str):
        return boto3.client(
            "sqs",
            region_name="us-east-1",
            endpoint_url=endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def start_moto() -> tuple[subprocess.Popen, int]:
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        backend = f"http://127.0.0.1:{port}"
        assert _wait_until_answering(backend, process, 30), "moto did not start"
        # In AWS the queue outlives any outage (Terraform owns it); moto forgets it, so make it again before
        # the service can reach this moto (through the proxy): SQS never answers "no such queue" here.
        sqs_client(backend).create_queue(QueueName=queue, Attributes={"VisibilityTimeout": "7200"})
        return process, port

    def restart(moto: subprocess.Popen) -> subprocess.Popen:
        proxy.cut()  # connections drop and new ones are refused, as when SQS is unreachable
        stop_moto_server(moto)  # every queued message is gone with it
        moto, port = start_moto()
        proxy.target = ("127.0.0.1", port)
        proxy.open()
        return moto

    moto, moto_port = start_moto()
    proxy = TcpProxy(("127.0.0.1", moto_port))
    proxy.open()
    url = f"http://127.0.0.1:{proxy.port}"
    queue_url = sqs_client(url).get_queue_url(QueueName=queue)["QueueUrl"]
    try:
        env = {
            **FAST,
            **DUMMY_AWS_ENV,
            "AWS_ENDPOINT_URL": url,
            "CELERY_BROKER_URL": "sqs://",
            "CELERY_QUEUE": queue,
            "SQS_QUEUE_URL": queue_url,
            "JOB_QUEUED_GRACE_SECONDS": "4",
        }
        web = start_web(**env)
        key = new_key(django_user_model, "sqs-user")
        names = [web.upload(key, clips[w])[1]["job_name"] for w in WORDS[:2]]
        moto = restart(moto)
        worker = start_worker(**env)
        time.sleep(4.5)
        assert run_sweep(env).strip().endswith("2 requeued, 0 failed")
        wait_for(lambda: all_finished(names), timeout=120, message="the jobs to finish after the SQS restart")
        assert_all_done_once(names)
        # And a worker that was running through a restart carries on with new uploads.
        moto = restart(moto)
        late = [web.upload(key, clips[WORDS[2]])[1]["job_name"]]
        wait_for(lambda: all_finished(late), timeout=120, message="a job uploaded after the second restart")
        assert_all_done_once(late)
        assert worker.process.poll() is None
    finally:
        proxy.cut()
        stop_moto_server(moto)


# --- The database going away ----------------------------------------------------------------


class TcpProxy:
    """Forwards a local port to PostgreSQL; `cut()` drops every connection and refuses new ones."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target, self.port = target, free_port()
        self.connections: list[socket.socket] = []
        self.listener: socket.socket | None = None

    def open(self) -> None:
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", self.port))
        self.listener.listen(32)
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self.connections += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        assert self.listener is not None
        # shutdown() wakes the thread blocked in accept(); close() alone leaves the port listening.
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        for conn in self.connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            except OSError:
                pass
        self.connections.clear()


def media_files() -> set[str]:
    from django.conf import settings

    root = Path(settings.MEDIA_ROOT)
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()} if root.exists() else set()


def test_database_down_during_upload_answers_503_and_leaves_nothing(clips, start_web, django_user_model):
    if connection.vendor != "postgresql":
        pytest.skip("cuts a real database connection: runs in the PostgreSQL pass of `make test`")
    db = connection.settings_dict
    proxy = TcpProxy((db["HOST"] or "127.0.0.1", int(db["PORT"] or 5432)))
    proxy.open()
    url = f"postgres://{db['USER']}:{db['PASSWORD']}@127.0.0.1:{proxy.port}/{db['NAME']}"
    web = start_web(DATABASE_URL=url, **FAST)
    key = new_key(django_user_model, "db-user")
    status, body = web.upload(key, clips["ocean"])
    assert status == 202
    before_files, before_rows = media_files(), Recording.objects.count()

    proxy.cut()
    for _ in range(2):  # the broken pooled connection, then a refused new one
        status, body = web.upload(key, clips["garden"])
        assert status == 503, body
        assert body == {"error": "service_unavailable", "message": "The database is unavailable. Try again shortly."}
    assert media_files() == before_files and Recording.objects.count() == before_rows

    proxy.open()
    status, body = web.upload(key, clips["garden"])
    assert status == 202, body
    assert Recording.objects.count() == before_rows + 1


def test_database_error_while_saving_an_upload_removes_the_stored_file(api_client, clips, monkeypatch):
    # The file is already in storage when the insert fails: it must not stay behind.
    def broken_create(*args, **kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(TranscriptionJob.objects, "create", broken_create)
    before = media_files()
    with clips["kitchen"].open("rb") as handle:
        response = api_client.post("/upload", {"audio_file": handle}, format="multipart")
    assert response.status_code == 503
    assert response.json()["error"] == "service_unavailable" and "not stored" in response.json()["message"]
    assert media_files() == before and not Recording.objects.exists()


# --- Load and dependencies ------------------------------------------------------------------


def test_fifty_concurrent_uploads_from_five_users(clips, start_web, start_worker, django_user_model):
    env = {**FAST}
    web = start_web(threads=8, **env)
    start_worker(concurrency=2, **env)
    keys = {word: new_key(django_user_model, f"user-{word}") for word in WORDS}
    uploads = [(word, keys[word]) for word in WORDS for _ in range(10)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=10) as pool:
        replies = list(pool.map(lambda item: (item[0], web.upload(item[1], clips[item[0]])), uploads))
    assert [status for _, (status, _) in replies] == [202] * 50
    names = [body["job_name"] for _, (_, body) in replies]
    assert len(set(names)) == 50
    wait_for(lambda: all_finished(names), timeout=300, interval=1, message="50 jobs")
    assert_all_done_once(names)
    import hashlib

    digests = {word: hashlib.sha256(clips[word].read_bytes()).hexdigest() for word in WORDS}
    heard = 0
    for word, (_, body) in replies:
        entry = DiaryEntry.objects.select_related("recording").get(recording__job__job_name=body["job_name"])
        # Each entry is under the user who uploaded it, made from that user's own audio.
        assert entry.owner.username == f"user-{word}"
        assert entry.recording.sha256 == digests[word]
        heard += word in entry.body.lower()
    assert heard >= 45, f"only {heard}/50 entries contain their speaker's word"


def test_llm_endpoint_down_for_the_whole_run_still_saves_entries(clips, api_client, start_worker):
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens here
    settings_env = {
        **FAST,
        "DIARY_FORMATTER": "openai",
        "OPENAI_BASE_URL": dead,
        "OPENAI_API_KEY": "sk-test",
        "OPENAI_TIMEOUT_SECONDS": "2",
    }
    start_worker(**settings_env)
    from django.test import override_settings

    names = []
    with override_settings(DIARY_FORMATTER="openai"):
        for word in WORDS[:2]:
            with clips[word].open("rb") as handle:
                names.append(api_client.post("/upload", {"audio_file": handle}, format="multipart").json()["job_name"])
    wait_for(lambda: all_finished(names), timeout=120, message="jobs with the LLM down")
    assert_all_done_once(names)
    for name in names:
        job = TranscriptionJob.objects.get(job_name=name)
        assert job.formatter == "openai" and "fallback_reason" in job.token_usage
        assert job.recording.entry.formatter == "rules-fallback"


# --- Delivery ---------------------------------------------------------------------------


def test_poison_job_fails_after_bounded_retries_not_a_loop(clips, api_client, start_worker):
    # The openai transcription engine against a dead endpoint: a transient error on every try.
    env = {
        **FAST,
        "TRANSCRIPTION_ENGINE": "openai",
        "OPENAI_BASE_URL": f"http://127.0.0.1:{free_port()}/v1",
        "OPENAI_API_KEY": "sk-test",
        "TASK_MAX_RETRIES": "2",
        "TASK_RETRY_BACKOFF_MAX": "1",
    }
    start_worker(**env)
    from django.test import override_settings

    with override_settings(TRANSCRIPTION_ENGINE="openai"), clips["ocean"].open("rb") as handle:
        name = api_client.post("/upload", {"audio_file": handle}, format="multipart").json()["job_name"]
    wait_for(lambda: all_finished([name]), timeout=90, message="the poison job to give up")
    job = TranscriptionJob.objects.get(job_name=name)
    assert job.status == "failed" and job.stage == "transcribe"
    assert job.error_message.startswith("The transcribe step failed 3 times")
    assert job.attempts == 4  # upload once, transcribe three times
    assert not DiaryEntry.objects.exists()


def test_same_chain_delivered_twice_to_two_workers_makes_one_entry(clips, api_client, start_worker):
    from transcription.services import job_enqueue

    start_worker(concurrency=2, **FAST)
    with clips["garden"].open("rb") as handle:
        name = api_client.post("/upload", {"audio_file": handle}, format="multipart").json()["job_name"]
    job = TranscriptionJob.objects.get(job_name=name)
    assert job_enqueue(job_id=job.id)  # a duplicate of every message, as SQS may deliver
    wait_for(lambda: all_finished([name]), timeout=90, message="the duplicated job")
    assert_all_done_once([name])
    job.refresh_from_db()
    assert job.attempts == 5  # each step ran once; the copies found their step done and stopped


def test_sigterm_mid_step_finishes_the_step_then_exits(tmp_path, api_client, start_worker):
    long_wav = make_speech(" ".join(SENTENCES.values()) * 3, tmp_path / "long.wav")
    first = start_worker(**{**FAST, "WHISPER_MODEL": "base", "WHISPER_BATCH_SIZE": "0", "WHISPER_BEAM_SIZE": "5"})
    with long_wav.open("rb") as handle:
        name = api_client.post("/upload", {"audio_file": handle}, format="multipart").json()["job_name"]
    wait_for(
        lambda: TranscriptionJob.objects.filter(job_name=name, stage="transcribe").exclude(claimed_by="").exists(),
        timeout=60,
        interval=0.05,
        message="the transcribe step to start",
    )
    first.process.send_signal(15)  # Kubernetes' SIGTERM: a warm shutdown
    first.process.wait(timeout=120)
    job = TranscriptionJob.objects.get(job_name=name)
    assert job.stage == "poll", "the running step completed before the worker exited"
    start_worker(**FAST)
    wait_for(lambda: all_finished([name]), timeout=90, message="the job to finish on a new worker")
    assert_all_done_once([name])
    assert TranscriptionJob.objects.get(job_name=name).requeues == 0  # no sweep was needed

"""The Celery app, configured from Django settings under the CELERY_ namespace."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from celery import Celery
from celery.signals import worker_process_init, worker_ready, worker_shutdown

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "diary_project.settings")

app = Celery("diary_project")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

_heartbeat_stop = threading.Event()


@app.on_after_configure.connect
def create_broker_folders(sender: Celery, **kwargs) -> None:
    # kombu's filesystem transport expects its folders to exist.
    options = sender.conf.broker_transport_options or {}
    for key in ("data_folder_in", "data_folder_out", "processed_folder", "control_folder"):
        if options.get(key):
            Path(options[key]).mkdir(parents=True, exist_ok=True)


@app.on_after_finalize.connect
def setup_periodic_sweep(sender: Celery, **kwargs) -> None:
    from django.conf import settings

    # The broker may lose a message (filesystem transport on SIGKILL, a failed publish):
    # the sweep re-enqueues any job whose step lease ran out.
    sender.add_periodic_task(
        settings.SWEEP_INTERVAL_SECONDS, sender.signature("transcription.requeue_stuck_jobs"), name="requeue-stuck-jobs"
    )
    if settings.AUDIO_RETENTION_DAYS > 0:
        sender.add_periodic_task(3600, sender.signature("transcription.purge_expired_audio"), name="audio-retention")


@worker_process_init.connect
def load_engine_after_fork(**kwargs) -> None:
    # CTranslate2 is not fork-safe: load the model in each child, after the fork, once.
    from django.conf import settings

    if settings.ENGINE_PRELOAD:
        from transcription.engines.registry import get_engine

        get_engine(settings.TRANSCRIPTION_ENGINE).warm_up()


def _touch_heartbeat(path: Path) -> None:
    while not _heartbeat_stop.is_set():
        path.touch()
        _heartbeat_stop.wait(30)


@worker_ready.connect
def start_heartbeat(**kwargs) -> None:
    from django.conf import settings

    path = Path(settings.WORKER_HEARTBEAT_FILE)
    path.parent.mkdir(parents=True, exist_ok=True)
    threading.Thread(target=_touch_heartbeat, args=(path,), name="heartbeat", daemon=True).start()


@worker_shutdown.connect
def stop_heartbeat(**kwargs) -> None:
    _heartbeat_stop.set()

"""The Celery app, configured from Django settings under the CELERY_ namespace."""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "diary_project.settings")

app = Celery("diary_project")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_finalize.connect
def setup_periodic_sweep(sender: Celery, **kwargs) -> None:
    from django.conf import settings

    # The broker may lose a message (filesystem transport on SIGKILL, a failed publish):
    # the sweep re-enqueues any job whose step lease ran out.
    sender.add_periodic_task(
        settings.SWEEP_INTERVAL_SECONDS, sender.signature("transcription.requeue_stuck_jobs"), name="requeue-stuck-jobs"
    )


@worker_process_init.connect
def load_engine_after_fork(**kwargs) -> None:
    # CTranslate2 is not fork-safe: load the model in each child, after the fork, once.
    from django.conf import settings

    if os.environ.get("DIARY_PRELOAD_ENGINE", "1") == "1":
        from transcription.engines.registry import get_engine

        get_engine(settings.TRANSCRIPTION_ENGINE).warm_up()

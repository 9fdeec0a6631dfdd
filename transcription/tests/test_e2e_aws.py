"""The production path end to end: gunicorn + a Celery worker on SQS (moto server), audio in S3
(moto), the `aws` engine's start/poll/fetch, and the entry saved in PostgreSQL."""

from __future__ import annotations

import json
import uuid

import boto3
import pytest
from django.db import connection

from conftest import SPOKEN_TEXT, http_json, wait_for
from diaries.models import DiaryEntry
from diaries.services import api_key_create
from transcription.models import TranscriptionJob
from transcription.tests.moto_server import DUMMY_AWS_ENV
from transcription.tests.test_aws_engine import timed_words

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


@pytest.fixture
def require_postgres():
    if connection.vendor != "postgresql":
        pytest.skip("the production-path test runs in the PostgreSQL pass of `make test` (DATABASE_URL set)")


def test_upload_to_entry_on_sqs_s3_and_aws_transcribe(
    require_postgres, moto_server_url, speech_wav, start_worker, start_web, django_user_model
):
    region = "us-east-1"
    s3 = boto3.client("s3", region_name=region, endpoint_url=moto_server_url)
    sqs = boto3.client("sqs", region_name=region, endpoint_url=moto_server_url)
    transcribe = boto3.client("transcribe", region_name=region, endpoint_url=moto_server_url)
    bucket = f"diary-audio-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    queue = f"diary-transcription-{uuid.uuid4().hex[:8]}"
    queue_url = sqs.create_queue(QueueName=queue, Attributes={"VisibilityTimeout": "7200"})["QueueUrl"]

    aws_env = {
        **DUMMY_AWS_ENV,
        "AWS_ENDPOINT_URL": moto_server_url,
        "AWS_REGION": region,
        "STORAGE_BACKEND": "s3",
        "AWS_STORAGE_BUCKET_NAME": bucket,
        "CELERY_BROKER_URL": "sqs://",
        "CELERY_QUEUE": queue,
        "SQS_QUEUE_URL": queue_url,
        "TRANSCRIPTION_ENGINE": "aws",
        "AWS_TRANSCRIBE_OUTPUT_BUCKET": bucket,
        "POLL_INTERVAL_SECONDS": "1",
    }
    start_worker(**aws_env)
    web = start_web(**aws_env)
    base = web.url
    user = django_user_model.objects.create_user("client-aws")
    _, key = api_key_create(user=user)
    status, reply = web.upload(key, speech_wav, language="en")
    assert status == 202 and reply["message"] == "File uploaded and transcription started"
    job_name = reply["job_name"]

    # The audio is in S3, encrypted at rest, under an opaque per-user key.
    recording = TranscriptionJob.objects.get(job_name=job_name).recording
    head = s3.head_object(Bucket=bucket, Key=recording.audio.name)
    assert head["ContentLength"] == speech_wav.stat().st_size
    assert head["ServerSideEncryption"] == "aws:kms"

    # The worker started an AWS Transcribe job named after ours, with the S3 URI and language.
    job = wait_for(
        lambda: TranscriptionJob.objects.filter(job_name=job_name).exclude(external_job_id="").first(),
        timeout=60,
        message="the AWS job to start",
    )
    aws_job = transcribe.get_transcription_job(TranscriptionJobName=job.external_job_id)["TranscriptionJob"]
    assert aws_job["Media"]["MediaFileUri"] == f"s3://{bucket}/{recording.audio.name}"
    assert aws_job["LanguageCode"] == "en-US"
    # moto never writes the transcript: put AWS's output where the job says it will be.
    items = timed_words(SPOKEN_TEXT, 0.3)
    output = {
        "jobName": job.external_job_id,
        "status": "COMPLETED",
        "results": {
            "language_code": "en-US",
            "transcripts": [{"transcript": SPOKEN_TEXT}],
            "items": [{"id": i, **item} for i, item in enumerate(items)],
        },
    }
    s3.put_object(Bucket=bucket, Key=f"transcripts/{job.external_job_id}.json", Body=json.dumps(output).encode())

    wait_for(
        lambda: TranscriptionJob.objects.get(job_name=job_name).status in {"done", "failed"},
        timeout=90,
        message="the job to finish",
    )
    status, job_view = http_json(f"{base}/api/jobs/{job_name}", key)
    assert job_view["status"] == "done", job_view["error_message"]
    assert job_view["engine"] == "aws"
    entry = DiaryEntry.objects.get(pk=job_view["entry_id"])
    assert connection.vendor == "postgresql" and entry.owner == user
    assert entry.raw_transcript == SPOKEN_TEXT
    assert entry.segments[0]["start"] == pytest.approx(0.3) and entry.language == "en"
    assert "walk in the park" in entry.body
    # Exactly one AWS job, even though poll ran several times.
    names = [j["TranscriptionJobName"] for j in transcribe.list_transcription_jobs()["TranscriptionJobSummaries"]]
    assert names.count(job.external_job_id) == 1
    assert TranscriptionJob.objects.get(job_name=job_name).attempts >= 6  # poll re-enqueued itself

    # Deleting the entry removes the audio from S3 too.
    status, _ = http_json(f"{base}/api/entries/{entry.pk}", key, method="DELETE")
    assert status == 204
    with pytest.raises(s3.exceptions.ClientError):
        s3.head_object(Bucket=bucket, Key=recording.audio.name)

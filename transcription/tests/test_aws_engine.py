"""AwsTranscribeEngine against moto in server mode (real HTTP on 127.0.0.1, never real AWS).

moto 5.2.5's Transcribe: StartTranscriptionJob records the job (status not yet set); each
GetTranscriptionJob advances it one step, QUEUED → IN_PROGRESS → COMPLETED, and at COMPLETED it
reports TranscriptFileUri https://s3.<region>.amazonaws.com/<OutputBucketName>/<OutputKey>. It
never writes that file and never fails a job, so the tests put the transcript JSON themselves and
use FaultProxy (in front of moto) for FAILED jobs, throttling and S3 errors.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from transcription.engines.aws import (
    AwsTranscribeEngine,
    parse_transcript_location,
    segments_from_items,
    transcribe_language_code,
)
from transcription.engines.base import AudioRef, EngineError, Pending, TranscribeOptions, Transcript
from transcription.tests.moto_server import FaultProxy, ProxiedRequest, ProxiedResponse, moto_server_url  # noqa: F401

REGION = "us-east-1"


def word(content: str, start: float, end: float) -> dict[str, Any]:
    return {
        "type": "pronunciation",
        "start_time": f"{start:.3f}",
        "end_time": f"{end:.3f}",
        "alternatives": [{"confidence": "0.99", "content": content}],
    }


def punct(content: str) -> dict[str, Any]:
    return {"type": "punctuation", "alternatives": [{"confidence": "0.0", "content": content}]}


def timed_words(text: str, start: float, step: float = 0.4) -> list[dict[str, Any]]:
    """Items for `text`, one word every `step` seconds; punctuation becomes punctuation items."""
    items = []
    t = start
    for token in text.split():
        core = token.rstrip(".,?!")
        items.append(word(core, t, t + step * 0.8))
        t += step
        if token != core:
            items.append(punct(token[len(core) :]))
    return items


def items_output(job_name: str) -> dict[str, Any]:
    # 0.0–5.6 s: two sentences (the first is < 5 s long, so no split after it); a 1.5 s pause;
    # 7.1–9.9 s: two short sentences. Expected: two segments, split by the pause.
    items = (
        timed_words("Today I went to the market.", 0.0)
        + timed_words("It was raining, so I took the bus.", 2.4)
        + timed_words("In the evening I cooked soup.", 7.1)
        + timed_words("We laughed.", 9.5, step=0.2)
    )
    return {
        "jobName": job_name,
        "accountId": "123456789012",
        "status": "COMPLETED",
        "results": {
            "language_code": "en-US",
            "transcripts": [{"transcript": "Today I went to the market. It was raining ..."}],
            "items": [{"id": i, **item} for i, item in enumerate(items)],
        },
    }


def audio_segments_output(job_name: str) -> dict[str, Any]:
    return {
        "jobName": job_name,
        "accountId": "123456789012",
        "status": "COMPLETED",
        "results": {
            "transcripts": [{"transcript": "Good morning. I slept well."}],
            "items": timed_words("Good morning. I slept well.", 0.5),
            "audio_segments": [
                {"id": 0, "transcript": "Good morning.", "start_time": "0.5", "end_time": "1.3", "items": [0, 1, 2]},
                {"id": 1, "transcript": "I slept well.", "start_time": "2.75", "end_time": "4.1", "items": [3, 4, 5]},
            ],
        },
    }


@pytest.fixture
def s3(moto_server_url: str) -> Any:  # noqa: F811
    return boto3.client("s3", region_name=REGION, endpoint_url=moto_server_url)


@pytest.fixture
def transcribe(moto_server_url: str) -> Any:  # noqa: F811
    return boto3.client("transcribe", region_name=REGION, endpoint_url=moto_server_url)


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"diary-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def audio(s3: Any, bucket: str) -> AudioRef:
    key = f"recordings/{uuid.uuid4().hex}.wav"
    s3.put_object(Bucket=bucket, Key=key, Body=b"RIFF\x00\x00\x00\x00WAVEfmt ")
    return AudioRef(key=key, uri=f"s3://{bucket}/{key}", content_type="audio/wav")


def make_engine(endpoint_url: str, bucket: str, **kwargs: Any) -> AwsTranscribeEngine:
    # max_attempts=1: no botocore retries, so fault tests see the first answer at once.
    kwargs.setdefault("max_attempts", 1)
    return AwsTranscribeEngine(
        region=REGION, endpoint_url=endpoint_url, output_bucket=bucket, poll_interval=0.01, **kwargs
    )


@pytest.fixture
def engine(moto_server_url: str, bucket: str) -> AwsTranscribeEngine:  # noqa: F811
    return make_engine(moto_server_url, bucket)


@pytest.fixture
def proxy(moto_server_url: str) -> Iterator[FaultProxy]:  # noqa: F811
    fault_proxy = FaultProxy(moto_server_url)
    yield fault_proxy
    fault_proxy.close()


def job_name() -> str:
    return f"job-{uuid.uuid4().hex}"


def poll_until_done(engine: AwsTranscribeEngine, handle: dict[str, Any], limit: int = 10) -> Transcript:
    statuses = []
    for _ in range(limit):
        result = engine.poll(handle)
        if not isinstance(result, Pending):
            return result
        assert result.retry_after == 0.01
        statuses.append(result.detail)
    raise AssertionError(f"never completed: {statuses}")


# --- start -------------------------------------------------------------------------------


def test_start_creates_job_with_media_uri_and_language_identification(engine, transcribe, audio, bucket):
    name = job_name()
    handle = engine.start(audio, TranscribeOptions(job_name=name))

    assert handle == {"job_name": name, "output_bucket": bucket, "output_key": f"transcripts/{name}.json"}
    json.dumps(handle)  # stored on the job row
    summaries = transcribe.list_transcription_jobs(JobNameContains=name)["TranscriptionJobSummaries"]
    assert [s["TranscriptionJobName"] for s in summaries] == [name]
    job = transcribe.get_transcription_job(TranscriptionJobName=name)["TranscriptionJob"]
    assert job["Media"] == {"MediaFileUri": audio.uri}
    assert job["MediaFormat"] == "wav"
    assert job["IdentifyLanguage"] is True
    assert "LanguageCode" not in job  # moto fills it in only once the job is IN_PROGRESS


@pytest.mark.parametrize(("language", "expected"), [("en", "en-US"), ("de", "de-DE"), ("pt-PT", "pt-PT")])
def test_start_with_language_sets_language_code(engine, transcribe, audio, language, expected):
    name = job_name()
    engine.start(audio, TranscribeOptions(job_name=name, language=language))

    job = transcribe.get_transcription_job(TranscriptionJobName=name)["TranscriptionJob"]
    assert job["LanguageCode"] == expected
    assert not job.get("IdentifyLanguage")


def test_start_uses_engine_default_language(moto_server_url, bucket, transcribe, audio):  # noqa: F811
    engine = make_engine(moto_server_url, bucket, language="fr")
    name = job_name()
    engine.start(audio, TranscribeOptions(job_name=name))
    assert transcribe.get_transcription_job(TranscriptionJobName=name)["TranscriptionJob"]["LanguageCode"] == "fr-FR"


def test_starting_twice_reuses_the_job(engine, transcribe, audio):
    name = job_name()
    first = engine.start(audio, TranscribeOptions(job_name=name))
    second = engine.start(audio, TranscribeOptions(job_name=name))

    assert first == second
    summaries = transcribe.list_transcription_jobs(JobNameContains=name)["TranscriptionJobSummaries"]
    assert len(summaries) == 1


def test_media_format_from_content_type_when_extension_unknown(engine, transcribe, s3, bucket):
    key = f"recordings/{uuid.uuid4().hex}"
    s3.put_object(Bucket=bucket, Key=key, Body=b"ID3")
    name = job_name()
    engine.start(AudioRef(key=key, uri=f"s3://{bucket}/{key}", content_type="audio/mpeg"), TranscribeOptions(name))
    assert transcribe.get_transcription_job(TranscriptionJobName=name)["TranscriptionJob"]["MediaFormat"] == "mp3"


@pytest.mark.parametrize("uri", [None, "/var/audio.wav", "https://example.com/a.wav", "s3://bucket-only"])
def test_start_needs_an_s3_uri(engine, uri):
    with pytest.raises(EngineError) as excinfo:
        engine.start(AudioRef(key="a.wav", uri=uri), TranscribeOptions(job_name=job_name()))
    assert excinfo.value.permanent


def test_unknown_language_is_a_permanent_error():
    with pytest.raises(EngineError) as excinfo:
        transcribe_language_code("xx")
    assert excinfo.value.permanent


# --- poll --------------------------------------------------------------------------------


def test_poll_converts_items_into_segments(engine, s3, audio, bucket):
    name = job_name()
    handle = engine.start(audio, TranscribeOptions(job_name=name))
    assert isinstance(engine.poll(handle), Pending)  # QUEUED
    s3.put_object(Bucket=bucket, Key=handle["output_key"], Body=json.dumps(items_output(name)).encode())

    transcript = poll_until_done(engine, handle)

    assert [seg.text for seg in transcript.segments] == [
        "Today I went to the market. It was raining, so I took the bus.",
        "In the evening I cooked soup. We laughed.",
    ]
    first, second = transcript.segments
    assert (first.start, round(first.end, 3)) == (0.0, 5.52)
    assert (second.start, round(second.end, 3)) == (7.1, 9.86)
    assert transcript.language == "en"
    assert transcript.language_probability == pytest.approx(0.999645948)
    assert transcript.duration == pytest.approx(9.86)
    assert (transcript.engine, transcript.model) == ("aws", "amazon-transcribe")
    assert Transcript.from_dict(json.loads(json.dumps(transcript.to_dict()))) == transcript


def test_poll_prefers_audio_segments(engine, s3, audio, bucket, transcribe):
    name = job_name()
    handle = engine.start(audio, TranscribeOptions(job_name=name, language="en-GB"))
    s3.put_object(Bucket=bucket, Key=handle["output_key"], Body=json.dumps(audio_segments_output(name)).encode())

    transcript = poll_until_done(engine, handle)

    assert [(seg.start, seg.end, seg.text) for seg in transcript.segments] == [
        (0.5, 1.3, "Good morning."),
        (2.75, 4.1, "I slept well."),
    ]
    assert transcript.language == "en"
    assert transcript.duration == 4.1
    # The transcript was read where the completed job said it is.
    uri = transcribe.get_transcription_job(TranscriptionJobName=name)["TranscriptionJob"]["Transcript"]
    assert parse_transcript_location(uri["TranscriptFileUri"]) == (bucket, handle["output_key"])


def test_poll_reports_progress_as_pending(engine, audio):
    handle = engine.start(audio, TranscribeOptions(job_name=job_name()))
    details = [engine.poll(handle).detail, engine.poll(handle).detail]
    assert details == ["Amazon Transcribe job is QUEUED", "Amazon Transcribe job is IN_PROGRESS"]


def test_failed_job_is_a_permanent_error(moto_server_url, proxy, bucket, audio):  # noqa: F811
    engine = make_engine(proxy.url, bucket)
    name = job_name()
    handle = engine.start(audio, TranscribeOptions(job_name=name))
    reason = "The media format provided does not match the detected media format."

    # moto never fails a job: turn its GetTranscriptionJob answer into AWS's FAILED shape.
    @proxy.rewrite
    def fail_job(request: ProxiedRequest, response: ProxiedResponse) -> ProxiedResponse | None:
        if request.amz_target != "Transcribe.GetTranscriptionJob" or request.json()["TranscriptionJobName"] != name:
            return None
        data = response.json()
        data["TranscriptionJob"].update(TranscriptionJobStatus="FAILED", FailureReason=reason)
        data["TranscriptionJob"].pop("Transcript", None)
        return ProxiedResponse(response.status, json.dumps(data).encode(), response.headers)

    with pytest.raises(EngineError) as excinfo:
        engine.poll(handle)
    assert excinfo.value.permanent
    assert reason in excinfo.value.message


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"this is not json {", "not JSON"),
        (json.dumps({"jobName": "x", "status": "COMPLETED"}).encode(), "no 'results' object"),
        (json.dumps({"results": {"items": [{"type": "pronunciation", "alternatives": []}]}}).encode(), "alternatives"),
        (json.dumps({"results": {"items": [word("hi", 0, 1) | {"start_time": "soon"}]}}).encode(), "not a number"),
        (json.dumps({"results": {"audio_segments": [{"start_time": "0"}]}}).encode(), "no transcript text"),
    ],
)
def test_malformed_transcript_is_a_permanent_error(engine, s3, audio, bucket, body, message):
    handle = engine.start(audio, TranscribeOptions(job_name=job_name()))
    s3.put_object(Bucket=bucket, Key=handle["output_key"], Body=body)

    with pytest.raises(EngineError) as excinfo:
        poll_until_done(engine, handle)
    assert excinfo.value.permanent
    assert "Malformed Amazon Transcribe output" in excinfo.value.message
    assert message in excinfo.value.message


def test_missing_transcript_file_is_a_permanent_error(engine, audio):
    handle = engine.start(audio, TranscribeOptions(job_name=job_name()))
    with pytest.raises(EngineError) as excinfo:
        poll_until_done(engine, handle)
    assert excinfo.value.permanent
    assert "NoSuchKey" in excinfo.value.message


def test_unknown_job_is_a_permanent_error(engine, bucket):
    handle = {"job_name": job_name(), "output_bucket": bucket, "output_key": "transcripts/x.json"}
    with pytest.raises(EngineError) as excinfo:
        engine.poll(handle)
    assert excinfo.value.permanent
    assert "BadRequestException" in excinfo.value.message


# --- transient and permanent AWS errors --------------------------------------------------


def test_throttling_on_start_is_transient(proxy, bucket, audio, transcribe):
    engine = make_engine(proxy.url, bucket)
    proxy.intercept(
        lambda r: (
            ProxiedResponse.aws_json_error(400, "ThrottlingException", "Rate exceeded")
            if r.amz_target == "Transcribe.StartTranscriptionJob"
            else None
        )
    )
    name = job_name()
    with pytest.raises(EngineError) as excinfo:
        engine.start(audio, TranscribeOptions(job_name=name))
    assert not excinfo.value.permanent
    assert "ThrottlingException" in excinfo.value.message
    assert transcribe.list_transcription_jobs(JobNameContains=name)["TranscriptionJobSummaries"] == []


def test_limit_exceeded_and_5xx_on_poll_are_transient(proxy, bucket, audio):
    engine = make_engine(proxy.url, bucket)
    handle = engine.start(audio, TranscribeOptions(job_name=job_name()))
    for response in (
        ProxiedResponse.aws_json_error(400, "LimitExceededException", "Too many jobs"),
        ProxiedResponse.aws_json_error(500, "InternalFailureException", "Internal failure"),
        ProxiedResponse(503, b"", {}),
    ):
        proxy.interceptors[:] = [lambda r, response=response: response]
        with pytest.raises(EngineError) as excinfo:
            engine.poll(handle)
        assert not excinfo.value.permanent, excinfo.value.message


@pytest.mark.parametrize(
    ("response", "permanent"),
    [
        (ProxiedResponse.s3_error(503, "SlowDown", "Please reduce your request rate."), False),
        (ProxiedResponse.s3_error(500, "InternalError", "We encountered an internal error."), False),
        (ProxiedResponse.s3_error(403, "AccessDenied", "Access Denied"), True),
    ],
)
def test_s3_errors_reading_the_transcript(proxy, s3, bucket, audio, response, permanent):
    engine = make_engine(proxy.url, bucket)
    name = job_name()
    handle = engine.start(audio, TranscribeOptions(job_name=name))
    s3.put_object(Bucket=bucket, Key=handle["output_key"], Body=json.dumps(items_output(name)).encode())
    # S3 requests carry no X-Amz-Target; Transcribe's do.
    proxy.intercept(lambda r: response if not r.amz_target else None)

    with pytest.raises(EngineError) as excinfo:
        poll_until_done(engine, handle)
    assert excinfo.value.permanent is permanent, excinfo.value.message

    proxy.interceptors.clear()  # S3 recovers: the next poll succeeds
    assert isinstance(engine.poll(handle), Transcript)


def test_access_denied_on_start_is_permanent(proxy, bucket, audio):
    engine = make_engine(proxy.url, bucket)
    proxy.intercept(lambda r: ProxiedResponse.aws_json_error(400, "AccessDeniedException", "not authorized"))
    with pytest.raises(EngineError) as excinfo:
        engine.start(audio, TranscribeOptions(job_name=job_name()))
    assert excinfo.value.permanent


def test_connection_refused_is_transient(bucket, audio):
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    engine = make_engine(f"http://127.0.0.1:{closed_port}", bucket, connect_timeout=1.0)
    with pytest.raises(EngineError) as excinfo:
        engine.start(audio, TranscribeOptions(job_name=job_name()))
    assert not excinfo.value.permanent


# --- pure helpers -------------------------------------------------------------------------


def test_segments_split_on_long_monologue_and_skip_leading_punctuation():
    # 40 s without a pause or sentence end: cut before the word that passes 30 s.
    items = [punct(",")] + [word(f"w{i}", i * 0.5, i * 0.5 + 0.4) for i in range(80)]
    segments = segments_from_items(items)
    assert len(segments) == 2
    assert segments[0].start == 0.0 and segments[0].end <= 30.0
    assert segments[1].text.split()[0] == f"w{int(segments[0].end // 0.5) + 1}"
    assert " ".join(seg.text for seg in segments) == " ".join(f"w{i}" for i in range(80))


def test_sentence_end_splits_only_after_five_seconds():
    items = timed_words("One two three.", 0.0) + timed_words("Four five six seven eight.", 1.2, step=1.0)
    assert [seg.text for seg in segments_from_items(items)] == ["One two three. Four five six seven eight."]
    items += timed_words("Nine ten.", 6.3)
    assert [seg.text for seg in segments_from_items(items)] == [
        "One two three. Four five six seven eight.",
        "Nine ten.",
    ]


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("https://s3.us-east-1.amazonaws.com/my-bucket/transcripts/j.json", ("my-bucket", "transcripts/j.json")),
        ("https://s3.amazonaws.com/my-bucket/a%20b.json", ("my-bucket", "a b.json")),
        ("https://my-bucket.s3.eu-west-1.amazonaws.com/transcripts/j.json", ("my-bucket", "transcripts/j.json")),
        ("s3://my-bucket/transcripts/j.json", ("my-bucket", "transcripts/j.json")),
        ("https://example.com/presigned?X-Amz-Signature=1", None),
        ("", None),
    ],
)
def test_parse_transcript_location(uri, expected):
    assert parse_transcript_location(uri) == expected

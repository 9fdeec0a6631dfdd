"""Amazon Transcribe as a TranscriptionEngine: an asynchronous batch job read back from S3.

boto3 is imported here only, so the default (local Whisper) install never needs it: the registry
imports this module only when TRANSCRIPTION_ENGINE = "aws".
"""

from __future__ import annotations

import json
import logging
import math
import posixpath
import re
from typing import Any
from urllib.parse import unquote, urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    CredentialRetrievalError,
    HTTPClientError,
    IncompleteReadError,
    TokenRetrievalError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from transcription.engines.base import AudioRef, EngineError, Pending, Segment, TranscribeOptions, Transcript

logger = logging.getLogger(__name__)

# ISO 639-1 → the Transcribe batch locale we use when a recording's language is known.
# Codes that already carry a region ("en-GB", "pt-PT") are passed through unchanged.
LANGUAGE_LOCALES: dict[str, str] = {
    "af": "af-ZA",
    "ar": "ar-SA",
    "da": "da-DK",
    "de": "de-DE",
    "en": "en-US",
    "es": "es-US",
    "fa": "fa-IR",
    "fi": "fi-FI",
    "fr": "fr-FR",
    "he": "he-IL",
    "hi": "hi-IN",
    "id": "id-ID",
    "it": "it-IT",
    "ja": "ja-JP",
    "ko": "ko-KR",
    "ms": "ms-MY",
    "nl": "nl-NL",
    "no": "no-NO",
    "pl": "pl-PL",
    "pt": "pt-BR",
    "ru": "ru-RU",
    "sv": "sv-SE",
    "ta": "ta-IN",
    "te": "te-IN",
    "th": "th-TH",
    "tr": "tr-TR",
    "uk": "uk-UA",
    "vi": "vi-VN",
    "zh": "zh-CN",
}

# Transcribe's MediaFormat values, from the file extension or, failing that, the content type.
MEDIA_FORMAT_BY_EXTENSION: dict[str, str] = {
    "mp3": "mp3",
    "mp4": "mp4",
    "m4a": "m4a",
    "wav": "wav",
    "flac": "flac",
    "ogg": "ogg",
    "oga": "ogg",
    "opus": "ogg",
    "amr": "amr",
    "webm": "webm",
}
MEDIA_FORMAT_BY_CONTENT_TYPE: dict[str, str] = {
    "audio/mpeg": "mp3",
    "audio/mp3": "mp3",
    "audio/mp4": "mp4",
    "video/mp4": "mp4",
    "audio/x-m4a": "m4a",
    "audio/m4a": "m4a",
    "audio/wav": "wav",
    "audio/x-wav": "wav",
    "audio/wave": "wav",
    "audio/vnd.wave": "wav",
    "audio/flac": "flac",
    "audio/x-flac": "flac",
    "audio/ogg": "ogg",
    "audio/opus": "ogg",
    "audio/amr": "amr",
    "audio/webm": "webm",
    "video/webm": "webm",
}

# Error codes worth retrying: rate limits, concurrency limits, server-side failures, clock/credential refresh.
TRANSIENT_ERROR_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "LimitExceededException",
        "SlowDown",
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalFailureException",
        "InternalFailure",
        "InternalError",
        "InternalServerError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "ExpiredToken",
        "ExpiredTokenException",
        "RequestExpired",
    }
)
TRANSIENT_BOTOCORE_ERRORS = (
    HTTPClientError,
    BotoConnectionError,
    IncompleteReadError,
    CredentialRetrievalError,
    TokenRetrievalError,
)

JOB_NAME_PATTERN = re.compile(r"^[0-9a-zA-Z._-]{1,200}$")  # Transcribe's own constraint
SENTENCE_END = frozenset({".", "?", "!", "。", "？", "！"})
# Segment building from `results.items` (when the output has no `audio_segments`).
SENTENCE_SPLIT_MIN_SECONDS = 5.0
PAUSE_SPLIT_SECONDS = 1.0
MAX_SEGMENT_SECONDS = 30.0


def transcribe_language_code(language: str) -> str:
    """Map "en" → "en-US"; pass through codes that already name a region."""
    code = language.strip()
    if "-" in code:
        return code
    try:
        return LANGUAGE_LOCALES[code.lower()]
    except KeyError:
        raise EngineError(
            f"Language {language!r} has no Amazon Transcribe locale in this project; "
            "pass a full locale such as 'en-GB' or leave the language empty to identify it",
            permanent=True,
        ) from None


def iso_language(code: str | None) -> str:
    """Map a Transcribe locale ("en-US") to the project's ISO 639-1 form ("en")."""
    return (code or "").split("-")[0].lower()


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """Split s3://bucket/key into (bucket, key)."""
    parts = urlsplit(uri)
    key = parts.path.lstrip("/")
    if parts.scheme != "s3" or not parts.netloc or not key:
        raise EngineError(f"Amazon Transcribe needs the audio as s3://bucket/key, got {uri!r}", permanent=True)
    return parts.netloc, key


def parse_transcript_location(uri: str) -> tuple[str, str] | None:
    """(bucket, key) from an s3:// URI or an S3 https URL (path or virtual-host style), else None."""
    parts = urlsplit(uri or "")
    if parts.scheme == "s3" and parts.netloc and parts.path.strip("/"):
        return parts.netloc, unquote(parts.path.lstrip("/"))
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        return None
    host = parts.hostname
    path = unquote(parts.path.lstrip("/"))
    # Path style: s3.amazonaws.com, s3.<region>.amazonaws.com, s3-<region>.amazonaws.com.
    if re.fullmatch(r"s3([.-][a-z0-9-]+)?\.amazonaws\.com(\.cn)?", host):
        bucket, _, key = path.partition("/")
        return (bucket, key) if bucket and key else None
    # Virtual-host style: <bucket>.s3[.<region>].amazonaws.com.
    match = re.fullmatch(r"(.+)\.s3([.-][a-z0-9-]+)?\.amazonaws\.com(\.cn)?", host)
    if match and path:
        return match.group(1), path
    return None


def media_format_for(audio: AudioRef, key: str) -> str | None:
    extension = posixpath.splitext(key)[1].lstrip(".").lower()
    if extension in MEDIA_FORMAT_BY_EXTENSION:
        return MEDIA_FORMAT_BY_EXTENSION[extension]
    content_type = audio.content_type.split(";")[0].strip().lower()
    return MEDIA_FORMAT_BY_CONTENT_TYPE.get(content_type)


def engine_error_from_aws(exc: Exception, action: str) -> EngineError:
    """Classify a boto3 failure: retry throttling, 5xx and connection trouble; fail at once otherwise."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        message = str(error.get("Message", "")) or str(exc)
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        transient = code in TRANSIENT_ERROR_CODES or status >= 500 or status == 429
        return EngineError(f"{action}: {code or status} {message}".strip(), permanent=not transient)
    if isinstance(exc, TRANSIENT_BOTOCORE_ERRORS):
        return EngineError(f"{action}: {exc}", permanent=False)
    # Missing credentials or region, invalid parameters: retrying cannot help.
    return EngineError(f"{action}: {exc}", permanent=True)


class MalformedOutput(ValueError):
    """Transcribe's output JSON does not have the expected shape."""


def _seconds(value: Any, what: str) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise MalformedOutput(f"{what} is not a number: {value!r}") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise MalformedOutput(f"{what} is out of range: {value!r}")
    return seconds


def segments_from_audio_segments(audio_segments: Any) -> list[Segment]:
    if not isinstance(audio_segments, list):
        raise MalformedOutput("results.audio_segments is not a list")
    segments = []
    for index, item in enumerate(audio_segments):
        if not isinstance(item, dict) or not isinstance(item.get("transcript"), str):
            raise MalformedOutput(f"audio_segments[{index}] has no transcript text")
        start = _seconds(item.get("start_time"), f"audio_segments[{index}].start_time")
        end = _seconds(item.get("end_time"), f"audio_segments[{index}].end_time")
        text = item["transcript"].strip()
        if text:
            segments.append(Segment(start=start, end=max(start, end), text=text))
    return segments


def segments_from_items(items: Any) -> list[Segment]:
    """Group word items into segments: at sentence ends once ≥ 5 s long, on pauses ≥ 1 s, and at ~30 s."""
    if not isinstance(items, list):
        raise MalformedOutput("results.items is not a list")
    segments: list[Segment] = []
    words: list[str] = []
    seg_start = seg_end = 0.0

    def flush() -> None:
        if words:
            segments.append(Segment(start=seg_start, end=seg_end, text=" ".join(words)))
            words.clear()

    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise MalformedOutput(f"items[{index}] is not an object")
        alternatives = item.get("alternatives")
        if not isinstance(alternatives, list) or not alternatives or not isinstance(alternatives[0], dict):
            raise MalformedOutput(f"items[{index}] has no alternatives")
        content = alternatives[0].get("content")
        if not isinstance(content, str):
            raise MalformedOutput(f"items[{index}] has no content")
        kind = item.get("type")
        if kind == "punctuation":
            if not words:
                continue  # nothing to attach it to: a segment never starts with punctuation
            words[-1] += content
            if content in SENTENCE_END and seg_end - seg_start >= SENTENCE_SPLIT_MIN_SECONDS:
                flush()
            continue
        if kind != "pronunciation":
            raise MalformedOutput(f"items[{index}] has unknown type {kind!r}")
        start = _seconds(item.get("start_time"), f"items[{index}].start_time")
        end = max(start, _seconds(item.get("end_time"), f"items[{index}].end_time"))
        if words and (start - seg_end >= PAUSE_SPLIT_SECONDS or end - seg_start > MAX_SEGMENT_SECONDS):
            flush()
        if not words:
            seg_start = start
        words.append(content)
        seg_end = end
    flush()
    return segments


def transcript_from_output(
    data: Any, *, language_code: str | None, language_probability: float | None = None
) -> Transcript:
    """Convert Transcribe's output JSON into a Transcript; raise MalformedOutput if it is malformed."""
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        raise MalformedOutput("no 'results' object")
    results = data["results"]
    if results.get("audio_segments"):
        segments = segments_from_audio_segments(results["audio_segments"])
    else:
        segments = segments_from_items(results.get("items", []))
    code = language_code or results.get("language_code") or ""
    return Transcript(
        language=iso_language(code if isinstance(code, str) else ""),
        segments=tuple(segments),
        duration=max((seg.end for seg in segments), default=0.0),
        language_probability=language_probability,
        engine="aws",
        model="amazon-transcribe",
    )


class AwsTranscribeEngine:
    """Amazon Transcribe batch jobs; audio must already be in S3 (needs_local_file=False)."""

    name = "aws"
    needs_local_file = False

    def __init__(
        self,
        *,
        region: str,
        output_bucket: str,
        endpoint_url: str | None = None,
        poll_interval: float = 15.0,
        language: str | None = None,
        max_attempts: int = 3,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
    ) -> None:
        if not output_bucket:
            raise EngineError("AWS_TRANSCRIBE_OUTPUT_BUCKET is not set", permanent=True)
        self.region = region
        self.endpoint_url = endpoint_url or None
        self.output_bucket = output_bucket
        self.poll_interval = float(poll_interval)
        self.language = language or None
        # botocore retries briefly in-process; Celery owns the long backoff between attempts.
        self._config = Config(
            region_name=region,
            retries={"max_attempts": max_attempts, "mode": "standard"},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            # Custom endpoints (moto, LocalStack, MinIO) rarely do virtual-host buckets.
            s3={"addressing_style": "path"} if self.endpoint_url else None,
        )
        self._transcribe: Any = None
        self._s3: Any = None

    @classmethod
    def from_settings(cls) -> AwsTranscribeEngine:
        from django.conf import settings

        return cls(
            region=settings.AWS_S3_REGION_NAME,
            endpoint_url=settings.AWS_ENDPOINT_URL,
            output_bucket=settings.AWS_TRANSCRIBE_OUTPUT_BUCKET,
            poll_interval=settings.POLL_INTERVAL_SECONDS,
            language=getattr(settings, "AWS_TRANSCRIBE_LANGUAGE", "") or None,
        )

    def warm_up(self) -> None:
        # Clients are made per process (after the worker fork), never shared across a fork.
        if self._transcribe is None:
            self._transcribe = boto3.client("transcribe", endpoint_url=self.endpoint_url, config=self._config)
        if self._s3 is None:
            self._s3 = boto3.client("s3", endpoint_url=self.endpoint_url, config=self._config)

    @property
    def transcribe_client(self) -> Any:
        self.warm_up()
        return self._transcribe

    @property
    def s3_client(self) -> Any:
        self.warm_up()
        return self._s3

    def start(self, audio: AudioRef, options: TranscribeOptions) -> dict[str, Any]:
        job_name = options.job_name
        if not JOB_NAME_PATTERN.match(job_name or ""):
            raise EngineError(f"Invalid Amazon Transcribe job name {job_name!r}", permanent=True)
        _, key = parse_s3_uri(audio.uri or "")
        output_key = f"transcripts/{job_name}.json"
        params: dict[str, Any] = {
            "TranscriptionJobName": job_name,
            "Media": {"MediaFileUri": audio.uri},
            "OutputBucketName": self.output_bucket,
            "OutputKey": output_key,
        }
        language = options.language or self.language
        if language:
            params["LanguageCode"] = transcribe_language_code(language)
        else:
            params["IdentifyLanguage"] = True
        media_format = media_format_for(audio, key)
        if media_format:
            params["MediaFormat"] = media_format
        handle = {"job_name": job_name, "output_bucket": self.output_bucket, "output_key": output_key}
        try:
            self.transcribe_client.start_transcription_job(**params)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            # The job name is the idempotency key: a redelivered task must not start a second job.
            if error.get("Code") == "ConflictException" or "already exists" in str(error.get("Message", "")):
                logger.info("Amazon Transcribe job %s already exists; continuing with it", job_name)
                return handle
            raise engine_error_from_aws(exc, f"StartTranscriptionJob {job_name}") from exc
        except BotoCoreError as exc:
            raise engine_error_from_aws(exc, f"StartTranscriptionJob {job_name}") from exc
        return handle

    def poll(self, handle: dict[str, Any]) -> Transcript | Pending:
        job_name = handle["job_name"]
        try:
            job = self.transcribe_client.get_transcription_job(TranscriptionJobName=job_name)["TranscriptionJob"]
        except (ClientError, BotoCoreError) as exc:
            raise engine_error_from_aws(exc, f"GetTranscriptionJob {job_name}") from exc
        status = job.get("TranscriptionJobStatus", "")
        if status == "FAILED":
            reason = job.get("FailureReason") or "no reason given"
            raise EngineError(f"Amazon Transcribe job {job_name} failed: {reason}", permanent=True)
        if status != "COMPLETED":
            return Pending(retry_after=self.poll_interval, detail=f"Amazon Transcribe job is {status or 'starting'}")

        location = parse_transcript_location(job.get("Transcript", {}).get("TranscriptFileUri", ""))
        bucket, key = location or (handle["output_bucket"], handle["output_key"])
        data = self._read_json(bucket, key)
        try:
            return transcript_from_output(
                data,
                language_code=job.get("LanguageCode"),
                language_probability=job.get("IdentifiedLanguageScore"),
            )
        except MalformedOutput as exc:
            raise EngineError(
                f"Malformed Amazon Transcribe output at s3://{bucket}/{key}: {exc}", permanent=True
            ) from exc

    def _read_json(self, bucket: str, key: str) -> Any:
        try:
            body = self.s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
        except (ClientError, BotoCoreError) as exc:
            raise engine_error_from_aws(exc, f"Reading transcript s3://{bucket}/{key}") from exc
        try:
            return json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise EngineError(
                f"Malformed Amazon Transcribe output at s3://{bucket}/{key}: not JSON ({exc})", permanent=True
            ) from exc

"""OpenAI's transcription API (or any OpenAI-compatible Whisper server) as a TranscriptionEngine.

The call is synchronous: `start` uploads the local file and gets the transcript back, and `poll`
just unpacks it from the handle. The openai SDK is imported here only (the registry imports this
module only when TRANSCRIPTION_ENGINE = "openai").
"""

from __future__ import annotations

import logging
import os
from typing import Any

import openai

from transcription.engines.base import AudioRef, EngineError, Pending, Segment, TranscribeOptions, Transcript

logger = logging.getLogger(__name__)

# OpenAI refuses uploads above 25 MB; failing before the upload gives a clear, permanent error.
OPENAI_MAX_UPLOAD_BYTES = 25 * 1024 * 1024

# verbose_json reports the language as Whisper's English name ("english"); the project stores ISO 639-1.
_WHISPER_LANGUAGE_NAMES = """
en english,zh chinese,de german,es spanish,ru russian,ko korean,fr french,ja japanese,pt portuguese,
tr turkish,pl polish,ca catalan,nl dutch,ar arabic,sv swedish,it italian,id indonesian,hi hindi,
fi finnish,vi vietnamese,he hebrew,uk ukrainian,el greek,ms malay,cs czech,ro romanian,da danish,
hu hungarian,ta tamil,no norwegian,th thai,ur urdu,hr croatian,bg bulgarian,lt lithuanian,la latin,
mi maori,ml malayalam,cy welsh,sk slovak,te telugu,fa persian,lv latvian,bn bengali,sr serbian,
az azerbaijani,sl slovenian,kn kannada,et estonian,mk macedonian,br breton,eu basque,is icelandic,
hy armenian,ne nepali,mn mongolian,bs bosnian,kk kazakh,sq albanian,sw swahili,gl galician,mr marathi,
pa punjabi,si sinhala,km khmer,sn shona,yo yoruba,so somali,af afrikaans,oc occitan,ka georgian,
be belarusian,tg tajik,sd sindhi,gu gujarati,am amharic,yi yiddish,lo lao,uz uzbek,fo faroese,
ht haitian creole,ps pashto,tk turkmen,nn nynorsk,mt maltese,sa sanskrit,lb luxembourgish,my myanmar,
bo tibetan,tl tagalog,mg malagasy,as assamese,tt tatar,haw hawaiian,ln lingala,ha hausa,ba bashkir,
jw javanese,su sundanese,yue cantonese
"""
WHISPER_LANGUAGE_CODES: dict[str, str] = {
    name: code
    for code, name in (entry.strip().split(" ", 1) for entry in _WHISPER_LANGUAGE_NAMES.split(",") if entry.strip())
}
WHISPER_LANGUAGE_CODES.update({"burmese": "my", "valencian": "ca", "flemish": "nl", "castilian": "es"})


def iso_language(value: str | None) -> str:
    """Map Whisper's "english", or "en-US", to "en"; unknown names are kept lower-cased."""
    text = (value or "").strip().lower()
    if text in WHISPER_LANGUAGE_CODES:
        return WHISPER_LANGUAGE_CODES[text]
    return text.split("-")[0].split("_")[0]


def _retry_after_seconds(value: str | None) -> float | None:
    try:
        seconds = float(value or "")
    except ValueError:
        return None  # an HTTP date, or nothing
    return seconds if 0 <= seconds < 86400 else None


def engine_error_from_openai(exc: Exception) -> EngineError:
    """Rate limits, timeouts, connection trouble and 5xx are retried; bad requests and auth are not."""
    if isinstance(exc, openai.APITimeoutError):
        return EngineError(f"OpenAI transcription timed out: {exc}", permanent=False)
    if isinstance(exc, openai.APIConnectionError):
        return EngineError(f"OpenAI transcription could not connect: {exc}", permanent=False)
    if isinstance(exc, openai.RateLimitError):
        # 429 "insufficient_quota" is a billing problem: retrying only burns the retry budget.
        quota = exc.code == "insufficient_quota"
        error = EngineError(f"OpenAI transcription rate-limited (429): {exc.message}", permanent=quota)
        # Not part of the interface: a hint the task may use as its countdown.
        error.retry_after = _retry_after_seconds(exc.response.headers.get("retry-after"))
        return error
    if isinstance(exc, openai.APIStatusError):
        transient = exc.status_code >= 500 or exc.status_code in (408, 409)
        return EngineError(f"OpenAI transcription failed ({exc.status_code}): {exc.message}", permanent=not transient)
    if isinstance(exc, openai.APIResponseValidationError):
        return EngineError(f"OpenAI transcription returned an unreadable reply: {exc}", permanent=False)
    # Client-side configuration errors (no API key, bad base URL): retrying cannot help.
    return EngineError(f"OpenAI transcription is misconfigured: {exc}", permanent=True)


def _field(obj: Any, name: str) -> Any:
    # Compatible servers may add fields the SDK's model does not declare; those arrive as plain dicts.
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


class OpenAITranscriptionEngine:
    """POST /v1/audio/transcriptions with the local audio file (needs_local_file=True)."""

    name = "openai"
    needs_local_file = True

    def __init__(
        self,
        *,
        api_key: str = "",
        base_url: str | None = None,
        model: str = "whisper-1",
        timeout: float = 60.0,
        language: str | None = None,
        max_upload_bytes: int | None = OPENAI_MAX_UPLOAD_BYTES,
    ) -> None:
        self.api_key = api_key
        self.base_url = base_url or None
        self.model = model
        self.timeout = float(timeout)
        self.language = language or None
        self.max_upload_bytes = max_upload_bytes
        self._client: openai.OpenAI | None = None

    @classmethod
    def from_settings(cls) -> OpenAITranscriptionEngine:
        from django.conf import settings

        return cls(
            api_key=settings.OPENAI_API_KEY,
            base_url=settings.OPENAI_BASE_URL,
            model=settings.OPENAI_TRANSCRIBE_MODEL,
            timeout=settings.OPENAI_TIMEOUT_SECONDS,
            language=getattr(settings, "WHISPER_LANGUAGE", "") or None,
        )

    def warm_up(self) -> None:
        if self._client is not None:
            return
        # Self-hosted compatible servers ignore the key, but the SDK insists on one.
        api_key = self.api_key or ("unused" if self.base_url else None)
        try:
            # max_retries=0: Celery retries with backoff, so the SDK must not hold the worker meanwhile.
            self._client = openai.OpenAI(api_key=api_key, base_url=self.base_url, timeout=self.timeout, max_retries=0)
        except openai.OpenAIError as exc:
            raise EngineError(f"OpenAI transcription is misconfigured: {exc}", permanent=True) from exc

    @property
    def client(self) -> openai.OpenAI:
        self.warm_up()
        assert self._client is not None
        return self._client

    @property
    def verbose(self) -> bool:
        # OpenAI's gpt-4o(-mini)-transcribe models only answer "json" (no timestamps); Whisper models do verbose_json.
        return not self.model.startswith("gpt-")

    def start(self, audio: AudioRef, options: TranscribeOptions) -> dict[str, Any]:
        path = audio.local_path
        if not path:
            raise EngineError("The OpenAI engine needs the audio as a local file", permanent=True)
        try:
            size = os.path.getsize(path)
        except OSError as exc:
            # The worker materialises the file; a retry makes it again.
            raise EngineError(f"Cannot read the audio file {path}: {exc}", permanent=False) from exc
        if self.max_upload_bytes is not None and size > self.max_upload_bytes:
            raise EngineError(
                f"The audio is {size} bytes; the OpenAI transcription API accepts at most {self.max_upload_bytes}",
                permanent=True,
            )
        params: dict[str, Any] = {"model": self.model}
        if self.verbose:
            params["response_format"] = "verbose_json"
            params["timestamp_granularities"] = ["segment"]
        else:
            params["response_format"] = "json"
        language = options.language or self.language
        if language:
            params["language"] = iso_language(language)  # the API wants ISO 639-1
        # The server picks the decoder by file name, and temporary files often have no extension.
        filename = os.path.basename(path)
        if not os.path.splitext(filename)[1]:
            filename = os.path.basename(audio.key) or "audio"
        try:
            with open(path, "rb") as fh:
                result = self.client.audio.transcriptions.create(file=(filename, fh), **params)
        except openai.OpenAIError as exc:
            raise engine_error_from_openai(exc) from exc
        except OSError as exc:
            raise EngineError(f"Cannot read the audio file {path}: {exc}", permanent=False) from exc
        except ValueError as exc:
            # The SDK lets a 200 reply with a broken JSON body through as a JSONDecodeError.
            raise EngineError(f"OpenAI transcription returned an unreadable reply: {exc}", permanent=False) from exc
        transcript = self._transcript_from(result, audio, requested_language=language)
        return {"transcript": transcript.to_dict()}

    def poll(self, handle: dict[str, Any]) -> Transcript | Pending:
        try:
            return Transcript.from_dict(handle["transcript"])
        except (KeyError, TypeError, ValueError) as exc:
            raise EngineError(f"Invalid OpenAI transcription handle: {exc}", permanent=True) from exc

    def _transcript_from(self, result: Any, audio: AudioRef, *, requested_language: str | None) -> Transcript:
        text = getattr(result, "text", None)
        if not isinstance(text, str):
            raise EngineError("OpenAI transcription reply has no text", permanent=True)
        segments = []
        try:
            for seg in _field(result, "segments") or []:
                seg_text = str(_field(seg, "text") or "").strip()
                if seg_text:
                    start = float(_field(seg, "start"))
                    segments.append(Segment(start=start, end=max(start, float(_field(seg, "end"))), text=seg_text))
        except (TypeError, ValueError) as exc:
            raise EngineError(f"OpenAI transcription reply has malformed segments: {exc}", permanent=True) from exc
        duration = float(getattr(result, "duration", None) or audio.duration or 0.0)
        if not segments and text.strip():
            # json replies carry no timestamps: one segment spanning the recording.
            segments.append(Segment(start=0.0, end=duration, text=text.strip()))
        duration = max([duration] + [seg.end for seg in segments])
        return Transcript(
            language=iso_language(getattr(result, "language", None) or requested_language),
            segments=tuple(segments),
            duration=duration,
            engine=self.name,
            model=self.model,
        )

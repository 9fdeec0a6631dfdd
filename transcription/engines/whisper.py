"""Local Whisper through faster-whisper (CTranslate2), on CPU int8 by default."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from transcription.engines.base import AudioRef, EngineError, Pending, Segment, TranscribeOptions, Transcript
from transcription.model_store import ModelError, resolve_model_dir

logger = logging.getLogger(__name__)

# One model per process, keyed by its load options (CTranslate2 is not fork-safe: load after fork).
_MODELS: dict[tuple, Any] = {}
_MODELS_LOCK = threading.Lock()


def load_whisper_model(
    model: str, *, cache_dir: Path, device: str, compute_type: str, cpu_threads: int, num_workers: int
) -> Any:
    key = (model, str(cache_dir), device, compute_type, cpu_threads, num_workers)
    with _MODELS_LOCK:
        if key not in _MODELS:
            from faster_whisper import WhisperModel

            try:
                model_dir = resolve_model_dir(model, cache_dir)
            except ModelError as exc:
                raise EngineError(str(exc), permanent=True) from exc
            started = time.monotonic()
            _MODELS[key] = WhisperModel(
                str(model_dir),
                device=device,
                compute_type=compute_type,
                cpu_threads=cpu_threads,
                num_workers=num_workers,
                local_files_only=True,
            )
            logger.info("Loaded Whisper %s (%s, %s) in %.2fs", model, device, compute_type, time.monotonic() - started)
        return _MODELS[key]


class WhisperEngine:
    name = "whisper"
    needs_local_file = True

    def __init__(
        self,
        *,
        model: str = "base",
        cache_dir: Path,
        device: str = "cpu",
        compute_type: str = "int8",
        cpu_threads: int = 2,
        num_workers: int = 1,
        beam_size: int = 1,
        batch_size: int = 8,
        vad_filter: bool = True,
        language: str | None = None,
    ) -> None:
        self.model_name = model
        self.cache_dir = Path(cache_dir)
        self.device = device
        self.compute_type = compute_type
        self.cpu_threads = cpu_threads
        self.num_workers = num_workers
        self.beam_size = beam_size
        self.batch_size = batch_size
        self.vad_filter = vad_filter
        self.language = language or None

    @classmethod
    def from_settings(cls) -> WhisperEngine:
        from django.conf import settings

        return cls(
            model=settings.WHISPER_MODEL,
            cache_dir=settings.WHISPER_MODEL_CACHE,
            device=settings.WHISPER_DEVICE,
            compute_type=settings.WHISPER_COMPUTE_TYPE,
            cpu_threads=settings.WHISPER_CPU_THREADS,
            num_workers=settings.WHISPER_NUM_WORKERS,
            beam_size=settings.WHISPER_BEAM_SIZE,
            batch_size=settings.WHISPER_BATCH_SIZE,
            vad_filter=settings.WHISPER_VAD_FILTER,
            language=settings.WHISPER_LANGUAGE,
        )

    def _model(self) -> Any:
        return load_whisper_model(
            self.model_name,
            cache_dir=self.cache_dir,
            device=self.device,
            compute_type=self.compute_type,
            cpu_threads=self.cpu_threads,
            num_workers=self.num_workers,
        )

    def warm_up(self) -> None:
        self._model()

    def transcribe_path(self, path: str, *, language: str | None = None, on_progress=None) -> Transcript:
        model = self._model()
        language = language or self.language
        # English-only models (tiny.en) cannot detect languages.
        if self.model_name.endswith(".en"):
            language = "en"
        try:
            if self.batch_size > 0:
                from faster_whisper import BatchedInferencePipeline

                pipeline = BatchedInferencePipeline(model=model)
                segments, info = pipeline.transcribe(
                    path,
                    language=language,
                    beam_size=self.beam_size,
                    batch_size=self.batch_size,
                    vad_filter=self.vad_filter,
                )
            else:
                segments, info = model.transcribe(
                    path,
                    language=language,
                    beam_size=self.beam_size,
                    vad_filter=self.vad_filter,
                    condition_on_previous_text=False,
                )
            collected: list[Segment] = []
            for segment in segments:
                collected.append(Segment(start=float(segment.start), end=float(segment.end), text=segment.text.strip()))
                if on_progress and info.duration:
                    on_progress(min(1.0, float(segment.end) / float(info.duration)))
        except EngineError:
            raise
        except Exception as exc:  # PyAV / CTranslate2 errors: the audio, not the server, is at fault
            if exc.__class__.__module__.startswith("av") or isinstance(exc, (ValueError, IndexError)):
                raise EngineError(f"The audio could not be decoded: {exc}", permanent=True) from exc
            raise EngineError(f"Whisper failed: {exc}", permanent=False) from exc
        return Transcript(
            language=info.language or (language or ""),
            segments=tuple(s for s in collected if s.text),
            duration=float(info.duration or 0.0),
            language_probability=round(float(info.language_probability), 4) if info.language_probability else None,
            engine=self.name,
            model=self.model_name,
        )

    def start(self, audio: AudioRef, options: TranscribeOptions) -> dict[str, Any]:
        if not audio.local_path:
            raise EngineError("The whisper engine needs the audio as a local file", permanent=True)
        transcript = self.transcribe_path(
            audio.local_path, language=options.language, on_progress=options.extra.get("on_progress")
        )
        # Local Whisper is synchronous: the handle carries the finished result for `poll`.
        return {"transcript": transcript.to_dict()}

    def poll(self, handle: dict[str, Any]) -> Transcript | Pending:
        if "transcript" not in handle:
            raise EngineError("The whisper handle has no transcript; the transcribe step must run again")
        return Transcript.from_dict(handle["transcript"])

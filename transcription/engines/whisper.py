"""Local Whisper through faster-whisper (CTranslate2), on CPU int8 by default.

Speed on a small CPU comes from three things, measured by `make bench`:
- the batched pipeline (VAD windows decoded greedily in batches, no temperature fallback), its windows
  ending at silences (`plan_windows`) rather than wherever 30 s of speech runs out;
- model replicas (`num_workers`) each with few threads, fed windows concurrently: the decoder's small
  matrix products do not scale with threads, independent replicas do;
- language detection from the encoder output the decoder uses anyway, instead of one more encoder pass.
Long recordings are also split at silences (`plan_chunks`) so chunks can run in other worker processes.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise
from math import ceil
from pathlib import Path
from typing import Any

import numpy as np

from transcription.engines.base import AudioRef, EngineError, Pending, Segment, TranscribeOptions, Transcript
from transcription.model_store import ModelError, resolve_model_dir

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
WINDOW_SECONDS = 30.0  # Whisper's input window
SPEECH_PAD_SECONDS = 0.4  # kept around speech, as faster-whisper's VAD pads it
# A cut in the middle of a silence this long is at least half of it away from any speech.
SAFE_SILENCE = 0.6

# One model per process, keyed by its load options (CTranslate2 is not fork-safe: load after fork).
_MODELS: dict[tuple, Any] = {}
_MODELS_LOCK = threading.Lock()


def load_whisper_model(
    model: str, *, cache_dir: Path, device: str, compute_type: str, cpu_threads: int, num_workers: int
) -> Any:
    key = (model, str(cache_dir), device, compute_type, cpu_threads, num_workers, os.getpid())
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
            logger.info(
                "Loaded Whisper %s (%s, %s, %d replica(s) x %d thread(s)) in %.2fs",
                model,
                device,
                compute_type,
                num_workers,
                cpu_threads,
                time.monotonic() - started,
            )
        return _MODELS[key]


# --- Audio ------------------------------------------------------------------------------


def decode_audio_file(path: str) -> np.ndarray:
    """The whole file as 16 kHz mono float32 (PyAV's bundled FFmpeg); undecodable audio is permanent."""
    from faster_whisper.audio import decode_audio

    try:
        samples = decode_audio(path, sampling_rate=SAMPLE_RATE)
    except Exception as exc:
        raise EngineError(f"The audio could not be decoded: {exc}", permanent=True) from exc
    if samples.size == 0:
        raise EngineError("The audio could not be decoded: it holds no samples", permanent=True)
    return samples


def decode_to_pcm(path: str, target: Path) -> np.ndarray:
    """Decode a file to 16 kHz mono 16-bit PCM in `target` (raw samples), a block at a time.

    Memory stays flat however long the recording (a 4-hour file is 460 MB of PCM on disk, not 1.4 GB of
    floats in memory); chunk tasks then read only their range. Returns a read-only memory map of it.
    Decoding is the same as faster-whisper's `decode_audio` (PyAV, s16 mono resampling in 500k-sample
    blocks). An OSError means the target could not be written (the caller may decode in memory instead).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with temporary.open("wb") as out:
            _decode_into(path, out)
        gc.collect()  # PyAV's resampler frees its buffers only on collection (faster-whisper issue 390)
        if temporary.stat().st_size < 2:
            raise EngineError("The audio could not be decoded: it holds no samples", permanent=True)
        os.replace(temporary, target)  # readers never see a half-written file
    except (EngineError, OSError):
        raise
    except Exception as exc:
        raise EngineError(f"The audio could not be decoded: {exc}", permanent=True) from exc
    finally:
        temporary.unlink(missing_ok=True)
    return np.memmap(target, dtype=np.int16, mode="r")


def _decode_into(path: str, out: Any) -> None:
    import av

    resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    fifo = av.AudioFifo()

    def write(frame: Any) -> None:
        for resampled in resampler.resample(frame):
            out.write(resampled.to_ndarray().tobytes())

    with av.open(path, mode="r", metadata_errors="ignore") as container:
        frames = container.decode(audio=0)
        while True:
            try:
                frame = next(frames)
            except StopIteration:
                break
            except av.error.InvalidDataError:
                continue  # as faster-whisper does: skip a damaged frame, keep the rest
            frame.pts = None
            fifo.write(frame)
            if fifo.samples >= 500_000:
                write(fifo.read())
        if fifo.samples:
            write(fifo.read())
        write(None)


def as_float(samples: np.ndarray) -> np.ndarray:
    """Samples as the model takes them: float32 in [-1, 1] (16-bit PCM is scaled)."""
    if samples.dtype == np.int16:
        return np.asarray(samples, dtype=np.float32) / 32768.0
    return np.asarray(samples, dtype=np.float32)


def load_pcm_range(path: Path, start: float, end: float) -> np.ndarray:
    pcm = np.memmap(path, dtype=np.int16, mode="r")
    return as_float(pcm[round(start * SAMPLE_RATE) : round(end * SAMPLE_RATE)])


def speech_intervals(
    samples: np.ndarray,
    *,
    min_silence_ms: int,
    threads: int = 1,
    piece_seconds: int = 300,
    max_speech_seconds: float = float("inf"),
) -> list[tuple[float, float]]:
    """Speech as (start, end) seconds by Silero VAD (bundled with faster-whisper), without padding.

    The audio (float or 16-bit PCM, in memory or mapped) is read in pieces of a few minutes, on `threads`
    threads (ONNX Runtime releases the GIL): memory stays small, and speech split by a piece boundary
    comes back as two touching intervals, which are joined again. No interval is longer than
    `max_speech_seconds` (the VAD splits longer speech at its quietest moment; joins never undo that).
    """
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    options = VadOptions(
        min_silence_duration_ms=min_silence_ms, speech_pad_ms=0, max_speech_duration_s=max_speech_seconds
    )
    piece = piece_seconds * SAMPLE_RATE
    starts = list(range(0, len(samples), piece))

    def detect(first: int) -> list[tuple[float, float]]:
        found = get_speech_timestamps(as_float(samples[first : first + piece]), options, sampling_rate=SAMPLE_RATE)
        return [((first + s["start"]) / SAMPLE_RATE, (first + s["end"]) / SAMPLE_RATE) for s in found]

    if len(starts) > 1 and threads > 1:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            pieces = list(pool.map(detect, starts))
    else:
        pieces = [detect(first) for first in starts]
    joined: list[tuple[float, float]] = []
    for start, end in (interval for found in pieces for interval in found):
        if (
            joined
            and start - joined[-1][1] < min_silence_ms / 1000
            and max(joined[-1][1], end) - joined[-1][0] <= max_speech_seconds
        ):
            joined[-1] = (joined[-1][0], max(joined[-1][1], end))
        else:
            joined.append((start, end))
    return joined


def plan_chunks(
    speech: Sequence[tuple[float, float]], duration: float, *, target_seconds: float, min_silence_seconds: float
) -> list[tuple[float, float]]:
    """Cut [0, duration] into equal chunks of about `target_seconds`, each cut in the middle of a silence.

    A silence is a gap between speech intervals at least `min_silence_seconds` long. Where speech has
    no such gap the chunk grows until one comes; the last chunk takes the rest.
    """
    gaps = [
        (previous_end, next_start)
        for (_, previous_end), (next_start, _) in pairwise(speech)
        if next_start - previous_end >= min_silence_seconds
    ]
    # Equal shares of the recording (about target_seconds each), cut near k x share: equal workers finish
    # together. Near each point the longest silence wins (up to SAFE_SILENCE, all longer ones are equally
    # safe), then the nearest; the search widens only when nothing is close.
    count = max(1, round(duration / target_seconds))
    count += count % 2 if count > 1 else 0  # an even count: 2 or 4 workers get equal numbers of chunks
    share = duration / count
    chunks: list[tuple[float, float]] = []
    cursor = 0.0
    for k in range(1, count):
        target = k * share
        if target <= cursor:
            continue
        open_gaps = [g for g in gaps if (g[0] + g[1]) / 2 > cursor + min_silence_seconds]
        cut = None
        for reach in (0.1, 0.25, 0.5):
            near = [g for g in open_gaps if abs((g[0] + g[1]) / 2 - target) <= reach * share]
            if near:
                best = min(near, key=lambda g: (-min(g[1] - g[0], SAFE_SILENCE), abs((g[0] + g[1]) / 2 - target)))
                cut = (best[0] + best[1]) / 2
                break
        if cut is None:
            later = [g for g in open_gaps if (g[0] + g[1]) / 2 > target]
            if not later:
                break
            cut = (later[0][0] + later[0][1]) / 2
        if duration - cut < min_silence_seconds:
            break
        chunks.append((cursor, cut))
        cursor = cut
    chunks.append((cursor, duration))
    return chunks


def pad_speech(
    speech: Sequence[tuple[float, float]], duration: float, pad: float = SPEECH_PAD_SECONDS
) -> list[tuple[float, float, float]]:
    """Pad speech intervals as faster-whisper's VAD does (a silence shorter than two pads is split between
    its neighbours), keeping each interval's true silence before it: (start, end, silence before)."""
    padded: list[tuple[float, float, float]] = []
    for index, (start, end) in enumerate(speech):
        before = start - speech[index - 1][1] if index else start
        after = speech[index + 1][0] - end if index + 1 < len(speech) else duration - end
        padded.append(
            (
                max(0.0, start - min(pad, before / 2 if index else pad)),
                min(duration, end + min(pad, after / 2 if index + 1 < len(speech) else pad)),
                before,
            )
        )
    return padded


def plan_windows(
    pieces: Sequence[tuple[float, float, float]], *, max_window: float = WINDOW_SECONDS, look_back: float = 8.0
) -> list[tuple[int, int]]:
    """Group consecutive speech pieces (start, end, silence before) into the model's windows.

    Returns (first, past-last) piece indexes per window, each holding at most `max_window` seconds of
    speech. faster-whisper fills each window to the brim and cuts wherever that lands, often between two
    halves of a sentence split only by a short breath: the model then drops or garbles words on both
    sides of the cut (make bench: 14 words lost at one such cut). Here a full window ends instead at
    the longest silence among its last `look_back` seconds of speech, a sentence's end more often
    than not; windows stay nearly as full, so there are hardly more of them.
    """
    windows: list[tuple[int, int]] = []
    first = 0
    while first < len(pieces):
        last, filled = first, 0.0
        while last < len(pieces) and filled + (pieces[last][1] - pieces[last][0]) <= max_window:
            filled += pieces[last][1] - pieces[last][0]
            last += 1
        last = max(last, first + 1)  # a piece over the window (VAD keeps them under it) goes alone
        if last < len(pieces):
            candidates, kept = [], filled
            for cut in range(last, first, -1):
                candidates.append(cut)
                kept -= pieces[cut - 1][1] - pieces[cut - 1][0]
                if filled - kept >= look_back:
                    break
            # The longest silence before the piece the next window starts with; the fullest window on ties.
            last = max(candidates, key=lambda cut: (round(pieces[cut][2], 2), cut))
        windows.append((first, last))
        first = last
    return windows


def merge_transcripts(parts: Sequence[Transcript], *, duration: float, engine: str = "", model: str = "") -> Transcript:
    """One transcript from chunk transcripts (times already absolute), in time order, nothing dropped."""
    segments = sorted(
        (segment for part in parts for segment in part.segments), key=lambda segment: (segment.start, segment.end)
    )
    spoken: Counter[str] = Counter()
    probabilities: dict[str, list[float]] = {}
    for part in parts:
        if part.language:
            spoken[part.language] += sum(s.end - s.start for s in part.segments) or 0.001
            if part.language_probability is not None:
                probabilities.setdefault(part.language, []).append(part.language_probability)
    language = spoken.most_common(1)[0][0] if spoken else ""
    found = probabilities.get(language)
    return Transcript(
        language=language,
        segments=tuple(segments),
        duration=duration,
        language_probability=round(sum(found) / len(found), 4) if found else None,
        engine=engine,
        model=model,
    )


# --- The batched pipeline, with replicas and reused language detection ------------------


class _DetectingCt2Model:
    """Forwards to the CTranslate2 model and records the language it finds in each window."""

    def __init__(self, inner: Any, found: list[tuple[str, float]]) -> None:
        self._inner = inner
        self._found = found

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def detect_language(self, *args: Any, **kwargs: Any) -> Any:
        results = self._inner.detect_language(*args, **kwargs)
        self._found.extend((ranked[0][0][2:-2], float(ranked[0][1])) for ranked in results)
        return results


class _DetectingWhisperModel:
    """A WhisperModel whose `.model` records detected languages (see `_DetectingCt2Model`)."""

    def __init__(self, inner: Any, found: list[tuple[str, float]]) -> None:
        self._inner = inner
        self.model = _DetectingCt2Model(inner.model, found)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _pipeline_class() -> type:
    from faster_whisper import BatchedInferencePipeline
    from faster_whisper.transcribe import Segment as WhisperSegment

    class ReplicaPipeline(BatchedInferencePipeline):
        """faster-whisper's batched pipeline, its batches spread over the model's replicas by a thread pool."""

        def __init__(self, model: Any, pool: ThreadPoolExecutor | None, replicas: int) -> None:
            super().__init__(model=model)
            self.pool = pool
            self.replicas = replicas

        def _batched_segments_generator(self, features, tokenizer, chunks_metadata, batch_size, options, log_progress):
            # As many batches as keep every replica equally busy, none above batch_size; results come in order.
            count = self.replicas * ceil(len(features) / (self.replicas * max(1, batch_size)))
            size = max(1, ceil(len(features) / max(1, count)))
            batches = [(features[i : i + size], chunks_metadata[i : i + size]) for i in range(0, len(features), size)]

            def run(batch):
                return self.forward(batch[0], tokenizer, batch[1], options)

            if self.pool is not None and len(batches) > 1:
                results = self.pool.map(run, batches)
            else:
                results = map(run, batches)
            index = 0
            for result in results:
                for window in result:
                    for segment in window:
                        index += 1
                        yield WhisperSegment(
                            seek=segment["seek"],
                            id=index,
                            text=segment["text"],
                            start=round(segment["start"], 3),
                            end=round(segment["end"], 3),
                            words=None,
                            tokens=segment["tokens"],
                            avg_logprob=segment["avg_logprob"],
                            no_speech_prob=segment["no_speech_prob"],
                            compression_ratio=segment["compression_ratio"],
                            temperature=options.temperatures[0],
                        )

    return ReplicaPipeline


class WhisperEngine:
    name = "whisper"
    needs_local_file = True
    supports_chunks = True

    def __init__(
        self,
        *,
        model: str = "base",
        cache_dir: Path,
        device: str = "cpu",
        compute_type: str = "int8",
        cpu_threads: int = 1,
        num_workers: int = 2,
        beam_size: int = 1,
        batch_size: int = 1,
        vad_filter: bool = True,
        vad_min_silence_ms: int = 160,
        language: str | None = None,
    ) -> None:
        self.model_name = model
        self.cache_dir = Path(cache_dir)
        self.device = device
        self.compute_type = compute_type
        self.cpu_threads = max(1, cpu_threads)
        self.num_workers = max(1, num_workers)
        self.beam_size = beam_size
        self.batch_size = batch_size
        self.vad_filter = vad_filter
        self.vad_min_silence_ms = vad_min_silence_ms
        self.language = language or None
        self._pool: ThreadPoolExecutor | None = None
        self._pool_pid = 0
        self._pool_lock = threading.Lock()

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
            vad_min_silence_ms=settings.WHISPER_VAD_MIN_SILENCE_MS,
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

    def _replica_pool(self) -> ThreadPoolExecutor | None:
        if self.num_workers < 2:
            return None
        with self._pool_lock:
            # Threads do not survive a fork: a pool made in another process is useless here.
            if self._pool is None or self._pool_pid != os.getpid():
                self._pool = ThreadPoolExecutor(max_workers=self.num_workers, thread_name_prefix="whisper")
                self._pool_pid = os.getpid()
            return self._pool

    def warm_up(self) -> None:
        """Load the model, then run every replica once: a replica's first call allocates its buffers
        (make bench: the first job after a worker started took ~0.4 s longer), and a new worker's first
        job should not pay for that. Also loads the VAD model. About 1 s at worker start (2 CPUs)."""
        import ctranslate2
        from faster_whisper.audio import pad_or_trim
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.vad import get_vad_model

        model = self._model()
        get_vad_model()
        features = pad_or_trim(model.feature_extractor(np.zeros(SAMPLE_RATE, dtype=np.float32))[..., :-1])
        window = ctranslate2.StorageView.from_array(np.ascontiguousarray(features[None]))
        tokenizer = Tokenizer(model.hf_tokenizer, model.model.is_multilingual, task="transcribe", language="en")
        prompt = [*tokenizer.sot_sequence, tokenizer.no_timestamps]

        def one_call(_: int) -> None:
            model.model.generate(window, [prompt], beam_size=1, max_length=len(prompt) + 4)

        pool = self._replica_pool()
        if pool is None:
            one_call(0)
        else:  # concurrent calls go to different replicas
            list(pool.map(one_call, range(self.num_workers)))

    # The number of threads this engine keeps busy, for work it parallelises itself (VAD).
    @property
    def threads(self) -> int:
        return self.cpu_threads * self.num_workers

    def decode(self, path: str) -> np.ndarray:
        return decode_audio_file(path)

    def decode_to_pcm(self, path: str, target: Path) -> np.ndarray:
        return decode_to_pcm(path, target)

    def plan_chunks(
        self, samples: np.ndarray, *, target_seconds: float, min_silence_ms: int
    ) -> list[tuple[float, float]]:
        speech = speech_intervals(samples, min_silence_ms=min_silence_ms, threads=self.threads)
        return plan_chunks(
            speech,
            len(samples) / SAMPLE_RATE,
            target_seconds=target_seconds,
            min_silence_seconds=min_silence_ms / 1000,
        )

    def transcribe_path(self, path: str, *, language: str | None = None, on_progress=None) -> Transcript:
        return self.transcribe_audio(self.decode(path), language=language, on_progress=on_progress)

    def transcribe_audio(
        self,
        samples: np.ndarray,
        *,
        language: str | None = None,
        offset: float = 0.0,
        on_progress: Callable[[float], None] | None = None,
    ) -> Transcript:
        """Transcribe 16 kHz mono samples; `offset` (seconds) is added to every segment time."""
        model = self._model()
        language = language or self.language
        # English-only models (tiny.en) cannot detect languages.
        if self.model_name.endswith(".en"):
            language = "en"
        found: list[tuple[str, float]] = []
        detect = self.batch_size > 0 and language is None and model.model.is_multilingual
        duration = len(samples) / SAMPLE_RATE
        try:
            if self.batch_size > 0:
                segments = self._transcribe_windows(model, samples, language, found, detect=detect)
                info = None
            else:
                segments, info = model.transcribe(
                    samples,
                    language=language,
                    beam_size=self.beam_size,
                    vad_filter=self.vad_filter,
                    condition_on_previous_text=False,
                )
            collected: list[Segment] = []
            for segment in segments:
                collected.append(
                    Segment(
                        start=round(offset + float(segment.start), 3),
                        end=round(offset + float(segment.end), 3),
                        text=segment.text.strip(),
                    )
                )
                if on_progress and duration:
                    on_progress(min(1.0, float(segment.end) / duration))
        except EngineError:
            raise
        except Exception as exc:  # CTranslate2 errors on odd input: the audio, not the server, is at fault
            if isinstance(exc, (ValueError, IndexError)):
                raise EngineError(f"The audio could not be transcribed: {exc}", permanent=True) from exc
            raise EngineError(f"Whisper failed: {exc}", permanent=False) from exc
        detected, probability = (
            (info.language, info.language_probability) if info else (language or "", 1.0 if language else None)
        )
        if detect and not found:
            detected, probability = "", None  # no speech, so no window to detect a language in
        elif found:
            # The language most windows were in; its mean probability over those windows.
            detected = Counter(code for code, _ in found).most_common(1)[0][0]
            chosen = [p for code, p in found if code == detected]
            probability = sum(chosen) / len(chosen)
        return Transcript(
            language=detected or (language or ""),
            segments=tuple(s for s in collected if s.text),
            duration=round(duration, 3),
            language_probability=round(float(probability), 4) if probability else None,
            engine=self.name,
            model=self.model_name,
        )

    def speech_pieces(self, samples: np.ndarray) -> list[tuple[float, float, float]]:
        """Speech as (start, end, silence before) seconds, padded, none over the model's window.

        Silero VAD as faster-whisper's batched pipeline runs it (`speech_intervals`), unpadded first so that
        the true silences are known for `plan_windows`. Without VAD: the whole audio in 1 s pieces.
        """
        duration = len(samples) / SAMPLE_RATE
        if not self.vad_filter:
            return [(start, min(start + 1.0, duration), 0.0) for start in np.arange(0.0, duration, 1.0)]
        speech = speech_intervals(
            samples,
            min_silence_ms=self.vad_min_silence_ms,
            threads=self.threads,
            max_speech_seconds=WINDOW_SECONDS - 2 * SPEECH_PAD_SECONDS,
        )
        return pad_speech(speech, duration)

    def _transcribe_windows(
        self, model: Any, samples: np.ndarray, language: str | None, found: list[tuple[str, float]], *, detect: bool
    ) -> Any:
        """faster-whisper's batched pipeline on the speech, concatenated as the pipeline does it, in the
        windows `plan_windows` chose; segment times mapped back to the recording's own."""
        from faster_whisper.transcribe import restore_speech_timestamps

        pieces = self.speech_pieces(samples)
        if not pieces:
            return []
        ranges = [(round(start * SAMPLE_RATE), round(end * SAMPLE_RATE)) for start, end, _ in pieces]
        bounds = np.cumsum([0] + [end - start for start, end in ranges])
        pipeline = _pipeline_class()(
            _DetectingWhisperModel(model, found) if detect else model, self._replica_pool(), self.num_workers
        )
        # Unknown language: each window's language comes from the encoder output its decoding uses
        # (`multilingual`), instead of an extra encoder pass over the first 30 s; "en" is a placeholder.
        segments, _ = pipeline.transcribe(
            np.concatenate([samples[start:end] for start, end in ranges]),
            language="en" if detect else language,
            multilingual=detect,
            beam_size=self.beam_size,
            batch_size=self.batch_size,
            clip_timestamps=[
                {"start": bounds[first] / SAMPLE_RATE, "end": bounds[last] / SAMPLE_RATE}
                for first, last in plan_windows(pieces)
            ],
        )
        speech = [{"start": start, "end": end} for start, end in ranges]
        return restore_speech_timestamps(segments, speech, SAMPLE_RATE)

    def transcribe_many(self, items: Sequence[tuple[str, str | None]]) -> list[Transcript | EngineError]:
        """Transcribe several files at once, (path, language) each, so every replica has work.

        Each result is a Transcript, or the EngineError of that file alone.
        """

        def one(item: tuple[str, str | None]) -> Transcript | EngineError:
            try:
                return self.transcribe_path(item[0], language=item[1])
            except EngineError as exc:
                return exc

        if len(items) < 2:
            return [one(item) for item in items]
        # Not the replica pool: these threads wait on it.
        with ThreadPoolExecutor(max_workers=len(items), thread_name_prefix="whisper-job") as pool:
            return list(pool.map(one, items))

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

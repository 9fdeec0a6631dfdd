"""Probing uploaded audio with PyAV (the FFmpeg libraries inside the `av` wheel; no system ffmpeg)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

logger = logging.getLogger(__name__)

# Container format names PyAV reports -> the file extension we store under.
FORMAT_EXTENSIONS = {
    "wav": "wav",
    "mp3": "mp3",
    "ogg": "ogg",
    "flac": "flac",
    "aac": "aac",
    "mov,mp4,m4a,3gp,3g2,mj2": "m4a",
    "matroska,webm": "webm",
    "aiff": "aiff",
    "amr": "amr",
    "caf": "caf",
    "opus": "opus",
    "asf": "wma",
    "w64": "wav",
}
# Formats that hold images or text, which FFmpeg can "open" but which are not recordings.
NOT_AUDIO_FORMATS = {"image2", "png_pipe", "jpeg_pipe", "gif", "webp_pipe", "tty", "srt", "ass", "webvtt", "lrc"}


class AudioProbeError(Exception):
    pass


@dataclass(frozen=True)
class AudioInfo:
    format_name: str
    extension: str
    duration: float
    sample_rate: int
    channels: int
    codec: str


def probe_audio(path: str) -> AudioInfo:
    """Open the file by its content (never its name), check it has decodable audio, measure it."""
    import av

    try:
        container = av.open(path, mode="r", metadata_errors="ignore")
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise AudioProbeError(f"not a readable audio file ({exc.__class__.__name__})") from exc
    with container:
        format_name = container.format.name
        if format_name in NOT_AUDIO_FORMATS or not container.streams.audio:
            raise AudioProbeError(f"no audio stream found (format {format_name!r})")
        stream = container.streams.audio[0]
        if not stream.codec_context or stream.codec_context.name is None:
            raise AudioProbeError("the audio codec is not supported")
        sample_rate = int(stream.codec_context.sample_rate or 0)
        channels = int(getattr(stream.codec_context, "channels", 0) or 0)
        if not 1000 <= sample_rate <= 768_000:
            raise AudioProbeError(f"implausible sample rate {sample_rate}")
        # Decode the first frames: a header that lies, or garbage after one, fails here.
        decoded_samples = 0
        last_end = 0.0
        try:
            for packet in container.demux(stream):
                if packet.pts is not None and packet.time_base is not None:
                    end = float((packet.pts + (packet.duration or 0)) * packet.time_base)
                    last_end = max(last_end, end)
                if decoded_samples < sample_rate:  # one second is enough to prove decodability
                    for frame in packet.decode():
                        decoded_samples += frame.samples
        except av.FFmpegError as exc:
            if decoded_samples == 0:
                raise AudioProbeError(f"the audio could not be decoded ({exc.__class__.__name__})") from exc
            # Truncated tail after good audio: keep what decodes; Whisper reads the same.
            logger.info("Audio %s is truncated after %.1fs: %s", path, last_end, exc)
        if decoded_samples == 0:
            raise AudioProbeError("the file contains no audio samples")
        # Demuxed packet times are the truth; headers (e.g. a WAV data size) can lie.
        duration = last_end
        if duration <= 0 and container.duration:
            duration = container.duration / 1_000_000
        return AudioInfo(
            format_name=format_name,
            extension=FORMAT_EXTENSIONS.get(format_name, format_name.split(",")[0][:8]),
            duration=round(duration, 3),
            sample_rate=sample_rate,
            channels=channels,
            codec=stream.codec_context.name,
        )

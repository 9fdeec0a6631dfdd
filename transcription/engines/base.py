"""The transcription engine interface and its result types.

Engines know no ORM: they get an `AudioRef` (where the audio lives) and return plain,
JSON-serialisable handles and frozen dataclasses. The job row stores the handle between
`start` and `poll`, so any worker can continue a job.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol


class EngineError(Exception):
    """An engine failed. `permanent` says whether retrying could help."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    text: str

    def to_dict(self) -> dict[str, Any]:
        return {"start": round(self.start, 3), "end": round(self.end, 3), "text": self.text}


@dataclass(frozen=True)
class Transcript:
    language: str
    segments: tuple[Segment, ...]
    duration: float = 0.0
    language_probability: float | None = None
    engine: str = ""
    model: str = ""

    @property
    def text(self) -> str:
        return " ".join(seg.text.strip() for seg in self.segments if seg.text.strip())

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["segments"] = [seg.to_dict() for seg in self.segments]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Transcript:
        segments = tuple(
            Segment(start=float(s["start"]), end=float(s["end"]), text=str(s["text"])) for s in data.get("segments", [])
        )
        return cls(
            language=data.get("language") or "",
            segments=segments,
            duration=float(data.get("duration") or 0.0),
            language_probability=data.get("language_probability"),
            engine=data.get("engine", ""),
            model=data.get("model", ""),
        )


@dataclass(frozen=True)
class Pending:
    """The engine has not finished; poll again after `retry_after` seconds."""

    retry_after: float = 15.0
    detail: str = ""


@dataclass(frozen=True)
class AudioRef:
    """Where a recording's audio is: a storage key, and a local path or an s3:// URI."""

    key: str
    local_path: str | None = None
    uri: str | None = None
    content_type: str = ""
    duration: float | None = None


@dataclass(frozen=True)
class TranscribeOptions:
    job_name: str
    language: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class TranscriptionEngine(Protocol):
    name: str
    # Whether `start` needs the audio as a local file (True) or a storage URI (False).
    needs_local_file: bool

    def warm_up(self) -> None:
        """Load models or clients; called once per worker process, after the fork."""

    def start(self, audio: AudioRef, options: TranscribeOptions) -> dict[str, Any]:
        """Start transcribing and return a JSON-serialisable handle for `poll`."""

    def poll(self, handle: dict[str, Any]) -> Transcript | Pending:
        """Return the transcript, or Pending; raise EngineError on failure."""

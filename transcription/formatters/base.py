"""The diary formatter interface: a transcript in, an EntryDraft out."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from transcription.engines.base import Transcript


@dataclass(frozen=True)
class EntryDraft:
    title: str
    paragraphs: tuple[str, ...]
    summary: str
    mood_label: str  # "positive" | "neutral" | "negative" | "mixed"
    mood_score: float  # -1.0 … 1.0
    tags: tuple[str, ...]
    language: str
    formatter: str
    usage: dict[str, Any] = field(default_factory=dict)

    @property
    def body(self) -> str:
        return "\n\n".join(self.paragraphs)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["paragraphs"] = list(self.paragraphs)
        data["tags"] = list(self.tags)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EntryDraft:
        return cls(
            title=data["title"],
            paragraphs=tuple(data["paragraphs"]),
            summary=data["summary"],
            mood_label=data["mood_label"],
            mood_score=float(data["mood_score"]),
            tags=tuple(data["tags"]),
            language=data.get("language", ""),
            formatter=data.get("formatter", ""),
            usage=dict(data.get("usage") or {}),
        )


class DiaryFormatter(Protocol):
    name: str

    def format(self, transcript: Transcript) -> EntryDraft:
        """Turn a transcript into a diary entry draft. Never invents words."""

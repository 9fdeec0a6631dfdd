"""Engines and formatters by short name, imported only when chosen."""

from __future__ import annotations

import importlib
import threading
from typing import Any

from transcription.engines.base import EngineError, TranscriptionEngine
from transcription.formatters.base import DiaryFormatter

ENGINES = {
    "whisper": "transcription.engines.whisper.WhisperEngine",
    "aws": "transcription.engines.aws.AwsTranscribeEngine",
    "openai": "transcription.engines.openai_engine.OpenAITranscriptionEngine",
}
FORMATTERS = {
    "rules": "transcription.formatters.rules.RulesFormatter",
    "openai": "transcription.formatters.llm.OpenAIFormatter",
}

_instances: dict[tuple[str, str], Any] = {}
_lock = threading.Lock()


def _load(kind: str, table: dict[str, str], name: str) -> Any:
    with _lock:
        if (kind, name) not in _instances:
            if name not in table:
                raise EngineError(f"Unknown {kind} {name!r}; choose one of {', '.join(sorted(table))}", permanent=True)
            module_name, class_name = table[name].rsplit(".", 1)
            cls = getattr(importlib.import_module(module_name), class_name)
            _instances[(kind, name)] = cls.from_settings() if hasattr(cls, "from_settings") else cls()
        return _instances[(kind, name)]


def get_engine(name: str) -> TranscriptionEngine:
    return _load("engine", ENGINES, name)


def get_formatter(name: str) -> DiaryFormatter:
    return _load("formatter", FORMATTERS, name)


def reset() -> None:
    """Forget constructed engines (tests change settings)."""
    with _lock:
        _instances.clear()

"""A scriptable engine for fast tests of the chain (the real model is used in the e2e tests)."""

from __future__ import annotations

from typing import Any

from transcription.engines.base import AudioRef, EngineError, Pending, Segment, TranscribeOptions, Transcript


class FakeEngine:
    name = "fake"
    needs_local_file = True
    # Class-level script so a test can steer the instance the registry builds.
    script: list[Any] = []
    starts: list[str] = []
    segments = (
        Segment(0.0, 3.0, "Today I went for a long walk in the park."),
        Segment(6.0, 9.0, "I felt calm and happy afterwards."),
    )

    def warm_up(self) -> None:
        pass

    def start(self, audio: AudioRef, options: TranscribeOptions) -> dict[str, Any]:
        assert audio.local_path, "the fake engine, like whisper, reads a local file"
        FakeEngine.starts.append(options.job_name)
        if FakeEngine.script:
            step = FakeEngine.script.pop(0)
            if isinstance(step, Exception):
                raise step
        return {"job_name": options.job_name, "polls": 0}

    def poll(self, handle: dict[str, Any]) -> Transcript | Pending:
        if FakeEngine.script:
            step = FakeEngine.script.pop(0)
            if isinstance(step, (Exception, EngineError)):
                raise step
            if isinstance(step, Pending):
                return step
        return Transcript(language="en", segments=self.segments, duration=9.0, engine="fake", model="fake")

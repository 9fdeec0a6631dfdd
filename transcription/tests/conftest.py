import pytest

from transcription.engines import registry
from transcription.tests.fakes import FakeEngine


@pytest.fixture
def fake_engine(monkeypatch, settings):
    """Route jobs to the scriptable fake engine (by dotted path, as real engines are)."""
    monkeypatch.setitem(registry.ENGINES, "fake", "transcription.tests.fakes.FakeEngine")
    settings.TRANSCRIPTION_ENGINE = "fake"
    FakeEngine.script = []
    FakeEngine.starts = []
    yield FakeEngine
    FakeEngine.script = []


# Shared real-HTTP fixtures: moto in server mode and a fake OpenAI-compatible server.
from transcription.tests.fake_openai_server import fake_openai  # noqa: E402, F401
from transcription.tests.moto_server import moto_server_url  # noqa: E402, F401

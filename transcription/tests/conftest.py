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

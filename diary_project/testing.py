"""Loaded by pytest (`-p diary_project.testing`) before Django's settings are read.

Each test session gets its own data directory (database file, media, broker folder), so
tests never touch a developer's `var/` and the real Celery workers a test starts can
share the same SQLite file and broker folder through the environment.
"""

from __future__ import annotations

import os
import tempfile

if "DIARY_DATA_DIR" not in os.environ or os.environ.get("DIARY_TEST_KEEP_DATA_DIR") != "1":
    os.environ["DIARY_DATA_DIR"] = tempfile.mkdtemp(prefix="diary-test-")
# The bundled model is assembled once per machine, not once per test session.
os.environ.setdefault("WHISPER_MODEL_CACHE", os.path.join(os.path.dirname(os.path.dirname(__file__)), "var", "models"))
# Tests run Celery workers explicitly; the web side only publishes.
os.environ.setdefault("ENGINE_PRELOAD", "1")

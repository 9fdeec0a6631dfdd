"""Audio encryption at rest for local storage: AES-256-GCM in 1 MiB chunks, streamed both ways.

File layout: MAGIC, an 8-byte random file nonce, then per chunk a 4-byte length and the
ciphertext. Chunk i is sealed with nonce = file nonce + i and associated data that says
whether it is the last chunk, so reordering, truncation and tampering all fail to decrypt.
A 500 MB upload never sits in memory, and FileResponse streams the decrypted audio.
"""

from __future__ import annotations

import base64
import io
import os
import struct
from collections.abc import Iterator

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.files import File
from django.core.files.storage import FileSystemStorage
from django.utils.deconstruct import deconstructible

MAGIC = b"ADIARYE1"
CHUNK = 1024 * 1024


class DecryptionError(Exception):
    pass


def load_key(value: str) -> bytes:
    try:
        key = base64.urlsafe_b64decode(value.encode() + b"=" * (-len(value) % 4))
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured("AUDIO_ENCRYPTION_KEY must be 32 bytes, base64-encoded") from exc
    if len(key) != 32:
        raise ImproperlyConfigured("AUDIO_ENCRYPTION_KEY must be 32 bytes, base64-encoded")
    return key


def _aad(index: int, last: bool) -> bytes:
    return MAGIC + struct.pack(">I?", index, last)


def encrypt_stream(key: bytes, chunks: Iterator[bytes]) -> Iterator[bytes]:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    aead = AESGCM(key)
    file_nonce = os.urandom(8)
    yield MAGIC + file_nonce
    buffer = b""
    index = 0
    pending: bytes | None = None
    for piece in chunks:
        buffer += piece
        while len(buffer) >= CHUNK:
            if pending is not None:
                yield _seal(aead, file_nonce, index, pending, last=False)
                index += 1
            pending, buffer = buffer[:CHUNK], buffer[CHUNK:]
    if buffer or pending is None:
        if pending is not None:
            yield _seal(aead, file_nonce, index, pending, last=False)
            index += 1
        pending = buffer
    yield _seal(aead, file_nonce, index, pending, last=True)


def _seal(aead, file_nonce: bytes, index: int, plaintext: bytes, *, last: bool) -> bytes:
    sealed = aead.encrypt(file_nonce + struct.pack(">I", index), plaintext, _aad(index, last))
    return struct.pack(">I", len(sealed)) + sealed


class DecryptingReader(io.RawIOBase):
    """A read-only stream of the plaintext of an encrypted file."""

    def __init__(self, raw, key: bytes) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._raw = raw
        self._aead = AESGCM(key)
        header = raw.read(len(MAGIC) + 8)
        if header[: len(MAGIC)] != MAGIC:
            raise DecryptionError("not an encrypted audio file")
        self._file_nonce = header[len(MAGIC) :]
        self._index = 0
        self._buffer = b""
        self._done = False

    def readable(self) -> bool:
        return True

    def _next_chunk(self) -> None:
        length_bytes = self._raw.read(4)
        if len(length_bytes) != 4:
            raise DecryptionError("encrypted audio is truncated")
        (length,) = struct.unpack(">I", length_bytes)
        sealed = self._raw.read(length)
        nonce = self._file_nonce + struct.pack(">I", self._index)
        from cryptography.exceptions import InvalidTag

        for last in (False, True):
            try:
                plaintext = self._aead.decrypt(nonce, sealed, _aad(self._index, last))
            except InvalidTag:
                continue
            self._buffer += plaintext
            self._index += 1
            self._done = last
            return
        raise DecryptionError("encrypted audio failed authentication (wrong key or tampered file)")

    def readinto(self, target) -> int:
        while not self._buffer and not self._done:
            self._next_chunk()
        size = min(len(target), len(self._buffer))
        target[:size] = self._buffer[:size]
        self._buffer = self._buffer[size:]
        return size

    def close(self) -> None:
        self._raw.close()
        super().close()


class _EncryptingFile(File):
    def __init__(self, source: File, key: bytes) -> None:
        super().__init__(None, name=source.name)
        self._source = source
        self._key = key

    def chunks(self, chunk_size=None):
        self._source.seek(0) if hasattr(self._source, "seek") else None
        return encrypt_stream(self._key, self._source.chunks(CHUNK))


@deconstructible
class EncryptedFileSystemStorage(FileSystemStorage):
    """Local storage that keeps only ciphertext on disk. Its `path()` is the ciphertext's, so
    `serves_plaintext_paths` tells callers (the transcription step) to read through `open()`,
    which decrypts as it streams."""

    serves_plaintext_paths = False

    def __init__(self, *args, key: str | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._key = load_key(key or settings.AUDIO_ENCRYPTION_KEY)

    def _save(self, name, content):
        return super()._save(name, _EncryptingFile(content, self._key))

    def _open(self, name, mode="rb"):
        if "w" in mode or "a" in mode or "+" in mode:
            raise ValueError("encrypted audio is written only through save()")
        raw = open(self.path(name), "rb")  # closed with the reader
        try:
            reader = DecryptingReader(raw, self._key)
        except Exception:
            raw.close()
            raise
        return File(io.BufferedReader(reader, buffer_size=CHUNK), name)

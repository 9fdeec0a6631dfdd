"""Upload handling: refuse oversized bodies before buffering them, stream the rest to disk."""

from __future__ import annotations

from django.conf import settings
from django.core.files.uploadhandler import TemporaryFileUploadHandler


class UploadTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"The upload is larger than the {limit // (1024 * 1024)} MB limit.")
        self.limit = limit


class LimitedTemporaryFileUploadHandler(TemporaryFileUploadHandler):
    """Streams every file to a temporary file and stops as soon as the size limit is passed.

    With a Content-Length the request is refused before any byte is read; without one
    (chunked transfer) it is refused at the first chunk past the limit.
    """

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        self.limit = settings.UPLOAD_MAX_BYTES
        # The multipart envelope adds a little; allow 64 KiB of it.
        if content_length and content_length > self.limit + 64 * 1024:
            raise UploadTooLarge(self.limit)
        self.received = 0
        return None

    def receive_data_chunk(self, raw_data, start):
        self.received += len(raw_data)
        if self.received > self.limit:
            self.file.close()
            raise UploadTooLarge(self.limit)
        return super().receive_data_chunk(raw_data, start)

"""Service errors that the API edge turns into JSON responses."""

from __future__ import annotations


class ApplicationError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, *, status_code: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status_code is not None:
            self.status_code = status_code
        if code is not None:
            self.code = code


class UnsupportedAudio(ApplicationError):
    status_code = 415
    code = "unsupported_audio"


class PayloadTooLarge(ApplicationError):
    status_code = 413
    code = "too_large"


class ServiceUnavailable(ApplicationError):
    status_code = 503
    code = "service_unavailable"

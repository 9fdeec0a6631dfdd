"""WSGI entry point, with support for uploads sent without a Content-Length (chunked)."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "diary_project.settings")


class ChunkedBodyMiddleware:
    """Let Django read request bodies sent with `Transfer-Encoding: chunked`.

    Django reads CONTENT_LENGTH bytes and treats a missing length as an empty body. When the
    server de-chunks the input and marks its end (`wsgi.input_terminated`, set by gunicorn),
    we give Django the upload limit as the length: it reads until the body ends, and the
    upload handler refuses the request at the first chunk past the limit.
    """

    def __init__(self, app) -> None:
        self.app = app

    def __call__(self, environ, start_response):
        if environ.get("wsgi.input_terminated") and not environ.get("CONTENT_LENGTH"):
            from django.conf import settings

            environ["CONTENT_LENGTH"] = str(settings.UPLOAD_MAX_BYTES + 64 * 1024)
        return self.app(environ, start_response)


application = ChunkedBodyMiddleware(get_wsgi_application())

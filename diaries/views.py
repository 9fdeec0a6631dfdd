"""Plain Django views outside the API: the health check, the client's diary page, and the HTTP helpers the
admin shares with them (the client's address, audio with byte ranges, export downloads)."""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Iterator

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.files.storage import default_storage
from django.core.paginator import Paginator
from django.db import connection
from django.http import FileResponse, Http404, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from diaries import selectors, services
from diaries.models import AccessEvent
from diaries.rendering import entries_to_markdown, entries_to_pdf

logger = logging.getLogger(__name__)


@require_GET
def healthz(request):
    """Readiness and liveness: the database answers and storage accepts a write."""
    checks = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:
        logger.error("healthz: database: %s", exc)
        checks["database"] = "error"
    try:
        # A read (HEAD on S3), not a write: probes every few seconds must not pile up objects.
        default_storage.exists("healthz-probe")
        checks["storage"] = "ok"
    except Exception as exc:
        logger.error("healthz: storage: %s", exc)
        checks["storage"] = "error"
    healthy = all(value == "ok" for value in checks.values())
    return JsonResponse({"status": "ok" if healthy else "error", **checks}, status=200 if healthy else 503)


# --- HTTP helpers ------------------------------------------------------------------------------


def client_ip_address(request) -> str | None:
    """The caller's address: the right-most X-Forwarded-For hop added by our own trusted proxies, else REMOTE_ADDR.

    Used by django-axes (AXES_CLIENT_IP_CALLABLE) and the access log. Only hops our proxies appended are
    trusted, so a client cannot pick its address by sending the header itself.
    """
    count = getattr(settings, "AXES_TRUSTED_PROXY_COUNT", 0)
    if count > 0:
        hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
        if len(hops) >= count:
            try:
                return str(ipaddress.ip_address(hops[-count]))
            except ValueError:
                pass
    return request.META.get("REMOTE_ADDR") or None


_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")


def _parse_range(header: str, size: int) -> tuple[int, int] | bool | None:
    """(start, end) inclusive for one satisfiable range; None to send the whole file; False if unsatisfiable."""
    match = _RANGE_RE.match(header.strip())
    if not match or (not match[1] and not match[2]):
        return None  # absent, multi-range or malformed: a full 200 response is always allowed
    if not match[1]:  # "bytes=-N": the last N bytes
        length = int(match[2])
        return (max(0, size - length), size - 1) if length and size else False
    start = int(match[1])
    end = min(int(match[2]), size - 1) if match[2] else size - 1
    if start >= size or end < start:
        return False
    return start, end


def _read_range(handle, start: int, length: int, chunk: int = 256 * 1024) -> Iterator[bytes]:
    if start:
        if handle.seekable():
            handle.seek(start)
        else:  # e.g. audio decrypted as it streams: read up to the start
            skipped = 0
            while skipped < start:
                piece = handle.read(min(chunk, start - skipped))
                if not piece:
                    return
                skipped += len(piece)
    remaining = length
    while remaining > 0:
        piece = handle.read(min(chunk, remaining))
        if not piece:
            return
        remaining -= len(piece)
        yield piece


def audio_response(request, recording) -> HttpResponse:
    """Stream a recording's audio, answering byte ranges: browsers seek (click a line, play from there) only in
    media served that way. `response.from_start` says whether this request starts playback at byte 0."""
    if recording is None or not recording.audio.name or recording.audio_deleted_at:
        raise Http404
    try:
        handle = default_storage.open(recording.audio.name, "rb")
    except FileNotFoundError as exc:
        raise Http404 from exc
    size = recording.size_bytes
    content_type = recording.content_type or "application/octet-stream"
    byte_range = _parse_range(request.headers.get("Range", ""), size)
    if byte_range is False:
        handle.close()
        response = JsonResponse(
            {"error": "range_not_satisfiable", "message": f"The range is outside the audio's {size} bytes."},
            status=416,
        )
        response["Content-Range"] = f"bytes */{size}"
        response.from_start = False
    elif byte_range is None:
        response = FileResponse(handle, content_type=content_type)
        if not response.has_header("Content-Length"):
            response["Content-Length"] = str(size)
        response.from_start = True
    else:
        start, end = byte_range
        response = StreamingHttpResponse(
            _read_range(handle, start, end - start + 1), status=206, content_type=content_type
        )
        response._resource_closers.append(handle.close)
        response["Content-Range"] = f"bytes {start}-{end}/{size}"
        response["Content-Length"] = str(end - start + 1)
        response.from_start = start == 0
    response["Accept-Ranges"] = "bytes"
    response["Cache-Control"] = "private, no-store"
    return response


def entry_audio_response(request, entry, *, detail: str = "") -> HttpResponse:
    """An entry's audio for a player (the admin's, an API client's): ranged, and logged once per playback,
    at the request that starts from byte 0 (a player's later range requests are the same play)."""
    response = audio_response(request, entry.recording)
    if response.from_start:
        services.access_record(
            user=request.user,
            action=AccessEvent.Action.PLAY,
            entries=[entry],
            detail=detail,
            ip_address=client_ip_address(request),
        )
    return response


EXPORT_FORMATS = {"md": "text/markdown; charset=utf-8", "pdf": "application/pdf"}


def export_response(entries, *, fmt: str, title: str, subtitle: str, filename: str) -> HttpResponse:
    """Entries as a Markdown or PDF download."""
    if fmt not in EXPORT_FORMATS:
        raise Http404
    if fmt == "pdf":
        content = entries_to_pdf(entries, title=title, subtitle=subtitle)
    else:
        content = entries_to_markdown(entries, title=title, subtitle=subtitle).encode()
    response = HttpResponse(content, content_type=EXPORT_FORMATS[fmt])
    safe_name = re.sub(r"[^A-Za-z0-9._-]+", "-", filename).strip("-") or "export"
    response["Content-Disposition"] = f'attachment; filename="{safe_name}.{fmt}"'
    response["Cache-Control"] = "private, no-store"
    return response


# --- The client's diary page --------------------------------------------------------------------


@login_required
@require_GET
def diary_home(request):
    """Record or upload an entry, follow its job, read the finished entries newest first (own entries only)."""
    entries = selectors.entry_list(user=request.user)
    page = Paginator(entries, 10).get_page(request.GET.get("page"))
    return render(
        request,
        "diaries/diary.html",
        {"page": page, "entries": page.object_list, "max_upload_mb": settings.UPLOAD_MAX_BYTES // (1024 * 1024)},
    )


@login_required
@require_GET
def diary_entry_card(request, pk: int):
    """One of the user's own entries as the HTML card the diary page shows (fetched when a job finishes)."""
    entry = get_object_or_404(selectors.entries_visible_to(user=request.user), pk=pk)
    return render(request, "diaries/_entry.html", {"entry": entry, "fresh": True})

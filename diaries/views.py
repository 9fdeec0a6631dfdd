"""Plain Django views outside the API: the health check."""

from __future__ import annotations

import logging
import uuid

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.http import require_GET

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
        name = default_storage.save(f"healthz/{uuid.uuid4().hex}", ContentFile(b"ok"))
        default_storage.delete(name)
        checks["storage"] = "ok"
    except Exception as exc:
        logger.error("healthz: storage: %s", exc)
        checks["storage"] = "error"
    healthy = all(value == "ok" for value in checks.values())
    return JsonResponse({"status": "ok" if healthy else "error", **checks}, status=200 if healthy else 503)

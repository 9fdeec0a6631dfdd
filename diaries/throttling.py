"""Rate limits per API key (DRF throttling is fairness, not a security boundary)."""

from __future__ import annotations

from rest_framework.throttling import UserRateThrottle


class ApiKeyRateThrottle(UserRateThrottle):
    """Counts requests per API key (each device its own budget), or per user for sessions."""

    def get_cache_key(self, request, view):
        prefix = getattr(request.auth, "prefix", None)
        if prefix:
            return self.cache_format % {"scope": self.scope, "ident": f"key-{prefix}"}
        return super().get_cache_key(request, view)


class UploadThrottle(ApiKeyRateThrottle):
    scope = "upload"

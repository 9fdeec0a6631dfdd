"""Middleware that must run before Django validates the Host header."""

from __future__ import annotations


class HealthCheckMiddleware:
    """Answer /healthz for any Host: load balancers probe pods by IP, which ALLOWED_HOSTS rightly
    refuses for every other path. The check reveals nothing but ok/error per dependency."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        if request.path == "/healthz" and request.method in ("GET", "HEAD"):
            from diaries.views import healthz

            return healthz(request)
        return self.get_response(request)

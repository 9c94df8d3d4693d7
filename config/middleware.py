"""Project middleware: health checks answered first, no NUL character in a URL, keys kept in reach of redaction."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse

from config.views import HEALTH_VIEWS
from portal.crypto import secrets_scope


class HealthCheckMiddleware:
    """Answer /healthz and /readyz before any other middleware.

    A load balancer or `docker HEALTHCHECK` asks over plain HTTP with the container's address as
    host: the host check (ALLOWED_HOSTS) and SECURE_SSL_REDIRECT would refuse or redirect it, and
    sessions, CSRF and the sign-in lock-out have nothing to do with it. These answers build no URL.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        view = HEALTH_VIEWS.get(request.path_info)
        if view is not None and request.method in ("GET", "HEAD"):
            return view(request)
        return self.get_response(request)


MESSAGE = "The address contains a NUL character (%00), which no name or filter here can hold. Remove it."


class RejectNulCharactersMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        query = request.GET
        if "\x00" in request.path or any("\x00" in k or any("\x00" in v for v in query.getlist(k)) for k in query):
            if request.path.startswith("/api/"):
                return JsonResponse({"detail": MESSAGE}, status=400)
            return HttpResponseBadRequest(MESSAGE, content_type="text/plain; charset=utf-8")
        return self.get_response(request)


class SecretsScopeMiddleware:
    """Every key revealed while a request runs stays known to the error page and the logs until it ends.

    A rendered config outlives the Secret it came from; if the view fails after that, the error
    page (portal.redaction) can still tell the key's text apart and remove it.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        with secrets_scope():
            return self.get_response(request)

"""The 404 and 500 handlers: JSON with a sentence under /api/, a page elsewhere."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


def not_found(request: HttpRequest, exception=None) -> HttpResponse:
    if _is_api(request):
        return JsonResponse(
            {"detail": f"There is nothing at {request.path}. The API is described at /api/v1/schema/."}, status=404
        )
    return render(request, "404.html", status=404)


def server_error(request: HttpRequest) -> HttpResponse:
    if _is_api(request):
        return JsonResponse(
            {"detail": "The portal failed on its side; the error is logged. Try again later."}, status=500
        )
    return render(request, "500.html", status=500)

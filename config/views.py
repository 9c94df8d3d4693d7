"""The 404 and 500 handlers (JSON with a sentence under /api/, a page elsewhere) and the health checks."""

from __future__ import annotations

import logging
import re

from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from portal import audit_chain, crypto

logger = logging.getLogger(__name__)


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


# A 404 may be piped into sh (`curl … | sh`): the path is repeated only when no shell would act on it.
PLAIN_PATH = re.compile(r"[A-Za-z0-9/._-]{1,200}")


def not_found(request: HttpRequest, exception=None) -> HttpResponse:
    if _is_api(request):
        where = request.path if PLAIN_PATH.fullmatch(request.path) else "that address"
        return JsonResponse(
            {"detail": f"There is nothing at {where}. The API is described at /api/v1/schema/."}, status=404
        )
    return render(request, "404.html", status=404)


def server_error(request: HttpRequest) -> HttpResponse:
    if _is_api(request):
        return JsonResponse(
            {"detail": "The portal failed on its side; the error is logged. Try again later."}, status=500
        )
    return render(request, "500.html", status=500)


# --- Health checks for load balancers and orchestrators (answered by HealthCheckMiddleware) ------


def _health_response(body: dict, status: int = 200) -> JsonResponse:
    # Answered before CommonMiddleware, which would add the length: without it HTTP/1.1 falls back to chunks.
    response = JsonResponse(body, status=status, headers={"Cache-Control": "no-store"})
    response["Content-Length"] = str(len(response.content))
    return response


def healthz(request: HttpRequest) -> HttpResponse:
    """Liveness: the process answers. Touches no database, so a slow database never restarts the portal."""
    return _health_response({"status": "ok"})


def _database_ready() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchone() == (1,)
    except DatabaseError:
        logger.exception("readyz: the database is unreachable")
        return False


def _keyring_ready(name: str, get_keyring) -> bool:
    """The keyring parses and its first key seals and opens a probe value."""
    try:
        keyring = get_keyring()
        sealed, _ = keyring.encrypt("readyz", associated_data="readyz")
        return keyring.decrypt(sealed, associated_data="readyz") == "readyz"
    except (ImproperlyConfigured, crypto.DecryptionError):
        logger.exception("readyz: the %s keyring is unusable", name)
        return False


def readyz(request: HttpRequest) -> HttpResponse:
    """Readiness: the database answers and the vault and audit keyrings work; 503 names what does not."""
    checks = {
        "database": "ok" if _database_ready() else "unreachable",
        "vault": "ok" if _keyring_ready("vault", crypto.get_keyring) else "unusable",
        "audit": "ok" if _keyring_ready("audit", audit_chain.get_keyring) else "unusable",
    }
    ready = all(state == "ok" for state in checks.values())
    return _health_response({"status": "ok" if ready else "unavailable", "checks": checks}, 200 if ready else 503)


HEALTH_VIEWS = {"/healthz": healthz, "/readyz": readyz}

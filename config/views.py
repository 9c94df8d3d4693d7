"""The 400, 404 and 500 handlers (JSON with a sentence under /api/, a page elsewhere) and the health checks."""

from __future__ import annotations

import logging
import re

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, TooManyFieldsSent, TooManyFilesSent
from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views import defaults

from alerts.models import Channel
from gateways.models import GatewayKey
from portal import audit_chain, crypto
from portal.models import AuditEvent

logger = logging.getLogger(__name__)


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


# A 404 may be piped into sh (`curl … | sh`): the path is repeated only when no shell would act on it.
PLAIN_PATH = re.compile(r"[A-Za-z0-9/._-]{1,200}")


def bad_request(request: HttpRequest, exception=None) -> HttpResponse:
    """A request Django refuses before any view reads it (too many parameters, a malformed one)."""
    if not _is_api(request):
        return defaults.bad_request(request, exception)
    if isinstance(exception, TooManyFieldsSent):
        detail = (
            f"The request has too many parameters: at most {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS} "
            "query or form fields are read. Send fewer."
        )
    elif isinstance(exception, TooManyFilesSent):
        detail = f"The request has too many files: at most {settings.DATA_UPLOAD_MAX_NUMBER_FILES} are read."
    else:
        detail = "The portal could not read this request; check its address, parameters and headers."
    return JsonResponse({"detail": detail}, status=400)


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


def _holds_stored_keys(name: str, get_keyring, sealed) -> bool:
    """The keyring holds every key the stored rows were sealed or signed with (a restore brought its keys).

    `sealed` is a function returning the querysets for crypto.missing_key_ids: asked only once the database
    answers, and its rows are read by their indexed key-id columns.
    """
    try:
        missing = crypto.missing_key_ids(get_keyring(), *sealed())
    except DatabaseError:
        logger.exception("readyz: the %s keyring's stored key ids could not be read", name)
        return False
    if missing:
        logger.error(
            "readyz: stored rows were made with %s key(s) %s, which the keyring lacks", name, ", ".join(missing)
        )
    return not missing


def _vault_sealed():
    return (GatewayKey.objects.all(), Channel.objects.all())


def _audit_signed():
    # The head is what the next event chains onto; older rows may be signed with retired keys until
    # rotate_audit_key re-signs them, which verify_audit reports.
    head = AuditEvent.objects.order_by("-id")[:1].values("pk")
    return ((AuditEvent.objects.filter(pk__in=head), "signing_key_id"),)


def readyz(request: HttpRequest) -> HttpResponse:
    """Readiness: the database answers and the vault and audit keyrings work (they parse, seal, and hold the
    keys the stored secrets and the chain's head were made with); 503 names what does not."""
    database = _database_ready()
    checks = {
        "database": "ok" if database else "unreachable",
        "vault": "ok"
        if _keyring_ready("vault", crypto.get_keyring)
        and (not database or _holds_stored_keys("vault", crypto.get_keyring, _vault_sealed))
        else "unusable",
        "audit": "ok"
        if _keyring_ready("audit", audit_chain.get_keyring)
        and (not database or _holds_stored_keys("audit", audit_chain.get_keyring, _audit_signed))
        else "unusable",
    }
    ready = all(state == "ok" for state in checks.values())
    return _health_response({"status": "ok" if ready else "unavailable", "checks": checks}, 200 if ready else 503)


HEALTH_VIEWS = {"/healthz": healthz, "/readyz": readyz}

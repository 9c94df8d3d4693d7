"""The 400, 404, 500 and CSRF-failure handlers (JSON with a sentence under /api/, a page elsewhere) and the health
checks."""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path

from django.conf import settings
from django.contrib.staticfiles.storage import ManifestFilesMixin, staticfiles_storage
from django.core.exceptions import ImproperlyConfigured, TooManyFieldsSent, TooManyFilesSent
from django.db import DatabaseError, InterfaceError, OperationalError, connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import REASON_BAD_ORIGIN, REASON_NO_CSRF_COOKIE
from django.shortcuts import render
from django.template import loader
from django.utils.log import log_response
from django.views import defaults

from alerts.models import Channel
from gateways.models import GatewayKey
from portal import audit_chain, crypto, outages
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


# Why Django's CSRF check refused a form, for the person who sent it; any other reason is a form opened too long ago.
CSRF_REFUSALS = {
    REASON_NO_CSRF_COOKIE: (
        "Your browser sent this form without the portal's cookie, so it was not sent. Allow cookies for this site, "
        "then reload the page and fill it in again."
    ),
    REASON_BAD_ORIGIN.split("%s")[0]: (
        "This form was sent from an address other than the one the portal knows as its own, so it was not sent. "
        "Open the portal at its own address and fill the form in again; behind a proxy, staff set "
        "CSRF_TRUSTED_ORIGINS to that address."
    ),
}
CSRF_STALE_FORM = (
    "This form was opened before you signed in again (or its page is too old), so it was not sent. "
    "Reload the page and fill it in again."
)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """CSRF_FAILURE_VIEW: the portal's page with what to do, instead of Django's bare "CSRF verification failed".

    The API's own views answer a session's write without its token themselves (DRF: 403, "CSRF Failed: …");
    anything else under /api/ answers the same way.
    """
    if _is_api(request):
        return JsonResponse({"detail": f"CSRF Failed: {reason}"}, status=403)
    sentence = next((text for start, text in CSRF_REFUSALS.items() if reason.startswith(start)), CSRF_STALE_FORM)
    return render(request, "403_csrf.html", {"sentence": sentence}, status=403)


DATABASE_DOWN = "The portal cannot reach its database right now; the error is logged. Try again in a minute."


def static_not_collected() -> str | None:
    """Why no page can render when the manifest storage is in use and collectstatic never ran, else None.

    With DEBUG off every page's stylesheet link is looked up in STATIC_ROOT/staticfiles.json; without it
    each page fails with "Missing staticfiles manifest entry", which does not say what to run.
    """
    if not isinstance(staticfiles_storage, ManifestFilesMixin):
        return None
    root = Path(settings.STATIC_ROOT)
    if (root / staticfiles_storage.manifest_name).is_file():
        return None
    return f"Static files are not collected in STATIC_ROOT ({root}): run `manage.py collectstatic --noinput`."


def _error_page(template: str, status: int) -> HttpResponse:
    """An error page that needs nothing that may be what failed: no user, no session, no static files."""
    return HttpResponse(loader.render_to_string(template), status=status)


def server_error(request: HttpRequest) -> HttpResponse:
    """Django calls this inside its `except`: a database outage, raised by a view or a middleware, is a 503."""
    exc = sys.exc_info()[1]
    response: HttpResponse
    if isinstance(exc, (OperationalError, InterfaceError)):
        logger.error(
            "The database at %s cannot be used: %s", outages.database_place(), outages.database_error_line(exc)
        )
        if _is_api(request):
            response = JsonResponse({"detail": DATABASE_DOWN}, status=503)
        else:
            response = _error_page("503.html", 503)
        response["Retry-After"] = str(outages.RETRY_AFTER_SECONDS)
    else:
        if (static := static_not_collected()) is not None:
            logger.error(static)
        if _is_api(request):
            response = JsonResponse(
                {"detail": "The portal failed on its side; the error is logged. Try again later."}, status=500
            )
        else:
            response = _error_page("500.html", 500)
    # Django's own line ("Internal Server Error: /path", with the traceback) names no method, and a GET that
    # fails reads differently from a POST that does: the same line on the same logger, with it. Logged here, the
    # response counts as logged, so Django writes no second one.
    log_response(
        "%s: %s %s",
        response.reason_phrase,
        request.method,
        request.path,
        response=response,
        request=request,
        exception=exc,
    )
    return response


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


class NotMigrated(Exception):
    """The database answers but lacks the portal's tables: `migrate` never ran on it, or it is the wrong one."""


def _missing_tables() -> list[str]:
    """The portal's tables the database lacks; asked only once a read of them failed."""
    try:
        present = set(connection.introspection.table_names())
    except DatabaseError:
        return []
    wanted = [model._meta.db_table for model in (GatewayKey, Channel, AuditEvent)]
    return [table for table in wanted if table not in present]


def _holds_stored_keys(name: str, get_keyring, sealed) -> bool:
    """The keyring holds every key the stored rows were sealed or signed with (a restore brought its keys).

    `sealed` is a function returning the querysets for crypto.missing_key_ids: asked only once the database
    answers, and its rows are read by their indexed key-id columns. Raises NotMigrated when their tables are
    missing: the database is to blame then, not the keyring.
    """
    try:
        missing = crypto.missing_key_ids(get_keyring(), *sealed())
    except DatabaseError:
        if tables := _missing_tables():
            logger.error(
                "readyz: the database at %s has no table %s: run `manage.py migrate`, or check that "
                "DATABASE_URL names the portal's database",
                outages.database_place(),
                ", ".join(tables),
            )
            raise NotMigrated from None
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


def _static_ready() -> bool:
    if (static := static_not_collected()) is not None:
        logger.error("readyz: %s", static)
        return False
    return True


def readyz(request: HttpRequest) -> HttpResponse:
    """Readiness: the database answers and holds the portal's tables, the vault and audit keyrings work (they
    parse, seal, and hold the keys the stored secrets and the chain's head were made with) and, with DEBUG off,
    the static files are collected; 503 names what does not."""
    database = "ok" if _database_ready() else "unreachable"
    vault = _keyring_ready("vault", crypto.get_keyring)
    audit = _keyring_ready("audit", audit_chain.get_keyring)
    if database == "ok":
        try:
            vault = vault and _holds_stored_keys("vault", crypto.get_keyring, _vault_sealed)
            audit = audit and _holds_stored_keys("audit", audit_chain.get_keyring, _audit_signed)
        except NotMigrated:
            database = "not migrated"
    checks = {
        "database": database,
        "vault": "ok" if vault else "unusable",
        "audit": "ok" if audit else "unusable",
        "static": "ok" if _static_ready() else "not collected",
    }
    ready = all(state == "ok" for state in checks.values())
    return _health_response({"status": "ok" if ready else "unavailable", "checks": checks}, 200 if ready else 503)


HEALTH_VIEWS = {"/healthz": healthz, "/readyz": readyz}

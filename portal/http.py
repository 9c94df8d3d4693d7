"""The request a signed-in page gets, for type checking (after healthchecks' hc/accounts/http.py), where a page
may send the browser next, and the address a mailed link carries."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import User
from django.http import HttpRequest
from django.utils.http import url_has_allowed_host_and_scheme


def local_path(request: HttpRequest, wanted: str) -> str:
    """`wanted` if it is a path on this site (a `next` the pages pass along), else "".

    Only a path: `redirect()` reads a bare word (`?next=home`, `?next=-1`) as a URL name to reverse.
    """
    if wanted.startswith("/") and url_has_allowed_host_and_scheme(wanted, allowed_hosts={request.get_host()}):
        return wanted
    return ""


def public_url(request: HttpRequest | None, path: str) -> str:
    """`path` at the portal's public address (PORTAL_URL) when it is set, as alert mails have it; else at the address
    the request came in by (or the bare path without a request).

    A link goes to someone else, who may not reach the host name this request used (an internal one a script uses).
    """
    if settings.PORTAL_URL:
        return f"{settings.PORTAL_URL}{path}"
    return request.build_absolute_uri(path) if request is not None else path


class AuthenticatedHttpRequest(HttpRequest):
    """A request behind @login_required: its `user` is a User, never AnonymousUser."""

    user: User

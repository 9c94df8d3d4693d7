"""The request a signed-in page gets, for type checking (after healthchecks' hc/accounts/http.py), and
where a page may send the browser next."""

from __future__ import annotations

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


class AuthenticatedHttpRequest(HttpRequest):
    """A request behind @login_required: its `user` is a User, never AnonymousUser."""

    user: User

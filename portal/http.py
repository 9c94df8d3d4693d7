"""The request a signed-in page gets, for type checking (after healthchecks' hc/accounts/http.py)."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.http import HttpRequest


class AuthenticatedHttpRequest(HttpRequest):
    """A request behind @login_required: its `user` is a User, never AnonymousUser."""

    user: User

"""Sudo mode: a recent password re-entry that sensitive actions ask for, on pages and on the API alike.

A browser session alone is not enough to rotate or revoke a key, or to mint an access token: whoever
sits at an unlocked, signed-in browser could otherwise do it. A bearer token is different: it is
itself the credential, issued in sudo mode and expiring on its own, so token calls are not asked.
"""

from __future__ import annotations

import time
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse

from portal.models import AccessToken

SUDO_SESSION_KEY = "sudo_until"


def in_sudo_mode(request: HttpRequest) -> bool:
    """True while the session's last password confirmation is younger than SUDO_MODE_SECONDS."""
    session = getattr(request, "session", None)
    return session is not None and session.get(SUDO_SESSION_KEY, 0) > time.time()


def enter_sudo_mode(request: HttpRequest) -> None:
    request.session[SUDO_SESSION_KEY] = time.time() + settings.SUDO_MODE_SECONDS


def require_recent_password(request) -> None:
    """Refuse a sensitive API call made with a browser session whose password was not confirmed lately.

    Call it after the permission check, so nobody is asked for a password to learn they may not act.
    """
    if isinstance(getattr(request, "auth", None), AccessToken) or in_sudo_mode(request):
        return
    minutes = max(settings.SUDO_MODE_SECONDS // 60, 1)
    raise PermissionDenied(
        f"This needs your password again: confirm it at {reverse('sudo')} in this browser (it then holds for "
        f"{minutes} minutes) and repeat the request. Scripts use an access token instead."
    )


def sudo_redirect(request: HttpRequest) -> HttpResponse | None:
    """A redirect to the password prompt, or None when sudo mode is on.

    Call it after the permission check, so nobody is asked for a password to learn they may not act.
    """
    if in_sudo_mode(request):
        return None
    # A POST cannot be replayed after the password prompt: return to the page it came from.
    next_url = request.get_full_path() if request.method == "GET" else request.POST.get("next", reverse("home"))
    messages.info(request, "Confirm your password first; then repeat the action.")
    return redirect(f"{reverse('sudo')}?{urlencode({'next': next_url})}")

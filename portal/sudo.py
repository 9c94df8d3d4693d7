"""Sudo mode: ask for the password again before a sensitive action, at most every SUDO_MODE_SECONDS."""

from __future__ import annotations

import time
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse

SUDO_SESSION_KEY = "sudo_until"


def start_sudo(request: HttpRequest) -> None:
    """The password was just confirmed: sensitive actions need no prompt for SUDO_MODE_SECONDS."""
    request.session[SUDO_SESSION_KEY] = time.time() + settings.SUDO_MODE_SECONDS


def sudo_redirect(request: HttpRequest) -> HttpResponse | None:
    """A redirect to the password prompt, or None when sudo mode is on.

    Call it after the permission check, so nobody is asked for a password to learn they may not act.
    """
    if request.session.get(SUDO_SESSION_KEY, 0) > time.time():
        return None
    # A POST cannot be replayed after the password prompt: return to the page it came from.
    next_url = request.get_full_path() if request.method == "GET" else request.POST.get("next", reverse("home"))
    messages.info(request, "Confirm your password first; then repeat the action.")
    return redirect(f"{reverse('sudo')}?{urlencode({'next': next_url})}")

"""Sudo mode: a recent password re-entry that sensitive actions ask for, on pages and on the API alike.

A browser session alone is not enough to rotate or revoke a key, or to mint an access token: whoever
sits at an unlocked, signed-in browser could otherwise do it. A bearer token is different: it is
itself the credential, issued in sudo mode and expiring on its own, so token calls are not asked.
"""

from __future__ import annotations

import secrets
import time
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import authenticate
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse

from portal import two_factor
from portal.http import local_path
from portal.models import AccessToken

SUDO_SESSION_KEY = "sudo_until"
PENDING_SESSION_KEY = "sudo_pending"
# How long an action waits for the password before it must be started again.
PENDING_SECONDS = 5 * 60
# The password field of the prompt when it posts straight to the action it confirms.
SUDO_PASSWORD_FIELD = "sudo_password"
# Fields whose value is a typed secret: a POST that holds one is not carried into the prompt's page.
NEVER_CARRIED = frozenset({"secret", "password"})
# Fields the prompt makes afresh rather than carrying over.
CARRIED_NEVER_AGAIN = frozenset({"csrfmiddlewaretoken", SUDO_PASSWORD_FIELD})
# Said on the prompt when a form held such a secret: nothing of it was kept.
SECRET_NOT_CARRIED = (
    "The secret you typed was not saved: the portal never carries it through this prompt. Confirm your password; "
    "you then return to the form to paste it again."
)


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


def sudo_redirect(request: HttpRequest, *, purpose: str = "") -> HttpResponse | None:
    """The password prompt, or None when sudo mode is on (or the password just came with the request).

    Call it after the permission check, so nobody is asked for a password to learn they may not act.
    A POST is kept as a pending action: the prompt posts the same fields back to the same address
    with the password and a fresh CSRF token, so the action completes without a second click.
    `purpose` names the action on the prompt, e.g. "revoke the key Alice laptop".
    """
    if in_sudo_mode(request):
        return None
    if request.method == "POST" and SUDO_PASSWORD_FIELD in request.POST:
        return _confirm_with_request(request, purpose)
    if request.method == "GET":
        return redirect(f"{reverse('sudo')}?{urlencode({'next': request.get_full_path()})}")
    if NEVER_CARRIED.intersection(request.POST):
        # A typed secret is never written into a page: return to the form (its own address unless it names
        # another), to type it again after the password.
        form_url = request.POST.get("next") or request.path
        messages.warning(request, SECRET_NOT_CARRIED)
        return redirect(f"{reverse('sudo')}?{urlencode({'next': form_url})}")
    next_url = request.POST.get("next") or reverse("home")
    pending_id = secrets.token_urlsafe(12)
    request.session[PENDING_SESSION_KEY] = {
        "id": pending_id,
        "path": request.path,
        "fields": _carried_fields(request),
        "purpose": purpose,
        "until": time.time() + PENDING_SECONDS,
    }
    return redirect(f"{reverse('sudo')}?{urlencode({'next': next_url, 'pending': pending_id})}")


def _carried_fields(request: HttpRequest) -> list[list[str]]:
    skipped = CARRIED_NEVER_AGAIN | NEVER_CARRIED
    return [[name, value] for name, values in request.POST.lists() if name not in skipped for value in values]


def pending_action(request: HttpRequest, pending_id: str) -> dict | None:
    """The POST waiting for the password under `pending_id`, if it is this session's and still fresh."""
    pending = request.session.get(PENDING_SESSION_KEY)
    if not pending or not pending_id or pending.get("id") != pending_id or pending.get("until", 0) < time.time():
        return None
    return pending


def stale_action_sentence(request: HttpRequest, pending_id: str) -> str:
    """Why the prompt opened for `pending_id` holds no action any more; a stale one is dropped here."""
    pending = request.session.get(PENDING_SESSION_KEY) or {}
    minutes = max(PENDING_SECONDS // 60, 1)
    if pending.get("id") != pending_id:
        # Done already, or replaced by a newer action: this session no longer knows which.
        return (
            f"The action you were confirming no longer waits here: it was done already, or waited more than {minutes} "
            "minutes and was not. Check the page, and do it again if it is not done."
        )
    request.session.pop(PENDING_SESSION_KEY, None)
    action = f"The action to {pending['purpose']}" if pending.get("purpose") else "The action you were confirming"
    return f"{action} waited more than {minutes} minutes for your confirmation, so it was not done. Do it again."


def check_password(request: HttpRequest, secret: str) -> bool:
    """Whether `secret` is the signed-in user's password (same backends and lock-out as signing in) or current code.

    A code from the authenticator app confirms it is you as well as the password (and SSO accounts have none).
    """
    if two_factor.check_totp(request.user, secret) is not None:
        return True
    user = authenticate(request, username=request.user.get_username(), password=secret)
    return user is not None and user.pk == request.user.pk


def _confirm_with_request(request: HttpRequest, purpose: str) -> HttpResponse | None:
    if check_password(request, request.POST.get(SUDO_PASSWORD_FIELD, "")):
        enter_sudo_mode(request)
        request.session.pop(PENDING_SESSION_KEY, None)
        return None
    # Wrong: the same prompt again, still carrying the action, with the error.
    context = {
        "action": request.path,
        "fields": _carried_fields(request),
        "purpose": purpose,
        "error": "That password (or code) is not right.",
        "next": local_path(request, request.POST.get("next", "")),
    }
    return render(request, "portal/sudo.html", context, status=400)

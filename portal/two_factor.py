"""Second factor: a TOTP device with one-time recovery codes (django-otp), and the gate that holds back whoever owes one.

A session is "verified" once a code from the user's device was accepted in it (django-otp keeps the device in the
session). Someone with a device must verify before anything else; with REQUIRE_2FA_FOR_ADMINS, staff and team
admins without a device must enrol first. Scripts with an access token are not asked: the token is the credential.
"""

from __future__ import annotations

from urllib.parse import urlencode

import segno
from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.urls import reverse
from django_otp import login as otp_login
from django_otp.models import Device
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from portal import audit
from portal.crypto import remember
from portal.models import Action, Membership, Role

RECOVERY_CODE_COUNT = 10
DEVICE_NAME = "Authenticator app"


def totp_device(user) -> TOTPDevice | None:
    """The user's confirmed authenticator, if they enrolled one."""
    return TOTPDevice.objects.filter(user=user, confirmed=True).first()


def has_second_factor(user) -> bool:
    return TOTPDevice.objects.filter(user=user, confirmed=True).exists()


def is_admin_anywhere(user) -> bool:
    return user.is_staff or Membership.objects.filter(user=user, role=Role.ADMIN).exists()


def must_enrol(user) -> bool:
    """REQUIRE_2FA_FOR_ADMINS: staff and team admins enrol before they may do anything else."""
    return settings.REQUIRE_2FA_FOR_ADMINS and is_admin_anywhere(user) and not has_second_factor(user)


def _clean(code: str) -> str:
    return "".join(code.split()).lower()


def check_totp(user, code: str) -> TOTPDevice | None:
    """The user's authenticator if `code` is its current code (each code works once; failures are throttled)."""
    device = totp_device(user)
    code = _clean(code)
    if device is None or not code.isdigit():
        return None
    with transaction.atomic():
        device = TOTPDevice.objects.select_for_update().get(pk=device.pk)
        return device if device.verify_token(code) else None


def check_code(user, code: str) -> Device | None:
    """The device that accepts `code`: the authenticator's current code, or one unused recovery code."""
    if device := check_totp(user, code):
        return device
    code = _clean(code)
    for static in StaticDevice.objects.filter(user=user, confirmed=True):
        with transaction.atomic():
            static = StaticDevice.objects.select_for_update().get(pk=static.pk)
            if static.verify_token(code):  # deletes the code it accepts
                return static
    return None


def verify_session(request: HttpRequest, code: str) -> bool:
    """Accept a second-factor code for this session; a wrong one is in the audit trail."""
    device = check_code(request.user, code)
    if device is None:
        audit.record(Action.TWO_FACTOR_FAILED, actor=request.user, request=request)
        return False
    otp_login(request, device)
    return True


def start_enrolment(user) -> TOTPDevice:
    """An unconfirmed authenticator to show as a QR code; the same one until it is confirmed."""
    device = TOTPDevice.objects.filter(user=user, confirmed=False).first()
    device = device or TOTPDevice.objects.create(user=user, name=DEVICE_NAME, confirmed=False)
    remember(device.key)  # the page shows it (QR code, base32): it is in reach of the redaction, as hex and base32
    remember(secret_for_typing(device).replace(" ", ""))
    return device


def _new_recovery_codes(user) -> list[str]:
    StaticDevice.objects.filter(user=user).delete()
    device = StaticDevice.objects.create(user=user, name="Recovery codes", confirmed=True)
    codes = [StaticToken.random_token() for _ in range(RECOVERY_CODE_COUNT)]
    for code in codes:
        remember(code)
    StaticToken.objects.bulk_create([StaticToken(device=device, token=code) for code in codes])
    return codes


@transaction.atomic
def confirm_enrolment(*, request: HttpRequest, device: TOTPDevice, code: str) -> list[str] | None:
    """Confirm the new authenticator with its first code; returns the recovery codes (shown once), or None."""
    device = TOTPDevice.objects.select_for_update().filter(pk=device.pk, user=request.user, confirmed=False).first()
    if device is None or not _clean(code).isdigit() or not device.verify_token(_clean(code)):
        return None
    TOTPDevice.objects.filter(user=request.user).exclude(pk=device.pk).delete()
    device.confirmed = True
    device.save(update_fields=["confirmed"])
    codes = _new_recovery_codes(request.user)
    otp_login(request, device)
    audit.record(Action.TWO_FACTOR_ENABLED, actor=request.user, request=request, target=request.user.get_username())
    return codes


@transaction.atomic
def renew_recovery_codes(*, request: HttpRequest) -> list[str]:
    codes = _new_recovery_codes(request.user)
    audit.record(Action.RECOVERY_CODES_RENEWED, actor=request.user, request=request, target=request.user.get_username())
    return codes


@transaction.atomic
def remove_second_factor(*, user, actor, request: HttpRequest | None = None) -> bool:
    """Remove the user's authenticator and recovery codes; False when there was none."""
    removed, _ = TOTPDevice.objects.filter(user=user).delete()
    StaticDevice.objects.filter(user=user).delete()
    if removed:
        audit.record(Action.TWO_FACTOR_DISABLED, actor=actor, request=request, target=user.get_username())
    return bool(removed)


def qr_code_data_uri(device: TOTPDevice) -> str:
    """The otpauth:// address as an SVG QR code in a data: URI (the page's CSP allows data: images only)."""
    return segno.make(device.config_url, error="m").svg_data_uri(scale=5, border=2)


def secret_for_typing(device: TOTPDevice) -> str:
    """The key in base32, in groups of four, for apps that cannot scan."""
    from base64 import b32encode

    text = b32encode(device.bin_key).decode().rstrip("=")
    return " ".join(text[i : i + 4] for i in range(0, len(text), 4))


def _owed_step(user) -> str | None:
    """Which page the user must pass first: "verify" (has a device), "enrol" (required), or None."""
    if not user.is_authenticated or user.is_verified():
        return None
    if has_second_factor(user):
        return "two-factor-verify"
    if must_enrol(user):
        return "two-factor-enrol"
    return None


# Besides static files, a user who still owes a second factor may open the page of the step owed
# and sign out; nothing else. Not the enrol page when the step is verify: a session that knows only
# the password (confirming it again is no obstacle) must not replace the authenticator it owes a code from.
OPEN_URL_NAMES = ("logout",)
OWED = {
    "two-factor-verify": "Enter the code from your authenticator app first, at {url}.",
    "two-factor-enrol": "Your role needs two-factor authentication: enrol an authenticator app at {url} first.",
}


class TwoFactorMiddleware:
    """Hold back a signed-in user who owes a second factor: pages redirect to the step, the API answers 403."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith(settings.STATIC_URL if settings.STATIC_URL.startswith("/") else "/static/"):
            return self.get_response(request)
        step = _owed_step(request.user)
        if step is None or request.path in {reverse(name) for name in (step, *OPEN_URL_NAMES)}:
            return self.get_response(request)
        url = reverse(step)
        if request.path.startswith("/api/"):
            return JsonResponse({"detail": OWED[step].format(url=url)}, status=403)
        return redirect(f"{url}?{urlencode({'next': request.get_full_path()})}")

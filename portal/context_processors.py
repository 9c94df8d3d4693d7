"""What every page needs to know about sign-in: whether SSO is offered, and whether passwords are."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def accounts(request: HttpRequest) -> dict:
    return {
        "sso_enabled": bool(settings.OIDC_ISSUER),
        "oidc_only": settings.OIDC_ONLY,
        "mail_configured": settings.EMAIL_CONFIGURED,
    }

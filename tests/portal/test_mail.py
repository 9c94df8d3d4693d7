"""EMAIL_URL: one variable for the SMTP client, read into Django's EMAIL_* settings."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from config.settings import parse_email_url


@pytest.mark.parametrize(
    "url, expected",
    [
        (
            "smtp://mailer:p%40ss%2Fword@mail.example.com:587?tls=true",
            {
                "EMAIL_HOST": "mail.example.com",
                "EMAIL_PORT": 587,
                "EMAIL_HOST_USER": "mailer",
                "EMAIL_HOST_PASSWORD": "p@ss/word",
                "EMAIL_USE_TLS": True,
                "EMAIL_USE_SSL": False,
            },
        ),
        ("smtps://mail.example.com", {"EMAIL_PORT": 465, "EMAIL_USE_SSL": True, "EMAIL_USE_TLS": False}),
        ("smtp://relay.internal", {"EMAIL_PORT": 25, "EMAIL_USE_TLS": False, "EMAIL_HOST_USER": ""}),
        ("submission://u:p@mail.example.com", {"EMAIL_PORT": 587, "EMAIL_USE_TLS": True}),
        ("console://", {"EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend"}),
    ],
)
def test_email_url_becomes_djangos_settings(url, expected):
    settings = parse_email_url(url)
    assert {k: settings[k] for k in expected} == expected


@pytest.mark.parametrize("url", ["ftp://mail.example.com", "smtp://", "smtp://mail.example.com:port"])
def test_a_bad_email_url_stops_start_up_with_a_sentence(url):
    with pytest.raises(ImproperlyConfigured, match="EMAIL_URL"):
        parse_email_url(url)


def test_a_mail_server_that_fails_does_not_fail_the_invitation(api, alice, settings):
    from tests.smtp_server import free_port

    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_CONFIGURED = "127.0.0.1", free_port(), True
    response = api(alice).post("/api/v1/teams/web/invitations/", {"email": "nia@example.com"}, format="json")
    assert response.status_code == 201
    assert response.json()["emailed"] is False and response.json()["accept_url"]

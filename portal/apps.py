from __future__ import annotations

from django.apps import AppConfig


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = "Portal"

    def ready(self) -> None:
        from portal import audit_chain, crypto, redaction, signals  # noqa: F401  (connects the sign-in audit hooks)

        # Log records made while a key is in reach carry stars in its place, whatever handler reads them.
        redaction.install_log_redaction()

        # Fail at start-up, with a sentence, rather than at the first key a user stores.
        crypto.get_keyring()
        audit_chain.get_keyring()

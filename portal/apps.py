from __future__ import annotations

from django.apps import AppConfig


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = "Portal"

    def ready(self) -> None:
        from portal import audit_chain, crypto, signals  # noqa: F401  (connects the sign-in audit hooks)

        # Fail at start-up, with a sentence, rather than at the first key a user stores.
        crypto.get_keyring()
        audit_chain.get_keyring()

from __future__ import annotations

from django.apps import AppConfig


class GatewaysConfig(AppConfig):
    name = "gateways"
    verbose_name = "Gateways"

    def ready(self) -> None:
        from gateways import signals  # noqa: F401  (takes back a leaving member's key assignments)

"""Admin pages: channels are added and removed through the team page or the API (their rules and audit), only looked at here."""

from __future__ import annotations

from django.contrib import admin

from alerts.models import Channel, Delivery
from portal.admin import LookOnly


class LookOnlyAdmin(LookOnly, admin.ModelAdmin):
    # A Slack URL is a credential and a webhook's secret is sealed: both shown as display_target / not at all.
    hidden = ("secret_ciphertext", "target")

    def get_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields if f.name not in self.hidden] + ["display_target"]

    def get_readonly_fields(self, request, obj=None):
        return self.get_fields(request, obj)


@admin.register(Channel)
class ChannelAdmin(LookOnlyAdmin):
    list_display = ["team", "kind", "display_target", "has_secret", "enabled", "created_at"]
    list_filter = ["kind", "enabled"]
    list_select_related = ["team"]


@admin.register(Delivery)
class DeliveryAdmin(LookOnlyAdmin):
    list_display = ["created_at", "notification", "kind", "display_target", "status", "attempts", "next_attempt_at"]
    list_filter = ["status", "kind"]
    list_select_related = ["notification"]

"""Admin pages. A key's secret is never displayed: only its masked form and fingerprint."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db import models
from django.http import HttpRequest

from gateways import devices, services
from gateways.forms import GatewayAdminForm
from gateways.models import GATEWAY_FIELDS, KEY_SETTING_FIELDS, Assignment, Device, Gateway, GatewayKey, ProbeResult
from gateways.rules import EXTRA_ENV_HELP
from portal.admin import LookOnly
from portal.errors import RuleError, add_to_form


@admin.register(Gateway)
class GatewayAdmin(admin.ModelAdmin):
    """Gateway.clean() applies the rules of the API and the web form (gateways.rules) to every save here,
    and the save goes through the same services: audited, and a changed base URL makes the keys' earlier
    downloads stale and their next probe look at the new address's headers again. The form carries the
    gateway's updated_at, so a form opened before another change cannot put the old values back."""

    form = GatewayAdminForm
    list_display = ["name", "slug", "base_url", "auth_scheme", "model_id_style", "is_preset"]
    search_fields = ["name__ucontains", "slug"]  # names in any case, in every alphabet (portal.ordering)
    readonly_fields = ["is_preset", "created_at", "updated_at"]
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}  # like the portal's own gateway form
    help_texts = {
        "extra_env": EXTRA_ENV_HELP,
        "troubleshooting": 'A JSON list of [symptom, fix] pairs, like [["401", "Check the key"]].',
    }

    def get_form(
        self, request: HttpRequest, obj: Gateway | None = None, change: bool = False, **kwargs: Any
    ) -> type[forms.ModelForm[Gateway]]:
        return super().get_form(request, obj, change=change, help_texts=self.help_texts, **kwargs)

    def get_readonly_fields(self, request: HttpRequest, obj: Gateway | None = None) -> list[str]:
        # The slug names the gateway in keys, downloaded file names and audit rows: set once, when added.
        return [*self.readonly_fields, "slug"] if obj else list(self.readonly_fields)

    def has_delete_permission(self, request: HttpRequest, obj: Gateway | None = None) -> bool:
        """Never here: a deletion would leave no audit row (every other gateway change has one), a preset
        such as TokenBay would be gone for good (only a migration adds presets), and the API has no DELETE
        for gateways either. Its probes would go with it, and its audit rows would name a slug no longer
        in the catalogue."""
        return False

    def save_model(self, request: HttpRequest, obj: Gateway, form: forms.ModelForm, change: bool) -> None:
        fields = {name: getattr(obj, name) for name in GATEWAY_FIELDS}  # as Gateway.clean() left them
        if change:
            changes = {name: value for name, value in fields.items() if name in form.changed_data}
            services.update_gateway(
                gateway=Gateway.objects.get(pk=obj.pk), changes=changes, actor=request.user, request=request
            )
        else:
            obj.pk = services.create_gateway(slug=obj.slug, actor=request.user, request=request, **fields)[0].pk


class AssignmentInline(LookOnly, admin.TabularInline):
    """Who holds the key, to read: assigning and taking back go through the key's page or the API, which
    check team membership, audit the change and tell the team's admins when someone assigns themselves."""

    model = Assignment
    fields = ["user", "created_at", "last_download_at", "last_download_format"]

    def get_queryset(self, request):
        # Each row shows its user, and names itself by key label and user: read with it, not a query per row.
        return super().get_queryset(request).select_related("user", "key")


class GatewayKeySettingsForm(forms.ModelForm):
    """The admin's key form, refusing what the key's page refuses before the service is asked to save.

    It posts back what it showed (hidden initial values), so `changed_data`, which the save hands the service,
    holds what was changed on this page, not what someone else saved since it was opened.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for name in KEY_SETTING_FIELDS:  # the key's settings, never its secret (which this form does not hold)
            if name in self.fields:
                self.fields[name].show_hidden_initial = True

    def clean(self) -> dict[str, Any]:
        super().clean()
        label = self.cleaned_data.get("label")
        if label and "label" in self.changed_data:
            try:
                services._refuse_shared_label(self.instance.team, label, exclude=self.instance)
            except RuleError as exc:
                add_to_form(self, exc)
        return self.cleaned_data


@admin.register(GatewayKey)
class GatewayKeyAdmin(admin.ModelAdmin):
    """A key's settings, saved through the same service as the key's page: checked by the same rules, audited
    (`key.updated`), and making earlier downloads stale. Its secret and its state are not changed here.

    Secrets are stored, and keys enabled, disabled and revoked, through the portal's own pages or API:
    revoking there destroys the secret and is audited, which a date typed in here would do neither of.
    A revoked key is only looked at: the service changes it no more.
    """

    form = GatewayKeySettingsForm
    list_display = ["label", "team", "gateway", "masked", "short_fingerprint", "state", "expires_at"]
    list_filter = ["gateway", "is_enabled"]
    search_fields = ["label__ucontains", "team__slug", "fingerprint"]
    list_select_related = ["team", "gateway"]
    exclude = ["secret_ciphertext"]
    inlines = [AssignmentInline]

    def get_readonly_fields(self, request, obj=None):
        editable = {*KEY_SETTING_FIELDS, "secret_ciphertext"}  # the ciphertext is excluded from the form
        return [f.name for f in self.model._meta.fields if f.name not in editable]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return super().has_change_permission(request, obj) and not (obj and obj.revoked_at)

    def has_delete_permission(self, request, obj=None):
        return False  # a key is revoked, never deleted: its assignments, devices and probes stay on record

    def save_model(self, request: HttpRequest, obj: GatewayKey, form: forms.ModelForm, change: bool) -> None:
        # The values as GatewayKey.clean() left them; the service writes the row and its audit event.
        changes = {name: getattr(obj, name) for name in KEY_SETTING_FIELDS if name in form.changed_data}
        services.update_key_settings(
            key=GatewayKey.objects.get(pk=obj.pk), changes=changes, actor=request.user, request=request
        )


@admin.register(ProbeResult)
class ProbeResultAdmin(admin.ModelAdmin):
    list_display = ["created_at", "key", "gateway", "verdict", "status_code", "latency_ms"]
    list_filter = ["verdict", "gateway"]
    list_select_related = ["key", "gateway"]

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # a probe deleted here would bring an older verdict back, with no audit row


@admin.register(Device)
class DeviceAdmin(admin.ModelAdmin):
    """Read-only apart from removal, which goes through the service (audited); no token or code digest is shown."""

    list_display = ["name", "user", "key", "platform", "state", "installed_at", "last_seen_at", "revoked_at"]
    list_filter = ["platform"]
    search_fields = ["name__ucontains", "user__username__ucontains", "key__label__ucontains"]
    list_select_related = ["user", "key", "key__gateway"]
    fields = [
        "name",
        "platform",
        "user",
        "key",
        "assignment",
        "created_at",
        "install_expires_at",
        "installed_at",
        "last_seen_at",
        "last_seen_ip",
        "claude_version",
        "revoked_at",
        "revoked_by_username",
        "removed_reason",
    ]
    actions = ["remove_devices"]

    def get_readonly_fields(self, request, obj=None):
        return self.fields

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # removing is revoking, so the trail and "removed by" stay: use the action

    @admin.action(description="Remove the selected devices (their next key fetch is refused)")
    def remove_devices(self, request, queryset):
        for device in queryset:
            devices.remove_device(device=device, actor=request.user, request=request)

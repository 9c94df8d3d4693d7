from __future__ import annotations

from django.contrib import admin

from portal.models import AccessToken, AuditEvent, Membership, Team


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "created_at"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "team", "role", "created_at"]
    list_filter = ["role", "team"]
    search_fields = ["user__username", "team__slug"]
    list_select_related = ["user", "team"]


@admin.register(AccessToken)
class AccessTokenAdmin(admin.ModelAdmin):
    """Tokens are issued with `manage.py issue_access_token`; here they can only be seen and revoked."""

    list_display = ["lookup_id", "user", "name", "created_at", "expires_at", "revoked_at", "last_used_at"]
    list_select_related = ["user"]
    fields = ["user", "name", "lookup_id", "created_at", "expires_at", "revoked_at", "last_used_at"]
    readonly_fields = ["user", "lookup_id", "created_at", "last_used_at"]

    def has_add_permission(self, request):
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Read-only: the trail is append-only."""

    list_display = ["created_at", "actor_username", "action", "team_slug", "gateway_slug", "target", "ip_address"]
    list_filter = ["action"]
    search_fields = ["actor_username", "team_slug", "gateway_slug", "target"]
    date_hierarchy = "created_at"
    show_full_result_count = False

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

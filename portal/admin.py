from __future__ import annotations

from django.contrib import admin

from portal.models import AccessToken, AuditChainHead, AuditEvent, Membership, Team
from portal.services import revoke_token


class LookOnly:
    """An admin page to look at, not to change: the portal's pages and API make these changes.

    They go through each app's services, which keep the rules and write the audit row: removing a
    member there also takes back their keys and devices (the apps listening to portal's signals),
    and a team is created with its first admin. A row saved or deleted here would skip all of that.
    """

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class MembershipInline(LookOnly, admin.TabularInline):
    model = Membership
    fields = ["user", "role", "created_at"]


@admin.register(Team)
class TeamAdmin(LookOnly, admin.ModelAdmin):
    list_display = ["name", "slug", "created_at"]
    search_fields = ["name", "slug"]
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(LookOnly, admin.ModelAdmin):
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
    # The expiry is fixed at issue: making a token immortal here would undo ACCESS_TOKEN_DEFAULT_DAYS.
    readonly_fields = ["user", "lookup_id", "created_at", "expires_at", "last_used_at"]

    def has_add_permission(self, request):
        return False

    def save_model(self, request, obj, form, change):
        if "revoked_at" in form.changed_data and obj.revoked_at:
            # Through the service, so the revocation is in the audit trail.
            obj.revoked_at = None
            revoke_token(token=obj, actor=request.user, request=request)
            form.changed_data.remove("revoked_at")
        super().save_model(request, obj, form, change)


@admin.register(AuditChainHead)
class AuditChainHeadAdmin(admin.ModelAdmin):
    """Where the audit chain ends and starts; changed only by the audit writer and prune_audit."""

    list_display = ["last_hash", "anchor_hash"]

    def get_readonly_fields(self, request, obj=None):
        return ["last_hash", "anchor_hash"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
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

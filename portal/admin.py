from __future__ import annotations

from datetime import datetime

from axes.admin import AccessAttemptAdmin, AccessFailureLogAdmin, AccessLogAdmin
from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.conf import settings
from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.models import Group
from django.db import router, transaction
from django.db.models import Sum
from django.urls import reverse
from django.utils.html import format_html
from django_otp.plugins.otp_static.admin import StaticDeviceAdmin
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.admin import TOTPDeviceAdmin
from django_otp.plugins.otp_totp.models import TOTPDevice

from portal import audit, two_factor
from portal.models import AccessToken, Action, AuditChainHead, AuditEvent, Membership, Team
from portal.services import revoke_token

User = get_user_model()


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


def _shown(value):
    """A field's value as the audit row keeps it: JSON, names for related rows, times to the second."""
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")  # as the admin shows it, so a save unchanged changes nothing
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if hasattr(value, "__iter__"):
        return sorted(str(item) for item in value)
    return str(value)


class AuditedUserAdmin(UserAdmin):
    """Django's user admin, with every change in the audit trail in the change's own transaction.

    Adding is `account.created`, a change `account.updated` naming each changed field (from, to), the password
    form `account.password_changed` (never the hash). Deleting is refused: an account's audit rows would
    point at no one. Offboarding on the portal's Users page deactivates it and takes back what it holds.
    """

    OFFBOARD_HINT = (
        "Accounts are not deleted here: the audit trail keeps who did what. To take someone off the portal, "
        '<a href="{}">offboard them</a> (from the <a href="{}">Users</a> page): that deactivates the account and '
        "takes back its memberships, key assignments and access tokens, in one audited event. Unticking "
        "Active here only stops their sign-ins."
    )

    def has_delete_permission(self, request, obj=None):
        return False

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None:
            return fieldsets
        hint = format_html(self.OFFBOARD_HINT, reverse("user-offboard", args=[obj.get_username()]), reverse("users"))
        return [
            (name, {**options, "description": hint}) if "is_active" in options.get("fields", ()) else (name, options)
            for name, options in fieldsets
        ]

    def save_model(self, request, obj, form, change):
        if not change:
            super().save_model(request, obj, form, change)
            audit.record(
                Action.ACCOUNT_CREATED,
                actor=request.user,
                request=request,
                target=obj.get_username(),
                details={"via": "admin"},
            )
            return
        before = User._default_manager.get(pk=obj.pk)
        changed = {}
        for name in form.changed_data:
            if name == "password":
                continue  # read-only here; the password form below records its own row, without the hash
            if User._meta.get_field(name).many_to_many:
                old, new = form.initial.get(name, []), form.cleaned_data[name]
            else:
                old, new = getattr(before, name), getattr(obj, name)
            if _shown(old) != _shown(new):
                changed[name] = {"from": _shown(old), "to": _shown(new)}
        super().save_model(request, obj, form, change)
        if changed:
            audit.record(
                Action.ACCOUNT_UPDATED,
                actor=request.user,
                request=request,
                target=obj.get_username(),
                details={"via": "admin", "changed": changed},
            )

    def user_change_password(self, request, id, form_url=""):
        """Django's password form, audited: the form saves outside any transaction, so this view opens one."""
        with transaction.atomic(using=router.db_for_write(User)):
            user = self.get_object(request, unquote(id))
            before = user.password if user is not None else None
            response = super().user_change_password(request, id, form_url)
            if user is not None:
                user.refresh_from_db(fields=["password"])
                if user.password != before:
                    audit.record(
                        Action.PASSWORD_CHANGED,
                        actor=request.user,
                        request=request,
                        target=user.get_username(),
                        details={"via": "admin", "password_sign_in": user.has_usable_password()},
                    )
        return response


admin.site.unregister(User)
admin.site.register(User, AuditedUserAdmin)
# The portal decides who may do what with is_staff, is_superuser and team roles, never with Django's groups, and a
# group created, renamed or given permissions here would be in no audit row. An account's groups and permissions,
# changed on its own page above, are audited as account.updated.
admin.site.unregister(Group)


class AuditedTOTPDeviceAdmin(LookOnly, TOTPDeviceAdmin):
    """An authenticator, to look at and to remove for someone who lost theirs; removing is audited.

    The portal's account page removes only one's own second factor, so staff remove someone else's here.
    Removing a confirmed authenticator is `remove_second_factor`, as on the account page: its recovery
    codes go with it, and `account.2fa_disabled` names the user. An unconfirmed one (an enrolment never
    finished) is no second factor: it goes alone, recorded as `account.updated`. An authenticator is never
    added or changed here: one whose key an admin typed in would let that admin pass as its user.
    """

    def has_delete_permission(self, request, obj=None):
        return admin.ModelAdmin.has_delete_permission(self, request, obj)

    def delete_model(self, request, obj):
        self._remove(request, obj)

    def delete_queryset(self, request, queryset):
        with transaction.atomic(using=router.db_for_write(TOTPDevice)):
            for device in queryset.select_related("user"):
                self._remove(request, device)

    @staticmethod
    def _remove(request, device: TOTPDevice) -> None:
        if device.confirmed:
            two_factor.remove_second_factor(user=device.user, actor=request.user, request=request)
            return
        with transaction.atomic(using=router.db_for_write(TOTPDevice)):
            if TOTPDevice.objects.filter(pk=device.pk).delete()[0]:
                audit.record(
                    Action.ACCOUNT_UPDATED,
                    actor=request.user,
                    request=request,
                    target=device.user.get_username(),
                    details={"via": "admin", "removed": "an unconfirmed authenticator (an enrolment never finished)"},
                )


class RecoveryCodesAdmin(LookOnly, StaticDeviceAdmin):
    """Recovery codes, to look at (the codes themselves are hidden): they go with their authenticator.

    Their user renews them on the account page (audited); staff remove them by removing the authenticator.
    """

    # Not even the codes' inline, which OTP_ADMIN_HIDE_SENSITIVE_DATA hides on a device's page anyway.
    inlines: list[type[admin.options.InlineModelAdmin]] = []


for _model, _model_admin in ((TOTPDevice, AuditedTOTPDeviceAdmin), (StaticDevice, RecoveryCodesAdmin)):
    admin.site.unregister(_model)  # registered as django-otp ships it when its admin module was imported above
    admin.site.register(_model, _model_admin)


class LockOutAdmin(LookOnly, AccessAttemptAdmin):
    """Failed sign-ins per user name and address (django-axes), to look at; deleting one lifts its lock-out, audited.

    Each row deleted, alone or with "Delete selected", is `account.unlocked` naming the user name tried, the address
    it was tried from, its failed sign-ins and whether they had locked it out; never the form data a try carried.
    django-axes' "clean up expired attempts" is not offered: its handler drops expired attempts itself.
    """

    actions: list[str] = []

    def has_delete_permission(self, request, obj=None):
        return admin.ModelAdmin.has_delete_permission(self, request, obj)

    def delete_model(self, request, obj):
        self.delete_queryset(request, AccessAttempt.objects.filter(pk=obj.pk))

    def delete_queryset(self, request, queryset):
        with transaction.atomic(using=router.db_for_write(AccessAttempt)):
            attempts = list(queryset)
            # Counted before any goes: django-axes adds up a user name's failures from one address over its rows.
            failures = {(a.username, a.ip_address): self._failed_sign_ins(a) for a in attempts}
            for attempt in attempts:
                if AccessAttempt.objects.filter(pk=attempt.pk).delete()[0]:
                    count = failures[(attempt.username, attempt.ip_address)]
                    audit.record(
                        Action.ACCOUNT_UNLOCKED,
                        actor=request.user,
                        request=request,
                        target=attempt.username or "",
                        details={
                            "via": "admin",
                            "ip_address": attempt.ip_address,
                            "failed_sign_ins": count,
                            "locked_out": count >= settings.AXES_FAILURE_LIMIT,
                        },
                    )

    @staticmethod
    def _failed_sign_ins(attempt: AccessAttempt) -> int:
        same = AccessAttempt.objects.filter(username=attempt.username, ip_address=attempt.ip_address)
        return same.aggregate(total=Sum("failures_since_start"))["total"] or 0


class FailedSignInLogAdmin(LookOnly, AccessFailureLogAdmin):
    """Every failed sign-in django-axes kept, to look at: a record deleted here would hide a guesser."""


class SignInLogAdmin(LookOnly, AccessLogAdmin):
    """Every sign-in django-axes kept, to look at: a record deleted here would hide who came in."""


for _model, _model_admin in (
    (AccessAttempt, LockOutAdmin),
    (AccessFailureLog, FailedSignInLogAdmin),
    (AccessLog, SignInLogAdmin),
):
    if admin.site.is_registered(_model):  # as django-axes registers them, unless AXES_ENABLE_ADMIN is off
        admin.site.unregister(_model)
        admin.site.register(_model, _model_admin)

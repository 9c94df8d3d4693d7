from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from axes.admin import AccessAttemptAdmin, AccessFailureLogAdmin, AccessLogAdmin
from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django import forms
from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.contrib.auth.models import Group
from django.db import router, transaction
from django.urls import reverse
from django.utils.html import format_html
from django_otp.plugins.otp_static.admin import StaticDeviceAdmin
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.admin import TOTPDeviceAdmin
from django_otp.plugins.otp_totp.models import TOTPDevice

from portal import audit, lockouts, two_factor
from portal.account_forms import refuse_only_dots
from portal.invitations import same_address, username_taken
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

    def get_queryset(self, request):
        # Each row shows its user, and names itself by user and team: read with it, not a query per row.
        return super().get_queryset(request).select_related("user", "team")


# Searches look for names people type with `__ucontains`, in any case in every alphabet on both databases
# (portal.ordering): Django's own icontains folds ASCII letters only on SQLite. Slugs and hex ids are ASCII.
@admin.register(Team)
class TeamAdmin(LookOnly, admin.ModelAdmin):
    list_display = ["name", "slug", "created_at"]
    search_fields = ["name__ucontains", "slug"]
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(LookOnly, admin.ModelAdmin):
    list_display = ["user", "team", "role", "created_at"]
    list_filter = ["role", "team"]
    search_fields = ["user__username__ucontains", "team__slug"]
    list_select_related = ["user", "team"]


@admin.register(AccessToken)
class AccessTokenAdmin(admin.ModelAdmin):
    """Tokens are issued with `manage.py issue_access_token`; here they can only be seen, renamed (`token.updated`,
    from and to) and revoked.

    A date entered in Revoked revokes a live token now, through the audited service; a revoked token's date is
    read-only, and a save writes only the fields changed on its page, so a page opened before someone revoked
    the token cannot bring it back.
    """

    list_display = ["lookup_id", "user", "name", "created_at", "expires_at", "revoked_at", "last_used_at"]
    list_select_related = ["user"]
    fields = ["user", "name", "lookup_id", "created_at", "expires_at", "revoked_at", "last_used_at"]
    # The expiry is fixed at issue: making a token immortal here would undo ACCESS_TOKEN_DEFAULT_DAYS.
    readonly_fields = ["user", "lookup_id", "created_at", "expires_at", "last_used_at"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # a token deleted here would leave no token.revoked row: revoke it with the Revoked date

    def get_form(self, request, obj=None, change=False, **kwargs):
        help_texts = {"revoked_at": "Enter any date to revoke this token now. A revocation is never undone."}
        return super().get_form(request, obj, change=change, help_texts=help_texts, **kwargs)

    def get_readonly_fields(self, request, obj=None):
        # Read when the page is posted too: a token revoked since the page was shown takes no revoked_at from it.
        return [*self.readonly_fields, "revoked_at"] if obj is not None and obj.revoked_at else self.readonly_fields

    def save_model(self, request, obj, form, change):
        # A rename is recorded before a revocation entered in the same save, so the trail reads in order: renamed
        # deploy to harmless, then revoked harmless (the name the token has when it is revoked).
        self._save_edits(request, obj, form)
        if "revoked_at" in form.changed_data and obj.revoked_at:
            revoke_token(token=obj, actor=request.user, request=request)  # audited; the date is now

    def _save_edits(self, request, obj, form):
        edited = [name for name in form.changed_data if name != "revoked_at"]
        if not edited:
            return
        # Locked, in the admin's transaction: the row's values as this save replaces them, for the audit row.
        before = AccessToken.objects.select_for_update().get(pk=obj.pk)
        changed = {
            name: {"from": _shown(getattr(before, name)), "to": _shown(getattr(obj, name))}
            for name in edited
            if _shown(getattr(before, name)) != _shown(getattr(obj, name))
        }
        obj.save(update_fields=edited)
        if changed:
            # The trail names a token by its lookup id and the name it was issued with: a new name is recorded,
            # or its later rows would seem to be about another token.
            audit.record(
                Action.TOKEN_UPDATED,
                actor=request.user,
                request=request,
                target=obj.lookup_id,
                details={"via": "admin", "user": obj.user.get_username(), "changed": changed},
            )


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
    search_fields = ["actor_username__ucontains", "team_slug", "gateway_slug", "target__ucontains"]
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


# Not compared: the password has its own audited form and a save never writes it.
NOT_COMPARED = {"password"}


def account_as_shown(user, names) -> dict[str, str]:
    """A short digest of each of the account's fields, as stored: what its change page showed, to compare on save."""
    fields = {field.name: field for field in (*User._meta.concrete_fields, *User._meta.many_to_many)}
    digests = {}
    for name in names:
        field = fields[name]
        value = field.value_from_object(user)
        if field.many_to_many:
            value = sorted(item.pk for item in value)
        digests[name] = hashlib.sha256(json.dumps(value, default=str).encode()).hexdigest()[:16]
    return digests


def record_member_renamed(user, renamed: dict, *, actor, request) -> None:
    """A `member.renamed` row in the trail of each team the account is a member of, as account offboarding writes
    its `member.removed` rows: the account's own row belongs to no team, and a team's auditors read only their
    team's trail, where the member's earlier rows keep the old name. `renamed` is the change's {"from", "to"}."""
    for membership in Membership.objects.filter(user=user).select_related("team").order_by("team__slug"):
        audit.record(
            Action.MEMBER_RENAMED,
            actor=actor,
            request=request,
            team=membership.team,
            target=user.get_username(),
            details={"via": Action.ACCOUNT_UPDATED.value, "role": membership.role, **renamed},
        )


class AccountChangeForm(UserChangeForm):
    """Django's account form, posting back what it showed: a save over a change made since the page was opened
    (an offboarding, another admin's save) would put the old values back, such as an offboarded account's
    Active, so it is refused. The admin validates and saves in one transaction, so the row locked here stays
    as checked."""

    opened_as = forms.CharField(widget=forms.HiddenInput, required=False)

    def clean_username(self):
        username = refuse_only_dots(self.cleaned_data["username"])
        # The add form refuses a name taken but for case; so does a rename (another account's name, not a change
        # of this one's case): two names alike on the team pages and in "Assign to" would hand keys to the wrong one.
        renamed = username.casefold() != (self.instance.get_username() or "").casefold()
        if renamed and username_taken(username):
            raise forms.ValidationError(
                f"An account is called {username} already, but for case: choose another user name.", code="taken"
            )
        return username

    def clean_email(self):
        email = self.cleaned_data.get("email", "")
        # A password reset mails every account with the address, and SSO refuses an address two accounts share.
        others = User._default_manager.exclude(pk=self.instance.pk)
        if email and others.filter(same_address("email", email)).exists():
            raise forms.ValidationError(
                f"Another account has the address {email}: each account needs an address of its own, so a reset "
                "link reaches only its owner.",
                code="taken",
            )
        return email

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["opened_as"].initial = json.dumps(account_as_shown(self.instance, self._compared()))

    def _compared(self) -> list[str]:
        model_fields = {field.name for field in (*User._meta.concrete_fields, *User._meta.many_to_many)}
        return [name for name in self.fields if name in model_fields and name not in NOT_COMPARED]

    def clean(self):
        super().clean()
        if not self.instance.pk:
            return self.cleaned_data
        try:
            shown = json.loads(self.cleaned_data.get("opened_as") or "")
        except ValueError:
            shown = None
        if not isinstance(shown, dict):
            raise forms.ValidationError(
                "This form does not say what the account looked like when it was shown: open the page again and "
                "make your change there.",
                code="opened_as",
            )
        now = account_as_shown(User._default_manager.select_for_update().get(pk=self.instance.pk), self._compared())
        changed = [name for name, digest in now.items() if shown.get(name) != digest]
        if changed:
            labels = ", ".join(str(self.fields[name].label) for name in changed)  # as the page names them
            raise forms.ValidationError(
                f"{self.instance.get_username()}'s account was changed since this page was opened ({labels}); "
                "saving it would put the old values back. Open the page again and make your change there.",
                code="stale",
            )
        return self.cleaned_data


class AccountAddForm(AdminUserCreationForm):
    """Django's form for adding an account, refusing a user name that addresses could not carry."""

    def clean_username(self):
        return refuse_only_dots(super().clean_username())


class AuditedUserAdmin(UserAdmin):
    """Django's user admin, with every change in the audit trail in the change's own transaction.

    Adding is `account.created`, a change `account.updated` naming each changed field (from, to), and a rename also
    `member.renamed` in each of its teams' trails; the password form `account.password_changed` (never the hash). Deleting is refused: an account's audit rows would
    point at no one. Offboarding on the portal's Users page deactivates it and takes back what it holds.
    """

    OFFBOARD_HINT = (
        "Accounts are not deleted here: the audit trail keeps who did what. To take someone off the portal, "
        '<a href="{}">offboard them</a> (from the <a href="{}">Users</a> page): that deactivates the account and '
        "takes back its memberships, key assignments and access tokens, in one audited event. Unticking "
        "Active here only stops their sign-ins."
    )

    form = AccountChangeForm
    add_form = AccountAddForm
    search_fields = ["username__ucontains", "first_name__ucontains", "last_name__ucontains", "email__ucontains"]

    def has_delete_permission(self, request, obj=None):
        return False

    def get_readonly_fields(self, request, obj=None):
        # Sign-ins set it, one between opening the page and saving it too: a save must not put the old one back.
        return [*super().get_readonly_fields(request, obj), "last_login"]

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None:
            return fieldsets
        hint = format_html(self.OFFBOARD_HINT, reverse("user-offboard", args=[obj.get_username()]), reverse("users"))
        shown: list[tuple[Any, dict[str, Any]]] = [
            (name, {**options, "description": hint})
            if "is_active" in options.get("fields", ())
            else (name, {**options})
            for name, options in fieldsets
        ]
        shown[0][1]["fields"] = [*shown[0][1]["fields"], "opened_as"]  # hidden, posted back with the form
        return shown

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
        columns = []  # only what changed on the page: the rest of the row may have changed since, a sign-in say
        for name in form.changed_data:
            if name in ("password", "opened_as"):
                continue  # read-only here; the password form below records its own row, without the hash
            if User._meta.get_field(name).many_to_many:
                old, new = form.initial.get(name, []), form.cleaned_data[name]
            else:
                old, new = getattr(before, name), getattr(obj, name)
                columns.append(name)
            if _shown(old) != _shown(new):
                changed[name] = {"from": _shown(old), "to": _shown(new)}
        if columns:
            obj.save(update_fields=columns)
        if changed:
            audit.record(
                Action.ACCOUNT_UPDATED,
                actor=request.user,
                request=request,
                target=obj.get_username(),
                details={"via": "admin", "changed": changed},
            )
        if "username" in changed:
            record_member_renamed(obj, changed["username"], actor=request.user, request=request)

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

    search_fields = ["user__username__ucontains", "user__email__ucontains"]

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
    search_fields = ["user__username__ucontains", "user__email__ucontains"]


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
    search_fields = ["ip_address", "username__ucontains", "user_agent", "path_info"]

    def has_delete_permission(self, request, obj=None):
        return admin.ModelAdmin.has_delete_permission(self, request, obj)

    def delete_model(self, request, obj):
        self.delete_queryset(request, AccessAttempt.objects.filter(pk=obj.pk))

    def delete_queryset(self, request, queryset):
        lockouts.lift(queryset, actor=request.user, request=request, via="admin")


class FailedSignInLogAdmin(LookOnly, AccessFailureLogAdmin):
    """Every failed sign-in django-axes kept, to look at: a record deleted here would hide a guesser."""

    search_fields = ["ip_address", "username__ucontains", "user_agent", "path_info"]


class SignInLogAdmin(LookOnly, AccessLogAdmin):
    """Every sign-in django-axes kept, to look at: a record deleted here would hide who came in."""

    search_fields = ["ip_address", "username__ucontains", "user_agent", "path_info"]


for _model, _model_admin in (
    (AccessAttempt, LockOutAdmin),
    (AccessFailureLog, FailedSignInLogAdmin),
    (AccessLog, SignInLogAdmin),
):
    if admin.site.is_registered(_model):  # as django-axes registers them, unless AXES_ENABLE_ADMIN is off
        admin.site.unregister(_model)
        admin.site.register(_model, _model_admin)

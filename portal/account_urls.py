"""Accounts: one's own account and second factor, passwords, invitations, single sign-on, the staff user list."""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import path

from portal import account_views, invitation_views, oidc

urlpatterns = [
    path("account/", account_views.account, name="account"),
    path("account/confirm-email/", account_views.email_confirmation_send, name="email-confirmation-send"),
    path("account/confirm-email/<str:token>/", account_views.email_confirm, name="email-confirm"),
    path("account/two-factor/", account_views.two_factor_enrol, name="two-factor-enrol"),
    path("account/two-factor/verify/", account_views.two_factor_verify, name="two-factor-verify"),
    path("account/two-factor/remove/", account_views.two_factor_remove, name="two-factor-remove"),
    path("account/two-factor/recovery-codes/", account_views.recovery_codes_renew, name="recovery-codes"),
    path("password_change/", account_views.PasswordChangeView.as_view(), name="password_change"),
    path(
        "password_change/done/",
        auth_views.PasswordChangeDoneView.as_view(),
        name="password_change_done",
    ),
    path("password_reset/", account_views.PasswordResetView.as_view(), name="password_reset"),
    path("password_reset/done/", auth_views.PasswordResetDoneView.as_view(), name="password_reset_done"),
    path(
        "reset/<uidb64>/<token>/",
        account_views.PasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path("reset/done/", auth_views.PasswordResetCompleteView.as_view(), name="password_reset_complete"),
    path("oidc/authenticate/", oidc.SSOStartView.as_view(), name="oidc-start"),
    path("oidc/callback/", oidc.SSOCallbackView.as_view(), name="oidc-callback"),
    path("invitations/accept/", invitation_views.invitation_accept, name="invitation-accept"),
    path("invitations/<str:token>/", invitation_views.invitation_open, name="invitation-open"),
    path("teams/<slug:slug>/invitations/", invitation_views.team_invitations, name="team-invitations"),
    path(
        "teams/<slug:slug>/invitations/<int:invitation_id>/withdraw/",
        invitation_views.invitation_withdraw,
        name="invitation-withdraw",
    ),
    path("teams/<slug:slug>/sso-groups/", account_views.team_groups, name="team-groups"),
    path("users/", account_views.user_list, name="users"),
    path("users/<str:username>/reset-link/", account_views.user_reset_link, name="user-reset-link"),
    path("users/<str:username>/confirm-email/", account_views.user_confirm_email, name="user-confirm-email"),
]

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from alerts import views as alert_views
from config import views as project_views
from gateways import offboarding_views
from gateways import views as gateway_views
from portal import views
from portal.account_forms import PortalAuthenticationForm

urlpatterns = [
    # Answered by config.middleware.HealthCheckMiddleware before the host check; named here for reverse().
    path("healthz", project_views.healthz, name="healthz"),
    path("readyz", project_views.readyz, name="readyz"),
    # Early: the API's downloads are the most requested paths, and Django tries the patterns in order.
    path("api/v1/", include("config.api_urls")),
    path("", gateway_views.home, name="home"),
    path("dashboard/", gateway_views.dashboard_page, name="dashboard"),
    path(
        "login/",
        auth_views.LoginView.as_view(redirect_authenticated_user=True, authentication_form=PortalAuthenticationForm),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("sudo/", views.sudo, name="sudo"),
    path("setup/", gateway_views.setup, name="setup"),
    path("setup/<int:assignment_id>/reveal/", gateway_views.setup_reveal, name="setup-reveal"),
    path("setup/<int:assignment_id>/<str:format_name>", gateway_views.setup_download, name="setup-download"),
    path("setup/<int:assignment_id>/devices/", gateway_views.device_create, name="device-create"),
    path("devices/", gateway_views.device_list, name="devices"),
    path("devices/<int:device_id>/remove/", gateway_views.device_remove, name="device-remove"),
    path("gateways/", gateway_views.gateway_list, name="gateways"),
    path("gateways/new/", gateway_views.gateway_create, name="gateway-create"),
    path("gateways/<slug:slug>/", gateway_views.gateway_detail, name="gateway"),
    path("gateways/<slug:slug>/edit/", gateway_views.gateway_edit, name="gateway-edit"),
    path("teams/", views.team_list, name="teams"),
    path("teams/new/", views.team_create, name="team-create"),
    path("teams/<slug:slug>/", gateway_views.team_detail, name="team"),
    path("teams/<slug:slug>/members/", views.member_add, name="member-add"),
    path("teams/<slug:slug>/members/<str:username>/remove/", views.member_remove, name="member-remove"),
    path("teams/<slug:slug>/keys/new/", gateway_views.key_create, name="key-create"),
    path("keys/<uuid:key_id>/", gateway_views.key_detail, name="key"),
    path("keys/<uuid:key_id>/settings/", gateway_views.key_settings, name="key-settings"),
    path("keys/<uuid:key_id>/rotate/", gateway_views.key_rotate, name="key-rotate"),
    path("keys/<uuid:key_id>/toggle/", gateway_views.key_toggle, name="key-toggle"),
    path("keys/<uuid:key_id>/revoke/", gateway_views.key_revoke, name="key-revoke"),
    path("keys/<uuid:key_id>/assign/", gateway_views.key_assign, name="key-assign"),
    path("keys/<uuid:key_id>/probe/", gateway_views.key_probe, name="key-probe"),
    path("assignments/<int:assignment_id>/remove/", gateway_views.assignment_remove, name="assignment-remove"),
    path("tokens/", views.token_list, name="tokens"),
    path("tokens/<int:token_id>/revoke/", views.token_revoke, name="token-revoke"),
    path("audit/", views.audit_list, name="audit"),
    path("connections/", gateway_views.connection_list, name="connections"),
    # Accounts (issue 13): own account, passwords, invitations, SSO, users; offboarding reads both apps.
    path("", include("portal.account_urls")),
    path(
        "teams/<slug:slug>/members/<str:username>/offboard/",
        offboarding_views.member_offboard,
        name="member-offboard",
    ),
    path("users/<str:username>/offboard/", offboarding_views.user_offboard, name="user-offboard"),
    path("teams/<slug:slug>/channels/", alert_views.channel_add, name="channel-add"),
    path("channels/<uuid:channel_id>/remove/", alert_views.channel_remove, name="channel-remove"),
    path("channels/<uuid:channel_id>/test/", alert_views.channel_test, name="channel-test"),
    path("deliveries/", alert_views.delivery_list, name="deliveries"),
    path("admin/", admin.site.urls),
]

handler400 = "config.views.bad_request"
handler404 = "config.views.not_found"
handler500 = "config.views.server_error"

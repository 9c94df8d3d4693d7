from django.urls import path

from alerts.api import views as alert_views
from config.api_root import ApiDocs, ApiRoot
from gateways.api import views as gateway_views
from portal.api import invitations, views

urlpatterns = [
    # A developer's set-up first: the most requested paths, and Django tries the patterns in order.
    path("me/configs/", gateway_views.MyConfigList.as_view(), name="api-my-configs"),
    # Before the downloads: "devices" is not a format.
    path("me/configs/<int:assignment_id>/devices/", gateway_views.MyConfigDevices.as_view(), name="api-config-devices"),
    path(
        "me/configs/<int:assignment_id>/<str:format_name>",
        gateway_views.MyConfigDownload.as_view(),
        name="api-config-download",
    ),
    # The same with a trailing slash, as clients often add one.
    path("me/configs/<int:assignment_id>/<str:format_name>/", gateway_views.MyConfigDownloadWithSlash.as_view()),
    path("", ApiRoot.as_view(), name="api-root"),
    path("docs/", ApiDocs.as_view(), name="api-docs"),
    path("schema/", views.SchemaView.as_view(), name="api-schema"),
    path("gateways/", gateway_views.GatewayList.as_view(), name="api-gateways"),
    path("gateways/<slug:slug>/", gateway_views.GatewayDetail.as_view(), name="api-gateway"),
    path("teams/", views.TeamList.as_view(), name="api-teams"),
    path("teams/<slug:slug>/", views.TeamDetail.as_view(), name="api-team"),
    path("teams/<slug:slug>/members/", views.TeamMemberList.as_view(), name="api-team-members"),
    path("teams/<slug:slug>/members/<str:username>/", views.TeamMemberDetail.as_view(), name="api-team-member"),
    path("teams/<slug:slug>/keys/", gateway_views.TeamKeyList.as_view(), name="api-team-keys"),
    path("keys/<uuid:key_id>/", gateway_views.KeyDetail.as_view(), name="api-key"),
    path("keys/<uuid:key_id>/assignments/", gateway_views.KeyAssignmentList.as_view(), name="api-key-assignments"),
    path("assignments/<int:assignment_id>/", gateway_views.AssignmentDetail.as_view(), name="api-assignment"),
    path("keys/<uuid:key_id>/probes/", gateway_views.KeyProbeList.as_view(), name="api-key-probes"),
    path("probes/", gateway_views.ProbeList.as_view(), name="api-probes"),
    path("audit-events/", views.AuditEventList.as_view(), name="api-audit-events"),
    path("connections/", gateway_views.ConnectionList.as_view(), name="api-connections"),
    # Accounts (issue 13)
    path("teams/<slug:slug>/invitations/", invitations.TeamInvitationList.as_view(), name="api-team-invitations"),
    path(
        "teams/<slug:slug>/invitations/<int:invitation_id>/",
        invitations.TeamInvitationDetail.as_view(),
        name="api-team-invitation",
    ),
    path("devices/", gateway_views.DeviceList.as_view(), name="api-devices"),
    path("devices/<int:device_id>/", gateway_views.DeviceDetail.as_view(), name="api-device"),
    # What devices call: no session, no personal token (see gateways.devices).
    path("device/key", gateway_views.device_key, name="api-device-key"),
    path("device/install/<str:code>", gateway_views.device_install, name="api-device-install"),
    # A link cut short before its code: refused by the view like any unknown link (a script for sh).
    path("device/install/", gateway_views.device_install, {"code": ""}),
    path("teams/<slug:slug>/channels/", alert_views.TeamChannelList.as_view(), name="api-team-channels"),
    path("channels/<uuid:channel_id>/", alert_views.ChannelDetail.as_view(), name="api-channel"),
]

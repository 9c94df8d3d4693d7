"""Reads shared by the pages and the API: small query helpers, no side effects."""

from __future__ import annotations

from gateways.models import Assignment, AssignmentQuerySet, Device, DeviceQuerySet


def my_assignments(user) -> AssignmentQuerySet:
    """The user's own assignments: the configurations they can download, team by team."""
    return (
        Assignment.objects.filter(user=user)
        .select_related("key__gateway", "key__team", "user")
        .order_by("key__team__name", "key__label")
    )


def my_assignment(user, assignment_id: int) -> Assignment | None:
    """One of the user's own assignments, with what a download needs (its key, gateway and team), or None.

    The hottest read of the portal: no join to the user (it is the caller) and no ordering.
    """
    try:
        assignment = Assignment.objects.select_related("key__gateway", "key__team").get(user=user, pk=assignment_id)
    except Assignment.DoesNotExist:
        return None
    assignment.user = user
    return assignment


def devices_with_context(devices: DeviceQuerySet) -> DeviceQuerySet:
    """Devices with what their lists show: key, gateway, team and owner, newest first."""
    return devices.select_related("key__gateway", "key__team", "user").order_by("-created_at")


def my_devices(user) -> DeviceQuerySet:
    return devices_with_context(Device.objects.filter(user=user))


def team_devices(team) -> DeviceQuerySet:
    return devices_with_context(Device.objects.filter(key__team=team))


def key_devices(key) -> DeviceQuerySet:
    """The devices that hold the key live (installed, not removed, still assigned)."""
    return devices_with_context(key.devices.live())

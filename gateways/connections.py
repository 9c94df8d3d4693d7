"""Who is connected where: one row per developer x gateway x key, for the page, the API and CSV.

Every figure on a row is a column of the assignment or its key (the download and the latest
probe are written there when they happen), so the list costs the same few queries at any size.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db.models import Count, Exists, F, IntegerField, Max, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.http import StreamingHttpResponse
from django.utils import timezone

from gateways.models import Assignment, Device, GatewayKey
from portal import exports
from portal.errors import RuleError

STATES = {
    "never_downloaded": "Never downloaded",
    "stale": "Stale download",
    "failing": "Failing probe",
    "expired": "Expired key",
}
SORTS = {
    "user": "user__username",
    "team": "key__team__slug",
    "gateway": "key__gateway__slug",
    "assigned": "created_at",
    "last_download": "last_download_at",
    "verdict": "key__last_probe_verdict",
    "expiry": "key__expires_at",
}
# The columns of a row, in the order of the CSV and the API.
COLUMNS = (
    "assignment",
    "user",
    "team",
    "gateway",
    "key_id",
    "key_label",
    "masked",
    "key_state",
    "assigned_since",
    "last_download_at",
    "last_download_format",
    "last_download_ip",
    "download_stale",
    "latest_verdict",
    "latest_probe_at",
    "expires_at",
    "live_devices",
    "live_devices_current",
    "last_live_fetch_at",
)


@dataclass(frozen=True)
class ConnectionFilters:
    team: str = ""
    gateway: str = ""
    state: str = ""
    sort: str = "-assigned"

    @classmethod
    def from_query(cls, query) -> ConnectionFilters:
        state = query.get("state", "")
        if state and state not in STATES:
            raise RuleError(f"state must be one of {', '.join(STATES)}, not {state!r}.", field="state")
        sort = query.get("sort", "-assigned")
        if sort.removeprefix("-") not in SORTS:
            raise RuleError(
                f"sort must be one of {', '.join(SORTS)} (prefix - to reverse), not {sort!r}.", field="sort"
            )
        return cls(team=query.get("team", ""), gateway=query.get("gateway", ""), state=state, sort=sort)


def stale_cutoff():
    """A download older than this is stale even if nothing changed since."""
    return timezone.now() - timedelta(days=settings.CONNECTION_STALE_DAYS)


def _count(devices: QuerySet[Device]):
    """How many of `devices` there are, as a column of the row (a subquery, so the list stays one query)."""
    counted = devices.order_by().values("assignment").annotate(n=Count("pk")).values("n")[:1]
    return Coalesce(Subquery(counted, output_field=IntegerField()), Value(0))


def connections_for(user, filters: ConnectionFilters) -> QuerySet[Assignment]:
    rows = Assignment.objects.visible_to(user).select_related("user", "key__team", "key__gateway")
    live = Device.objects.live().filter(assignment=OuterRef("pk"))
    rows = rows.annotate(
        live_devices=_count(live),
        # Devices with nothing left to do: they fetched since the last rotation and were installed since the key's
        # settings or its gateway's last changed (DeviceQuerySet.current).
        live_devices_current=_count(live.current()),
        last_live_fetch_at=Subquery(
            live.order_by().values("assignment").annotate(at=Max("last_seen_at")).values("at")[:1]
        ),
    )
    if filters.team:
        rows = rows.filter(key__team__slug=filters.team)
    if filters.gateway:
        rows = rows.filter(key__gateway__slug=filters.gateway)
    now = timezone.now()
    if filters.state == "never_downloaded":
        # A device's fetch counts as a download, as on the dashboard (dashboard.never_downloaded).
        fetched_live = Device.objects.filter(assignment=OuterRef("pk"), last_seen_at__isnull=False)
        rows = rows.filter(last_download_at__isnull=True).exclude(Exists(fetched_live))
    elif filters.state == "stale":
        # A stale download, a live device still on the secret before the last rotation (the dashboard's rollout),
        # or one installed before the key's settings or its gateway's last changed (it must run the installer again).
        behind = live.exclude(fetched_fingerprint="").exclude(fetched_fingerprint=OuterRef("key__fingerprint"))
        rows = rows.filter(
            Q(last_download_at__lt=F("key__config_changed_at"))
            | Q(last_download_at__lt=stale_cutoff())
            | Exists(behind)
            | Exists(live.needing_reinstall())
        )
    elif filters.state == "failing":
        # The key's failing() rule: a probe older than the last rotation or settings change tested something else.
        rows = rows.filter(key__in=GatewayKey.objects.failing())
    elif filters.state == "expired":
        rows = rows.filter(key__expires_at__lte=now)
    field = SORTS[filters.sort.removeprefix("-")]
    # Ties go the sort's way too, so an index on (column, id) serves either direction read backwards.
    if filters.sort.startswith("-"):
        return rows.order_by(F(field).desc(nulls_last=True), "-id")
    return rows.order_by(F(field).asc(nulls_last=True), "id")


def connection_rows(assignments: Iterable[Assignment]) -> Iterator[dict]:
    """The rows of the page, the API and the CSV, from connections_for()."""
    cutoff = stale_cutoff()
    for assignment in assignments:
        yield _row(assignment, cutoff)


def live_devices_by_assignment(assignments: Iterable[Assignment]) -> dict[int, list[Device]]:
    """The live devices of a page of rows, by assignment id, in one query."""
    found: dict[int, list[Device]] = {}
    devices = Device.objects.live().filter(assignment__in=[a.pk for a in assignments]).select_related("key")
    for device in devices.order_by("name", "pk"):
        found.setdefault(device.assignment_id, []).append(device)
    return found


def connections_csv(assignments: Iterable[Assignment]) -> StreamingHttpResponse:
    """The rows as a CSV download, for the page and the API alike."""
    return exports.csv_response(connection_rows(assignments), list(COLUMNS), "connections.csv")


def _row(assignment: Assignment, cutoff) -> dict:
    key = assignment.key
    downloaded = assignment.last_download_at
    return {
        "assignment": assignment.id,
        "user": assignment.user.username,
        "team": key.team.slug,
        "gateway": key.gateway.slug,
        "key_id": str(key.id),
        "key_label": key.label,
        "masked": key.masked,
        "key_state": key.state,
        "assigned_since": assignment.created_at,
        "last_download_at": downloaded,
        "last_download_format": assignment.last_download_format,
        "last_download_ip": assignment.last_download_ip,
        "download_stale": bool(downloaded and (downloaded < key.config_changed_at or downloaded < cutoff)),
        "latest_verdict": key.last_probe_verdict,
        "latest_probe_at": key.last_probe_at,
        "expires_at": key.expires_at,
        # Annotated by connections_for().
        "live_devices": getattr(assignment, "live_devices", 0),
        "live_devices_current": getattr(assignment, "live_devices_current", 0),
        "last_live_fetch_at": getattr(assignment, "last_live_fetch_at", None),
    }
